"""Optimizers as PyTensor update expressions, compiled into the training function.

Each optimizer takes the parameters (shared variables), their gradients and a learning rate
for each (expressions of one shared scalar, so a schedule changes them all with ``set_value``
and no recompilation) and returns the ``(shared, new_value)`` pairs for
``pytensor.function(updates=...)``. Optimizer state (RMSprop's running mean square, Adam's
moments and step count) lives in shared variables kept in a ``slots`` dict by name, zero at
the start: a caller that compiles several training functions over the same parameters (one
per batch shape under JAX) passes the same dict to each, so they all advance one optimizer
state.

``optimizer_updates`` puts the pieces together: optional weight decay (an L2 term added to the
gradient of every weight matrix), then optional clipping by global norm (Pascanu et al. 2013),
then the optimizer, each parameter's rate the shared one times its optional scale.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pytensor
import pytensor.tensor as pt

from ..errors import UserError

Tensor = pt.TensorVariable
Updates = list[tuple[pytensor.compile.SharedVariable, Tensor]]


Slots = dict[str, pytensor.compile.SharedVariable]


def _state_like(p, name: str, slots: Slots):
    """The optimizer-state variable ``name`` of parameter ``p`` (zeros shaped like it)."""
    key = f"{p.name}_{name}"
    if key not in slots:
        slots[key] = pytensor.shared(np.zeros_like(p.get_value()), name=key)
    return slots[key]


def _cast_like(p, value: Tensor) -> Tensor:
    # Updates must keep p's dtype, whatever the expression was computed in.
    return pt.cast(value, p.dtype)


def _scalar(value: float, like) -> np.ndarray:
    """A hyperparameter in ``like``'s dtype: a Python float would upcast float32 to float64."""
    return np.asarray(value, dtype=like.dtype)


def sgd(params: Sequence, grads: Sequence[Tensor], lrs: Sequence[Tensor],
        slots: Slots) -> Updates:
    """Plain gradient descent: ``p <- p - lr * g``."""
    return [(p, _cast_like(p, p - lr * g)) for p, g, lr in zip(params, grads, lrs)]


def rmsprop(params: Sequence, grads: Sequence[Tensor], lrs: Sequence[Tensor], slots: Slots,
            decay: float = 0.9, eps: float = 1e-6) -> Updates:
    """RMSprop as in the tutorial's part 4: ``m <- decay m + (1 - decay) g^2``,
    ``p <- p - lr g / sqrt(m + eps)`` (defaults: decay 0.9, eps 1e-6; use lr 1e-3)."""
    updates: Updates = []
    for p, g, lr in zip(params, grads, lrs):
        m = _state_like(p, "ms", slots)
        m_new = _scalar(decay, p) * m + _scalar(1 - decay, p) * g**2
        step = lr * g / pt.sqrt(m_new + _scalar(eps, p))
        updates += [(m, _cast_like(m, m_new)), (p, _cast_like(p, p - step))]
    return updates


def adam(params: Sequence, grads: Sequence[Tensor], lrs: Sequence[Tensor], slots: Slots,
         beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8) -> Updates:
    """Adam (Kingma & Ba 2015) with bias-corrected moments; use lr around 1e-3."""
    if "adam_steps" not in slots:
        slots["adam_steps"] = pytensor.shared(np.asarray(0.0, dtype=params[0].dtype),
                                              name="adam_steps")
    steps_done = slots["adam_steps"]
    t = steps_done + 1
    # Bias correction folded into the step size (the paper's "more efficient" ordering).
    correction = pt.sqrt(1 - beta2**t) / (1 - beta1**t)
    updates: Updates = [(steps_done, _cast_like(steps_done, t))]
    for p, g, lr in zip(params, grads, lrs):
        lr_t = _cast_like(steps_done, lr * correction)
        m, v = _state_like(p, "m", slots), _state_like(p, "v", slots)
        m_new = _scalar(beta1, p) * m + _scalar(1 - beta1, p) * g
        v_new = _scalar(beta2, p) * v + _scalar(1 - beta2, p) * g**2
        step = lr_t * m_new / (pt.sqrt(v_new) + _scalar(eps, p))
        updates += [(m, _cast_like(m, m_new)), (v, _cast_like(v, v_new)),
                    (p, _cast_like(p, p - step))]
    return updates


OPTIMIZERS: dict[str, Callable[..., Updates]] = {"sgd": sgd, "rmsprop": rmsprop, "adam": adam}


def global_norm(grads: Sequence[Tensor]) -> Tensor:
    """``||g||``: the Euclidean norm of all gradients taken together as one vector."""
    return pt.sqrt(sum((g**2).sum() for g in grads))


def clip_by_global_norm(grads: Sequence[Tensor], max_norm: float) -> tuple[list[Tensor], Tensor]:
    """Pascanu et al.: if ``||g|| > max_norm`` then ``g <- max_norm g / ||g||``.

    Returns the clipped gradients and the norm before clipping. The direction never changes;
    only gradients longer than ``max_norm`` are shortened, to exactly ``max_norm``.
    """
    norm = global_norm(grads)
    scale = pt.minimum(1.0, max_norm / pt.maximum(norm, 1e-12))  # no 0/0 for a zero gradient
    return [g * _cast_like(g, scale) for g in grads], norm


def averaging_updates(updates: Updates, params: Sequence, on, slots: Slots) -> Updates:
    """Polyak averaging, the "A" of averaged SGD (Polyak & Juditsky 1992; NT-ASGD in Merity
    et al. 2017): while the shared flag ``on`` is 1, each parameter's slot ``NAME_avg`` holds
    the mean of its values after every step since ``on`` turned 1 (``avg_count`` of them);
    while it is 0 nothing changes. ``updates`` are the optimizer's, whose new parameter values
    are averaged."""
    if "avg_count" not in slots:
        slots["avg_count"] = pytensor.shared(np.asarray(0.0, dtype=params[0].dtype),
                                             name="avg_count")
    count = slots["avg_count"]
    n = count + on
    averaged: Updates = [(count, _cast_like(count, n))]
    for p, new in updates:
        if any(p is q for q in params):
            avg = _state_like(p, "avg", slots)
            averaged.append((avg, _cast_like(p, avg + on * (new - avg) / pt.maximum(n, 1))))
    return averaged


def optimizer_updates(name: str, params: Sequence, grads: Sequence[Tensor], lr: Tensor, *,
                      clip_norm: float | None = None, weight_decay: float = 0.0,
                      lr_scales: Sequence[float] | None = None, slots: Slots | None = None,
                      **hyper: float) -> tuple[Updates, Tensor]:
    """Updates of optimizer ``name`` (``OPTIMIZERS``), and the gradient norm before clipping.

    ``weight_decay`` adds ``weight_decay * p`` to the gradient of every parameter with two or
    more dimensions (weight matrices and embeddings, not biases). ``clip_norm`` (None or <= 0:
    off) clips by global norm. ``lr_scales`` (one per parameter; None: all 1) multiply the
    learning rate parameter by parameter. ``slots`` holds the optimizer state (a new dict if
    None; pass the same one to share a state). ``hyper`` goes to the optimizer (``decay``,
    ``beta1``...).
    """
    if name not in OPTIMIZERS:
        raise UserError(f"unknown optimizer {name!r}: use one of {', '.join(OPTIMIZERS)}")
    params = list(params)
    grads = [g + _scalar(weight_decay, p) * p if weight_decay and p.ndim >= 2 else g
             for p, g in zip(params, grads)]
    if clip_norm is not None and clip_norm > 0:
        grads, norm = clip_by_global_norm(grads, clip_norm)
    else:
        norm = global_norm(grads)
    lrs = [lr if s == 1 else lr * _scalar(s, p)
           for p, s in zip(params, lr_scales or [1] * len(params))]
    return OPTIMIZERS[name](params, grads, lrs, {} if slots is None else slots, **hyper), norm
