"""minialbert: ALBERT built from scratch in NumPy and CuPy, every backward pass by hand."""
from . import backend, layers  # noqa: F401
from .backend import get_array_module, to_device, to_numpy  # noqa: F401
from . import data  # noqa: F401
from .tokenizer import Tokenizer  # noqa: F401
from .config import AlbertConfig, count_parameters  # noqa: F401
from .model import AlbertModel, AlbertOutput  # noqa: F401
from .heads import (AlbertForMaskedLM, AlbertForMultipleChoice, AlbertForPreTraining,  # noqa: F401
                    AlbertForQuestionAnswering, AlbertForSequenceClassification,
                    AlbertForTokenClassification)
from .hf import from_pretrained, to_hf_state_dict  # noqa: F401

__version__ = "0.1.0"
