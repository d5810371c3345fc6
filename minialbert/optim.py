r"""Optimisers (ALBERT's AdamW and LAMB, torch's AdamW), the learning-rate schedule,
gradient clipping and layer-wise learning-rate decay.

Everything works on two parallel dicts with the model's keys: ``params`` (name -> array)
and ``grads`` (name -> array of the same shape, NumPy or CuPy). An optimiser is built on
the params (the dict, or the model, whose ``.params`` it then reads at every step, so
``model.to(device)`` or a weight load after construction is followed)::

    opt = LAMB(model, lr=1.76e-3)                   # or make_optimizer("lamb", model, ...)
    clip_grad_norm(model.grads, 1.0)
    opt.step(model.grads, lr_at(step, peak, warmup, total))

``step`` updates the arrays in ``params`` *in place*; it never zeroes ``grads``, so
gradient accumulation over micro-batches is "sum (or average) into ``grads``, then call
``step`` once".

The update rules, one tensor ``w`` with gradient ``g`` at a time (``lr`` already times
the tensor's multiplier, ``t`` the 1-based step count):

``AdamW`` (default): BERT/ALBERT's ``AdamWeightDecayOptimizer`` (spec §6.4)::

    m = b1*m + (1-b1)*g                # first moment, NO bias correction
    v = b2*v + (1-b2)*g*g              # second moment
    u = m / (sqrt(v) + eps)            # eps = 1e-6, added *outside* the sqrt
    u += wd*w    (unless excluded)     # decoupled decay: part of the update, scaled by lr only
    w -= lr*u

``AdamW(bias_correction=True)``: exactly ``torch.optim.AdamW`` (eps default 1e-8)::

    w *= 1 - lr*wd   (unless excluded) # decay first, on the old weights
    m = m + (1-b1)*(g - m)             # torch's lerp form of b1*m + (1-b1)*g
    v = b2*v + (1-b2)*g*g
    denom = sqrt(v)/sqrt(1-b2**t) + eps
    w -= (lr/(1-b1**t)) * m / denom

``LAMB``: ``lamb_optimizer.py`` of google-research/albert (spec §6.3)::

    m, v, u as in AdamW (with the decay term in u)
    r = |w|/|u| if |w| > 0 and |u| > 0 else 1   (L2 norms over the whole tensor;
        r = 1 for excluded names: no layer adaptation for LayerNorm and biases)
    w -= r*lr*u

"Excluded" means ``re.search(pattern, name)`` matches one of
``exclude_from_weight_decay`` (default ``["LayerNorm", "layer_norm", "bias"]``, the list
ALBERT passes): every LayerNorm gain/bias (``full_layer_layer_norm`` contains
"layer_norm") and every ``*.bias``, including ``predictions.bias``.

The schedule (:func:`lr_at`) is TF's linear warm-up into ``polynomial_decay`` to zero;
clipping (:func:`clip_grad_norm`) is ``tf.clip_by_global_norm``. Optimiser state
(``m``, ``v``) lives on the parameters' device and is created there on the first step;
:meth:`state_dict` hands out NumPy copies for checkpoints and :meth:`load_state_dict`
accepts them back (they move to the parameters' device on the next step).
Derivations and the layer-wise decay rule: [docs/training/optimizers.md](../training/optimizers.md)
"""
from __future__ import annotations

import math
import re
from typing import Iterable, Mapping, Optional

import numpy as np

from .backend import device_of, get_array_module, to_device, to_numpy
from .config import AlbertConfig

#: ALBERT's ``exclude_from_weight_decay`` (and, by default, from LAMB's trust ratio).
EXCLUDE_FROM_WEIGHT_DECAY = ("LayerNorm", "layer_norm", "bias")


# ----------------------------------------------------------------------------------------
# the optimisers
# ----------------------------------------------------------------------------------------

class _Adam:
    """What AdamW and LAMB share: hyper-parameters, exclusion lists, multipliers, state.

    Subclasses implement ``_update(name, w, g, m, v, lr, t)``, which changes ``w``, ``m``
    and ``v`` in place.
    """
    name = "adam"

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-6, weight_decay=0.01,
                 exclude_from_weight_decay: Iterable[str] = EXCLUDE_FROM_WEIGHT_DECAY,
                 lr_multipliers: Optional[Mapping[str, float]] = None):
        if not isinstance(params, Mapping) and not isinstance(getattr(params, "params", None), Mapping):
            raise ValueError("params must be a dict name -> array, or a model with a .params dict, "
                             f"got {type(params).__name__}")
        self._source = params
        if not self.params:
            raise ValueError("params is empty: nothing to optimise")
        _check_nonneg_float("lr", lr)
        if (not isinstance(betas, (tuple, list)) or len(betas) != 2
                or not all(isinstance(b, (int, float)) and 0.0 <= b < 1.0 for b in betas)):
            raise ValueError(f"betas must be two numbers in [0, 1), got {betas!r}")
        _check_nonneg_float("eps", eps)
        _check_nonneg_float("weight_decay", weight_decay)
        self.lr = float(lr)
        self.betas = (float(betas[0]), float(betas[1]))
        self.eps = float(eps)
        self.weight_decay = float(weight_decay)
        self.exclude_from_weight_decay = _patterns("exclude_from_weight_decay", exclude_from_weight_decay)
        self.lr_multipliers = {}
        if lr_multipliers is not None:
            for k, mult in dict(lr_multipliers).items():
                _check_nonneg_float(f"lr_multipliers[{k!r}]", mult)
            self.lr_multipliers = {k: float(mult) for k, mult in dict(lr_multipliers).items()}
            unknown = set(self.lr_multipliers) - set(self.params)
            if unknown:
                raise ValueError(f"lr_multipliers names parameters that are not in params: {sorted(unknown)[:5]}")
        self.t = 0          # optimiser steps taken
        self.m = {}         # name -> first moment, on the parameter's device
        self.v = {}         # name -> second moment
        self._decay_cache = {}

    @property
    def params(self) -> dict:
        """The live parameter dict (``model.params`` when built on a model)."""
        src = self._source
        return src if isinstance(src, Mapping) else src.params

    # -- exclusions ------------------------------------------------------------------
    def uses_weight_decay(self, name: str) -> bool:
        """ALBERT's ``_do_use_weight_decay``: no decay when wd is 0 or a pattern matches."""
        if not self.weight_decay:
            return False
        hit = self._decay_cache.get(name)
        if hit is None:
            hit = self._decay_cache[name] = not any(re.search(p, name) for p in self.exclude_from_weight_decay)
        return hit

    # -- the step ----------------------------------------------------------------------
    def step(self, grads: Mapping, lr: Optional[float] = None) -> None:
        """One update of every tensor in ``self.params`` (in place), from ``grads``.

        Inputs: grads: dict with the same keys as params, arrays of equal shapes on the
        same device; lr: this step's base learning rate (e.g. ``lr_at(step, ...)``),
        default the constructor's ``lr``. Each tensor uses ``lr * lr_multipliers.get(name, 1)``.
        ``grads`` is read only (not zeroed: the caller zeroes before accumulating).
        """
        lr = self.lr if lr is None else lr
        _check_nonneg_float("lr", lr)
        params = self.params
        if not isinstance(grads, Mapping):
            raise ValueError(f"grads must be a dict name -> array, got {type(grads).__name__}")
        if params.keys() != grads.keys():
            missing, extra = sorted(set(params) - set(grads)), sorted(set(grads) - set(params))
            raise ValueError(f"params and grads must have the same keys: no gradient for {missing[:5]}, "
                             f"gradient without parameter {extra[:5]}")
        self.t += 1
        for name, w in params.items():
            g = grads[name]
            if g.shape != w.shape:
                raise ValueError(f"grads[{name!r}] has shape {tuple(g.shape)}, parameter has {tuple(w.shape)}")
            m, v = self._state_for(name, w)
            self._update(name, w, g, m, v, lr * self.lr_multipliers.get(name, 1.0), self.t)

    def _state_for(self, name, w):
        """(m, v) for ``name``: zeros on the first step, moved to w's device after a load."""
        m = self.m.get(name)
        if m is None:
            xp = get_array_module(w)
            m = self.m[name] = xp.zeros_like(w)
            self.v[name] = xp.zeros_like(w)
            return m, self.v[name]
        if m.shape != w.shape or m.dtype != w.dtype:
            raise ValueError(f"optimizer state for {name!r} is {m.dtype}{tuple(m.shape)} but the parameter is "
                             f"{w.dtype}{tuple(w.shape)}: was the state saved for another model or dtype?")
        if get_array_module(m) is not get_array_module(w):
            dev = device_of(w)
            m = self.m[name] = to_device(m, dev)
            self.v[name] = to_device(self.v[name], dev)
        return m, self.v[name]

    def _update(self, name, w, g, m, v, lr, t):
        raise NotImplementedError

    def _adam_direction(self, name, w, g, m, v):
        """The moment updates shared by ALBERT's AdamW and LAMB; returns u (a new array)."""
        b1, b2 = self.betas
        xp = get_array_module(w)
        # m = b1*m + (1-b1)*g ; v = b2*v + (1-b2)*g^2   (no bias correction)
        m *= b1
        m += (1.0 - b1) * g
        v *= b2
        v += (1.0 - b2) * (g * g)
        # u = m / (sqrt(v) + eps)
        u = xp.sqrt(v)
        u += self.eps
        xp.divide(m, u, out=u)
        # u += wd*w: decoupled decay, outside the adaptive scaling
        if self.uses_weight_decay(name):
            u += self.weight_decay * w
        return u

    # -- state for checkpoints ------------------------------------------------------
    def hyperparams(self) -> dict:
        """The settings a resumed run must share with the saved one (JSON-able)."""
        return {"optimizer": self.name, "betas": list(self.betas), "eps": self.eps,
                "weight_decay": self.weight_decay,
                "exclude_from_weight_decay": list(self.exclude_from_weight_decay)}

    def state_dict(self) -> dict:
        """Returns {"step": int, "hyperparams": dict, "m": {name: np.ndarray}, "v": {...}}:
        host (NumPy) copies, dtype preserved, independent of the live state."""
        return {"step": self.t, "hyperparams": self.hyperparams(),
                "m": {k: np.array(to_numpy(a), copy=True) for k, a in self.m.items()},
                "v": {k: np.array(to_numpy(a), copy=True) for k, a in self.v.items()}}

    def load_state_dict(self, state: dict, strict: bool = True) -> None:
        """Restore ``m``, ``v`` and the step count from :meth:`state_dict` output.

        The hyper-parameters stored with it must equal this optimiser's (ValueError naming
        the first difference) unless ``strict=False``. Arrays stay NumPy until the next
        ``step`` moves them to the parameters' device (and checks their shapes).
        """
        if not isinstance(state, Mapping) or not {"step", "m", "v"} <= set(state):
            raise ValueError("optimizer state must be a dict with 'step', 'm' and 'v' "
                             f"(from state_dict()), got keys {sorted(state) if isinstance(state, Mapping) else type(state).__name__}")
        if strict:
            saved, mine = dict(state.get("hyperparams", {})), self.hyperparams()
            for k in ["optimizer"] + sorted((set(saved) | set(mine)) - {"optimizer"}):
                a, b = saved.get(k), mine.get(k)
                if isinstance(a, tuple):
                    a = list(a)
                if a != b:
                    raise ValueError(f"optimizer state was saved with {k}={a!r}, this optimizer has {k}={b!r} "
                                     "(pass strict=False to load it anyway)")
        if set(state["m"]) != set(state["v"]):
            raise ValueError("optimizer state 'm' and 'v' name different parameters")
        step = state["step"]
        if isinstance(step, bool) or not isinstance(step, (int, np.integer)) or step < 0:
            raise ValueError(f"optimizer state 'step' must be a non-negative integer, got {step!r}")
        for k in state["m"]:
            if np.shape(state["m"][k]) != np.shape(state["v"][k]):
                raise ValueError(f"optimizer state for {k!r}: m and v have different shapes")
        params = self.params
        if state["m"] and set(state["m"]) != set(params):
            missing, extra = sorted(set(params) - set(state["m"])), sorted(set(state["m"]) - set(params))
            raise ValueError(f"optimizer state does not match the parameters: no state for {missing[:5]}, "
                             f"state for unknown {extra[:5]} (a checkpoint of another model?)")
        for k, a in state["m"].items():
            w = params[k]
            if tuple(np.shape(a)) != tuple(w.shape) or np.asarray(a).dtype != w.dtype:
                raise ValueError(f"optimizer state for {k!r} is {np.asarray(a).dtype}{tuple(np.shape(a))} but "
                                 f"the parameter is {w.dtype}{tuple(w.shape)}: another model or dtype?")
        self.t = int(step)
        # keep our own copies: the caller's arrays must not alias the live state
        self.m = {k: np.array(a, copy=True) for k, a in state["m"].items()}
        self.v = {k: np.array(a, copy=True) for k, a in state["v"].items()}

    def __repr__(self):
        hp = ", ".join(f"{k}={v!r}" for k, v in self.hyperparams().items() if k != "optimizer")
        return f"{type(self).__name__}(lr={self.lr!r}, {hp}, step={self.t})"


class AdamW(_Adam):
    """AdamW. Default: BERT/ALBERT's ``AdamWeightDecayOptimizer`` (no bias correction,
    eps 1e-6 outside the sqrt, decay added to the update). ``bias_correction=True``:
    ``torch.optim.AdamW`` exactly (decay ``w *= 1 - lr*wd`` first, bias-corrected moments,
    eps default 1e-8).

    Inputs: params (dict name -> array, or a model with ``.params``); lr (base learning
    rate when ``step`` gets none); betas (b1, b2); eps (None:
    1e-6, or 1e-8 with bias correction); weight_decay; exclude_from_weight_decay (regex
    patterns searched in the name; ``()`` decays everything, as a bare torch AdamW);
    lr_multipliers (name -> factor, e.g. :func:`layerwise_lr_multipliers`).
    """
    name = "adamw"

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=None, weight_decay=0.01,
                 exclude_from_weight_decay=EXCLUDE_FROM_WEIGHT_DECAY, bias_correction=False,
                 lr_multipliers=None):
        if not isinstance(bias_correction, bool):
            raise ValueError(f"bias_correction must be True or False, got {bias_correction!r}")
        self.bias_correction = bias_correction
        if eps is None:
            eps = 1e-8 if bias_correction else 1e-6
        super().__init__(params, lr, betas, eps, weight_decay, exclude_from_weight_decay, lr_multipliers)

    def hyperparams(self):
        return {**super().hyperparams(), "bias_correction": self.bias_correction}

    def _update(self, name, w, g, m, v, lr, t):
        if not self.bias_correction:
            u = self._adam_direction(name, w, g, m, v)
            # w = w - lr*u
            u *= lr
            w -= u
            return
        # torch.optim.AdamW, _single_tensor_adamw, operation for operation
        b1, b2 = self.betas
        xp = get_array_module(w)
        if self.uses_weight_decay(name):
            w *= 1.0 - lr * self.weight_decay           # param.mul_(1 - lr*wd)
        m += (1.0 - b1) * (g - m)                       # exp_avg.lerp_(grad, 1 - b1)
        v *= b2
        v += (1.0 - b2) * (g * g)                       # exp_avg_sq.mul_(b2).addcmul_(g, g, value=1-b2)
        step_size = lr / (1.0 - b1 ** t)
        denom = xp.sqrt(v)
        denom /= math.sqrt(1.0 - b2 ** t)
        denom += self.eps                               # (sqrt(v)/sqrt(bc2)).add_(eps)
        upd = m * (-step_size)
        upd /= denom
        w += upd                                        # param.addcdiv_(m, denom, value=-step_size)


class LAMB(_Adam):
    """LAMB exactly as google-research/albert ``lamb_optimizer.py``: the ALBERT AdamW
    direction ``u`` (with decay) scaled per tensor by the trust ratio ``|w|/|u|`` (1 when
    either norm is 0, and for names matching ``exclude_from_layer_adaptation``, which
    defaults to ``exclude_from_weight_decay``). No bias correction, eps 1e-6.

    Inputs: as :class:`AdamW`, plus exclude_from_layer_adaptation (regex patterns, or None).
    The norms stay on the device: a step costs no host synchronisation.
    """
    name = "lamb"

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-6, weight_decay=0.01,
                 exclude_from_weight_decay=EXCLUDE_FROM_WEIGHT_DECAY,
                 exclude_from_layer_adaptation=None, lr_multipliers=None):
        super().__init__(params, lr, betas, eps, weight_decay, exclude_from_weight_decay, lr_multipliers)
        if exclude_from_layer_adaptation is None:       # as lamb_optimizer.py
            self.exclude_from_layer_adaptation = self.exclude_from_weight_decay
        else:
            self.exclude_from_layer_adaptation = _patterns("exclude_from_layer_adaptation",
                                                           exclude_from_layer_adaptation)
        self._adapt_cache = {}

    def uses_layer_adaptation(self, name: str) -> bool:
        """ALBERT's ``_do_layer_adaptation``: trust ratio unless a pattern matches."""
        hit = self._adapt_cache.get(name)
        if hit is None:
            hit = self._adapt_cache[name] = not any(re.search(p, name) for p in self.exclude_from_layer_adaptation)
        return hit

    def hyperparams(self):
        return {**super().hyperparams(),
                "exclude_from_layer_adaptation": list(self.exclude_from_layer_adaptation)}

    def _update(self, name, w, g, m, v, lr, t):
        u = self._adam_direction(name, w, g, m, v)
        if self.uses_layer_adaptation(name):
            xp = get_array_module(w)
            # r = |w| / |u| if both > 0 else 1     (0-d device arrays: no sync)
            w_norm = xp.linalg.norm(w.ravel())
            u_norm = xp.linalg.norm(u.ravel())
            ok = (w_norm > 0) & (u_norm > 0)
            r = xp.where(ok, w_norm / xp.where(u_norm > 0, u_norm, 1), 1).astype(w.dtype)
            # w = w - r*lr*u
            u *= r * lr
        else:
            u *= lr
        w -= u


OPTIMIZERS = {"lamb": LAMB, "adamw": AdamW}
# the CLI's --optimizer choices: "adamw" is ALBERT's (no bias correction), "adamw-torch" is
# torch.optim.AdamW, i.e. AdamW(bias_correction=True)
OPTIMIZER_NAMES = ("lamb", "adamw", "adamw-torch")


def make_optimizer(name: str, params, **kwargs):
    """``make_optimizer("lamb"|"adamw"|"adamw-torch", model_or_params, lr=..., weight_decay=...,
    ...)``: the CLI's ``--optimizer``; keyword arguments go to :class:`LAMB` / :class:`AdamW`
    ("adamw-torch" is ``AdamW(bias_correction=True)``)."""
    if name == "adamw-torch":
        return AdamW(params, bias_correction=True, **kwargs)
    if name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}: expected one of {list(OPTIMIZER_NAMES)}")
    return OPTIMIZERS[name](params, **kwargs)


# ----------------------------------------------------------------------------------------
# schedule and clipping
# ----------------------------------------------------------------------------------------

class LRSchedule:
    """ALBERT/BERT's learning-rate schedule (``create_optimizer``), its settings checked once
    here: ``schedule = LRSchedule(peak_lr, W, T)``, then ``schedule(t)`` at every step::

        lr(t) = peak_lr * t / W                          if t < W     (warm-up; lr(0) = 0)
        lr(t) = peak_lr * (1 - min(t, T)/T) ** power     otherwise    (polynomial decay to 0)

    Note the decay is counted from step 0, as TF's ``polynomial_decay``: at t = W the rate
    is ``peak_lr * (1 - W/T)``, and it is 0 from t = T on.

    Inputs: peak_lr >= 0; warmup_steps W in [0, T]; total_steps T >= 1; power > 0.
    """

    def __init__(self, peak_lr: float, warmup_steps: int, total_steps: int, power: float = 1.0):
        _check_count("warmup_steps", warmup_steps)
        _check_count("total_steps", total_steps)
        if total_steps < 1:
            raise ValueError(f"total_steps must be at least 1, got {total_steps}")
        if warmup_steps > total_steps:
            raise ValueError(f"warmup_steps={warmup_steps} exceeds total_steps={total_steps}")
        _check_nonneg_float("peak_lr", peak_lr)
        if isinstance(power, bool) or not isinstance(power, (int, float)) or not power > 0:
            raise ValueError(f"power must be positive, got {power!r}")
        self.peak_lr, self.power = float(peak_lr), float(power)
        self.warmup_steps, self.total_steps = int(warmup_steps), int(total_steps)

    def __call__(self, step: int) -> float:
        """The learning rate of optimiser step ``step`` (0 for the first update), a float."""
        W, T = self.warmup_steps, self.total_steps
        if step < W:
            return self.peak_lr * step / W
        return self.peak_lr * (1.0 - min(step, T) / T) ** self.power

    def __repr__(self):
        return (f"LRSchedule(peak_lr={self.peak_lr!r}, warmup_steps={self.warmup_steps}, "
                f"total_steps={self.total_steps}, power={self.power!r})")


def lr_at(step: int, peak_lr: float, warmup_steps: int, total_steps: int, power: float = 1.0) -> float:
    """``LRSchedule(peak_lr, warmup_steps, total_steps, power)(step)`` with every argument
    checked (step >= 0 an integer): for one value. A loop builds the :class:`LRSchedule`
    once and calls it every step. Returns: a Python float."""
    _check_count("step", step)
    return LRSchedule(peak_lr, warmup_steps, total_steps, power)(step)


def global_grad_norm(grads: Mapping) -> float:
    """sqrt(sum over tensors of sum(g**2)), as a Python float (one device sync).
    Each tensor's sum of squares is taken in its own dtype, the total in float64."""
    if not grads:
        raise ValueError("grads is empty: there is no gradient to measure")
    arrays = list(grads.values())
    xp = get_array_module(*arrays)
    sq = [xp.vdot(a.ravel(), a.ravel()) for a in arrays]     # 0-d each, on the device
    return float(xp.sqrt(xp.stack(sq).astype(xp.float64).sum()))


def clip_grad_norm(grads: Mapping, max_norm: float = 1.0) -> float:
    """``tf.clip_by_global_norm``: when the global L2 norm N of all gradients exceeds
    ``max_norm``, scale every gradient in place by max_norm / N.

    Inputs: grads: name -> array (modified in place); max_norm > 0.
    Returns: N *before* clipping, a Python float. A non-finite N leaves grads untouched:
    the caller should skip the step (or stop) rather than apply NaN updates.
    """
    if not isinstance(max_norm, (int, float)) or not max_norm > 0 or not math.isfinite(max_norm):
        raise ValueError(f"max_norm must be a positive finite number, got {max_norm!r}")
    norm = global_grad_norm(grads)
    if math.isfinite(norm) and norm > max_norm:
        scale = max_norm / norm
        for g in grads.values():
            g *= scale
    return norm


# ----------------------------------------------------------------------------------------
# layer-wise learning-rate decay
# ----------------------------------------------------------------------------------------

# Where a parameter sits, read from its name (minialbert's names, with or without an
# "albert." prefix, and HF's albert_layer_groups names):
_BOTTOM = re.compile(r"(^|\.)embeddings\.|(^|\.)embedding_hidden_mapping_in\.")
_ATTN = re.compile(r"(^|\.)encoder\.attention\.(\d+)\.")
_FFN = re.compile(r"(^|\.)encoder\.ffn\.(\d+)\.")
_HF_LAYER = re.compile(r"(^|\.)albert_layer_groups\.(\d+)\.albert_layers\.(\d+)\.")
_ENCODER = re.compile(r"(^|\.)encoder\.")


def parameter_depths(param_names: Iterable[str], config) -> dict:
    """Depth from the top of every parameter (0 = heads), the rule of
    :func:`layerwise_lr_multipliers`.

    Inputs: param_names; config: an AlbertConfig (or its dict) giving the numbers of
    distinct attention / FFN blocks (``num_attention_blocks``, ``num_ffn_blocks``).
    Returns: {name: int}.
    """
    if isinstance(config, Mapping):
        config = AlbertConfig.from_dict(config)
    if not isinstance(config, AlbertConfig):
        raise ValueError(f"config must be an AlbertConfig or its dict, got {type(config).__name__}")
    KA, KF = config.num_attention_blocks, config.num_ffn_blocks
    bottom = max(KA, KF) + 1
    depths = {}
    for name in param_names:
        if not isinstance(name, str):
            raise ValueError(f"param_names must be strings, got {name!r}")
        if _BOTTOM.search(name):
            depths[name] = bottom
        elif (hit := _ATTN.search(name)) or (hit := _FFN.search(name)):
            kind, K = ("attention", KA) if hit.re is _ATTN else ("FFN", KF)
            k = int(hit.group(2))
            if k >= K:
                raise ValueError(f"parameter {name!r} names {kind} block {k}, but the config has only {K} "
                                 f"distinct {kind} blocks (sharing={config.sharing!r})")
            depths[name] = K - k
        elif hit := _HF_LAYER.search(name):
            # HF's layout can only express sharing "all"/"none": one block index for both kinds
            g, j = int(hit.group(2)), int(hit.group(3))
            k = g * config.inner_group_num + j
            if KA != KF or j >= config.inner_group_num or k >= KA:
                raise ValueError(f"parameter {name!r} names group {g}, layer {j}, which this config "
                                 f"(sharing={config.sharing!r}, G={config.effective_groups}, "
                                 f"inner_group_num={config.inner_group_num}) lacks")
            depths[name] = KA - k
        elif _ENCODER.search(name):
            raise ValueError(f"parameter {name!r} is in the encoder but not in an attention or FFN block "
                             "that layerwise_lr_multipliers knows: extend its name rules")
        else:
            depths[name] = 0        # pooler and task heads
    return depths


def layerwise_lr_multipliers(param_names: Iterable[str], config, decay: float) -> dict:
    r"""Layer-wise learning-rate decay: name -> ``decay ** depth``, depth counted from the top.

    Depth ([docs/training/optimizers.md](../training/optimizers.md)): heads and pooler 0;
    the k-th of the K distinct attention blocks (``encoder.attention.{k}.``) ``K - k``,
    likewise the FFN blocks (``encoder.ffn.{k}.``); embeddings and the E->H projection
    ``max(K_att, K_ffn) + 1``.
    Block indices grow with the layer application that uses them, so the rank among
    distinct blocks is the depth. With ``sharing="none"`` (K = L) layer l of L (0-based)
    gets ``decay**(L - l)``, embeddings ``decay**(L + 1)``, heads ``decay**0``: the usual
    per-layer form. With ``sharing="all"`` (one block) it is heads 1, the shared layer
    ``decay``, embeddings ``decay**2``.

    Inputs: param_names (e.g. ``model.params``); config: AlbertConfig or its dict;
    decay in (0, 1] (1 turns it off).
    Returns: {name: float}, to pass as ``lr_multipliers`` to :class:`AdamW` / :class:`LAMB`.
    """
    if isinstance(decay, bool) or not isinstance(decay, (int, float)) or not 0.0 < decay <= 1.0:
        raise ValueError(f"decay must be in (0, 1], got {decay!r}")
    return {name: float(decay) ** d for name, d in parameter_depths(param_names, config).items()}


# ----------------------------------------------------------------------------------------
# argument checks
# ----------------------------------------------------------------------------------------

def _check_count(name, x):
    if isinstance(x, bool) or not isinstance(x, (int, np.integer)) or x < 0:
        raise ValueError(f"{name} must be a non-negative integer, got {x!r}")


def _check_nonneg_float(name, x):
    if isinstance(x, bool) or not isinstance(x, (int, float, np.floating, np.integer)) \
            or not math.isfinite(x) or x < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {x!r}")


def _patterns(name, pats):
    if isinstance(pats, str):
        raise ValueError(f"{name} must be a list of regex patterns, got the single string {pats!r}")
    pats = tuple(pats)
    for p in pats:
        if not isinstance(p, str):
            raise ValueError(f"{name} must hold strings, got {p!r}")
        try:
            re.compile(p)
        except re.error as e:
            raise ValueError(f"{name}: {p!r} is not a valid regex ({e})") from None
    return pats
