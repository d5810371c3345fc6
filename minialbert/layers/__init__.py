"""Hand-written layers: each ``x_forward(...) -> (out, cache)`` beside ``x_backward(dout, cache, ...)``.

Backward functions return the gradient of the input and *accumulate* (``+=``) into
parameter-gradient buffers passed in by the caller. Zero the buffers once per step;
a layer applied L times (ALBERT's shared layer) then sums its L gradients by itself.
"""
from .activations import (ACTIVATIONS, gelu_backward, gelu_forward, gelu_new_backward,
                          gelu_new_forward, get_activation, tanh_backward, tanh_forward)
from .attention import (ATTENTION_PARAMS, attention_backward, attention_forward,
                        make_attention_mask)
from .dropout import dropout_backward, dropout_forward
from .embedding import embedding_backward, embedding_forward
from .feedforward import FFN_PARAMS, feedforward_backward, feedforward_forward
from .layernorm import layernorm_backward, layernorm_forward
from .linear import linear_backward, linear_forward
from .losses import (IGNORE_INDEX, bce_with_logits_backward, bce_with_logits_forward,
                     cross_entropy_backward, cross_entropy_forward, mse_backward, mse_forward)
from .softmax import softmax_backward, softmax_forward

__all__ = [n for n in dir() if not n.startswith("_")]
