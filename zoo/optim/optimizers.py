"""Seven first-order optimizers written out from their update rules.

Each class is a plain :class:`torch.optim.Optimizer` subclass whose ``step`` loops over the
parameters and applies its rule with ordinary tensor operations, so the code reads as the maths.
The options, defaults and results are those of the :mod:`torch.optim` class of the same name
(the tests check the trajectories against it), and the per-parameter state (moment tensors plus a
step count) uses the same names, so ``state_dict()`` / ``load_state_dict()`` round-trip and a
checkpoint loads with ``torch.load(..., weights_only=True)``.

Read them as a progression, each adding one idea to the one before::

    SGD        step along the negative gradient
    + momentum     ... of a running sum of past gradients (a velocity)
    + Nesterov     ... evaluated one velocity step ahead
    Adagrad    divide by the root of the *sum* of squared gradients: a per-coordinate step size
    RMSprop    ... of an exponential *average* of squared gradients, so the step does not decay
    Adam       RMSprop's denominator applied to a momentum-averaged gradient, both bias-corrected
      AdamW        Adam with weight decay applied to the weights, not mixed into the gradient
      Adamax       Adam with the root-mean-square replaced by an exponentially decayed max norm
      Adadelta     RMSprop whose numerator is the root-mean-square of past updates (units match)

Notation used in the docstrings: ``g`` is the gradient of the current step (negated when
``maximize``; plus ``weight_decay * p`` for the L2 decay, except in AdamW), ``t`` the step
number counted from 1, operations are element-wise, ``lr`` is the group's learning rate.
Sparse gradients are refused; complex parameters are updated as pairs of reals, as torch does.
"""
from __future__ import annotations

import math
import numbers
from typing import Any, Callable, Iterable

import torch
from torch import Tensor
from torch.optim import Optimizer

Params = Iterable[Tensor] | Iterable[dict[str, Any]]


# ----------------------------------------------------------------------------- checks


def _number(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or math.isnan(value):
        raise ValueError(f"{name}: expected a number, got {value!r}")
    return value


def _at_least(name: str, value: Any) -> None:
    """``ValueError`` naming ``name`` unless ``value >= 0``."""
    if _number(name, value) < 0:
        raise ValueError(f"{name}: expected a value >= 0, got {value!r}")


def _within(name: str, value: Any, high_open: bool) -> None:
    """``ValueError`` naming ``name`` unless ``value`` is in [0, 1) (``high_open``) or [0, 1]."""
    value = _number(name, value)
    if not (0 <= value < 1 if high_open else 0 <= value <= 1):
        raise ValueError(f"{name}: expected a value in [0, {'1)' if high_open else '1]'}, got {value!r}")


def _betas(name: str, betas: Any) -> None:
    if not isinstance(betas, (tuple, list)) or len(betas) != 2:
        raise ValueError(f"betas: expected a pair (beta1, beta2), got {betas!r}")
    _within("betas[0]", betas[0], high_open=True)
    _within("betas[1]", betas[1], high_open=True)


def _unit(name: str, value: Any) -> None:
    """``ValueError`` naming ``name`` unless ``value`` is in [0, 1]."""
    _within(name, value, high_open=False)


#: how each hyper-parameter is checked, in whichever optimizer has it
_RULES: dict[str, Callable[[str, Any], Any]] = {
    "lr": _at_least, "momentum": _at_least, "dampening": _number, "lr_decay": _at_least,
    "initial_accumulator_value": _at_least, "alpha": _unit, "rho": _unit, "betas": _betas,
    "eps": _at_least, "weight_decay": _at_least,
}


# ----------------------------------------------------------------------------- shared machinery


def _grad(p: Tensor, group: dict, l2: bool = True) -> Tensor:
    """The gradient a rule works on: ``p.grad``, negated for ``maximize``, plus
    ``weight_decay * p`` when ``l2`` (a new tensor whenever it differs from ``p.grad``;
    ``p.grad`` itself is never modified)."""
    g = p.grad
    if group["maximize"]:
        g = -g
    if l2 and group["weight_decay"] != 0:
        g = g.add(p, alpha=group["weight_decay"])
    return g


def _buffer(state: dict, name: str, like: Tensor, fill: float = 0.0) -> Tensor:
    """``state[name]``, created on first use as a tensor shaped like ``like`` filled with ``fill``."""
    buf = state.get(name)
    if buf is None:
        buf = state[name] = torch.full_like(like, fill, memory_format=torch.preserve_format)
    return buf


class _RuleOptimizer(Optimizer):
    """The loop the seven optimizers share: for every parameter with a gradient, count the step
    and hand ``(p, g, state, group, t)`` to :meth:`_update`, which changes ``p`` in place."""

    #: whether weight_decay is L2 added to the gradient (False: the rule applies it itself)
    _l2_in_grad = True

    def __init__(self, params: Params, defaults: dict[str, Any]) -> None:
        self._check(defaults)
        super().__init__(params, defaults)

    def _check(self, hp: dict[str, Any]) -> None:
        """``ValueError`` naming the first bad hyper-parameter of ``hp`` (defaults or a group):
        each one the optimizer has is checked by its rule in :data:`_RULES`."""
        for name, rule in _RULES.items():
            if name in hp:
                rule(name, hp[name])

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        # a group may override any default: check what it will run with
        self._check({**self.defaults, **{k: v for k, v in param_group.items() if k != "params"}})
        super().add_param_group(param_group)

    def _update(self, p: Tensor, g: Tensor, state: dict, group: dict, t: int) -> None:
        """Apply the rule to ``p`` in place, given its gradient ``g`` (maximize and L2 decay
        already applied), its ``state`` (buffers created on first use), the ``group``'s
        hyper-parameters and the step number ``t`` (1 on the first step)."""
        raise NotImplementedError

    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """One update of every parameter that has a gradient. ``closure`` (optional) recomputes
        the loss (with gradients enabled) before the update; its value is returned."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        with torch.no_grad():
            for group in self.param_groups:
                for p in group["params"]:
                    if p.grad is None:
                        continue
                    if p.grad.is_sparse:
                        raise RuntimeError(f"{type(self).__name__}: sparse gradients are not supported "
                                           f"(parameter of shape {tuple(p.shape)})")
                    state = self.state[p]
                    if "step" not in state:  # an exact count (torch.optim's float32 one stops at 2**24)
                        state["step"] = torch.zeros((), dtype=torch.int64)
                    state["step"] += 1
                    g = _grad(p, group, l2=self._l2_in_grad)
                    if torch.is_complex(p):  # real and imaginary parts as independent coordinates
                        p, g = torch.view_as_real(p), torch.view_as_real(g)
                    self._update(p, g, state, group, int(state["step"].item()))
        return loss


# ----------------------------------------------------------------------------- the rules


class SGD(_RuleOptimizer):
    """Stochastic gradient descent, optionally with (Nesterov) momentum.

    Plain SGD moves every weight against its gradient::

        p <- p - lr * g

    Momentum (``momentum`` = mu > 0) keeps a velocity ``b``, a running sum of past gradients
    that smooths noisy steps and speeds up along directions the gradients agree on. The first
    step starts it at the gradient itself; later steps decay it and add the new gradient, scaled
    by ``1 - dampening``::

        b <- g                                   (t = 1)
        b <- mu * b + (1 - dampening) * g        (t > 1)
        p <- p - lr * b

    Nesterov momentum (``nesterov=True``, needs mu > 0 and no dampening) steps with the
    gradient plus the velocity looked one step ahead, ``p <- p - lr * (g + mu * b)``, which
    reacts sooner when the velocity overshoots.

    ``weight_decay`` is L2 decay (added to ``g``); ``maximize`` ascends. Defaults as
    :class:`torch.optim.SGD` (lr 1e-3).
    """

    def __init__(self, params: Params, lr: float = 1e-3, momentum: float = 0.0, dampening: float = 0.0,
                 weight_decay: float = 0.0, nesterov: bool = False, *, maximize: bool = False) -> None:
        super().__init__(params, dict(lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay,
                                      nesterov=nesterov, maximize=maximize))

    def _check(self, hp: dict[str, Any]) -> None:
        super()._check(hp)
        if hp["nesterov"] and (hp["momentum"] <= 0 or hp["dampening"] != 0):
            raise ValueError("nesterov: needs momentum > 0 and dampening == 0, got "
                             f"momentum={hp['momentum']!r}, dampening={hp['dampening']!r}")

    def _update(self, p: Tensor, g: Tensor, state: dict, group: dict, t: int) -> None:
        mu = group["momentum"]
        if mu != 0:
            b = state.get("momentum_buffer")
            if b is None:  # the first step with momentum: the velocity is the gradient, undamped
                b = state["momentum_buffer"] = g.clone()
            else:
                b.mul_(mu).add_(g, alpha=1 - group["dampening"])
            g = g.add(b, alpha=mu) if group["nesterov"] else b
        p.add_(g, alpha=-group["lr"])


class Adagrad(_RuleOptimizer):
    """AdaGrad: a step size per coordinate, shrinking where gradients have been large.

    Where SGD uses one learning rate for every weight, AdaGrad divides each coordinate's step
    by the root of the sum ``s`` of all its squared gradients so far, so rarely-updated
    (sparse-feature) weights keep large steps and often-updated ones slow down. The sum starts
    at ``initial_accumulator_value``; ``lr_decay`` additionally shrinks the global rate::

        s <- s + g^2
        p <- p - lr / (1 + (t - 1) * lr_decay) * g / (sqrt(s) + eps)

    The sum only grows, so the steps decay towards zero (what RMSprop fixes). No momentum.
    ``weight_decay`` is L2 decay (added to ``g``). Defaults as :class:`torch.optim.Adagrad`.
    """

    def __init__(self, params: Params, lr: float = 1e-2, lr_decay: float = 0.0, weight_decay: float = 0.0,
                 initial_accumulator_value: float = 0.0, eps: float = 1e-10, *, maximize: bool = False) -> None:
        super().__init__(params, dict(lr=lr, lr_decay=lr_decay, weight_decay=weight_decay, eps=eps,
                                      initial_accumulator_value=initial_accumulator_value, maximize=maximize))


    def _update(self, p: Tensor, g: Tensor, state: dict, group: dict, t: int) -> None:
        s = _buffer(state, "sum", p, group["initial_accumulator_value"])
        s.addcmul_(g, g)
        rate = group["lr"] / (1 + (t - 1) * group["lr_decay"])
        p.addcdiv_(g, s.sqrt().add_(group["eps"]), value=-rate)


class RMSprop(_RuleOptimizer):
    """RMSprop: AdaGrad with a moving average instead of a sum, optionally centred and with momentum.

    AdaGrad's sum of squared gradients grows forever; RMSprop replaces it with an exponential
    moving average ``v`` (decay ``alpha``), so the per-coordinate scale tracks the recent
    gradients and the step size no longer vanishes::

        v <- alpha * v + (1 - alpha) * g^2
        d <- sqrt(v) + eps
        p <- p - lr * g / d

    ``centered=True`` also averages the gradient, ``m <- alpha * m + (1 - alpha) * g``, and
    divides by an estimate of its standard deviation instead of its root mean square:
    ``d <- sqrt(v - m^2) + eps``. ``momentum`` = mu > 0 adds a velocity over the scaled steps::

        b <- mu * b + g / d          (b starts at 0)
        p <- p - lr * b

    ``weight_decay`` is L2 decay (added to ``g``). Defaults as :class:`torch.optim.RMSprop`.
    """

    def __init__(self, params: Params, lr: float = 1e-2, alpha: float = 0.99, eps: float = 1e-8,
                 weight_decay: float = 0.0, momentum: float = 0.0, centered: bool = False, *,
                 maximize: bool = False) -> None:
        super().__init__(params, dict(lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay, momentum=momentum,
                                      centered=centered, maximize=maximize))


    def _update(self, p: Tensor, g: Tensor, state: dict, group: dict, t: int) -> None:
        alpha = group["alpha"]
        v = _buffer(state, "square_avg", p)
        v.mul_(alpha).addcmul_(g, g, value=1 - alpha)
        if group["centered"]:
            m = _buffer(state, "grad_avg", p)
            m.lerp_(g, 1 - alpha)
            d = v.addcmul(m, m, value=-1).sqrt_()
        else:
            d = v.sqrt()
        d.add_(group["eps"])
        if group["momentum"] > 0:
            b = _buffer(state, "momentum_buffer", p)
            b.mul_(group["momentum"]).addcdiv_(g, d)
            p.add_(b, alpha=-group["lr"])
        else:
            p.addcdiv_(g, d, value=-group["lr"])


class Adam(_RuleOptimizer):
    """Adam: RMSprop's per-coordinate scale applied to a momentum average of the gradient.

    Adam keeps two exponential moving averages: of the gradient (``m``, decay beta1, the
    momentum idea) and of its square (``v``, decay beta2, RMSprop's scale). Both start at zero,
    so early on they are biased towards zero; dividing by ``1 - beta^t`` removes that bias::

        m <- beta1 * m + (1 - beta1) * g
        v <- beta2 * v + (1 - beta2) * g^2
        m_hat = m / (1 - beta1^t),   v_hat = v / (1 - beta2^t)
        p <- p - lr * m_hat / (sqrt(v_hat) + eps)

    ``amsgrad=True`` divides by the largest ``v`` seen so far instead (``v_max <- max(v_max, v)``,
    ``v_hat = v_max / (1 - beta2^t)``), so a coordinate's step size never grows back.
    ``weight_decay`` here is L2 decay added to ``g`` (and so rescaled by ``v``; see
    :class:`AdamW`). Defaults as :class:`torch.optim.Adam`.
    """

    def __init__(self, params: Params, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0, amsgrad: bool = False, *,
                 maximize: bool = False) -> None:
        super().__init__(params, dict(lr=lr, betas=tuple(betas) if isinstance(betas, list) else betas, eps=eps,
                                      weight_decay=weight_decay, amsgrad=amsgrad, maximize=maximize))


    def _update(self, p: Tensor, g: Tensor, state: dict, group: dict, t: int) -> None:
        lr, (beta1, beta2) = group["lr"], group["betas"]
        if not self._l2_in_grad and group["weight_decay"] != 0:  # AdamW: shrink the weights first
            p.mul_(1 - lr * group["weight_decay"])
        m = _buffer(state, "exp_avg", p)
        v = _buffer(state, "exp_avg_sq", p)
        m.lerp_(g, 1 - beta1)
        v.mul_(beta2).addcmul_(g, g, value=1 - beta2)
        if group["amsgrad"]:
            v_max = _buffer(state, "max_exp_avg_sq", p)
            torch.maximum(v_max, v, out=v_max)
            v = v_max
        # lr * m_hat / (sqrt(v_hat) + eps), with the corrections folded into scalars
        d = (v.sqrt() / math.sqrt(1 - beta2 ** t)).add_(group["eps"])
        p.addcdiv_(m, d, value=-lr / (1 - beta1 ** t))


class AdamW(Adam):
    """AdamW: Adam with decoupled weight decay.

    In :class:`Adam` the L2 term ``weight_decay * p`` is part of the gradient, so it is divided
    by ``sqrt(v_hat)`` like everything else: weights with large gradients are barely decayed.
    AdamW leaves the gradient alone and shrinks the weights directly before the Adam step, so
    every weight decays at the same rate ``lr * weight_decay``::

        p <- p * (1 - lr * weight_decay)
        p <- p - lr * m_hat / (sqrt(v_hat) + eps)            (m_hat, v_hat as in Adam, from g)

    Everything else (``betas``, ``eps``, ``amsgrad``, ``maximize``) is Adam's. Defaults as
    :class:`torch.optim.AdamW` (weight decay 1e-2).
    """

    _l2_in_grad = False

    def __init__(self, params: Params, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 1e-2, amsgrad: bool = False, *,
                 maximize: bool = False) -> None:
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, amsgrad=amsgrad,
                         maximize=maximize)


class Adamax(_RuleOptimizer):
    """Adamax: Adam with the root mean square replaced by an infinity norm.

    Adam scales by ``sqrt(v)``, an L2 average of past gradients; Adamax (from the same paper)
    takes the limit of the Lp average as p -> infinity, an exponentially decayed running
    maximum ``u`` of ``|g|``, which needs no bias correction and no square root (``eps`` sits
    inside the max, so ``u`` is never 0)::

        m <- beta1 * m + (1 - beta1) * g
        u <- max(beta2 * u, |g| + eps)
        p <- p - lr / (1 - beta1^t) * m / u

    ``weight_decay`` is L2 decay (added to ``g``). Defaults as :class:`torch.optim.Adamax` (lr 2e-3).
    """

    def __init__(self, params: Params, lr: float = 2e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0, *, maximize: bool = False) -> None:
        super().__init__(params, dict(lr=lr, betas=tuple(betas) if isinstance(betas, list) else betas, eps=eps,
                                      weight_decay=weight_decay, maximize=maximize))


    def _update(self, p: Tensor, g: Tensor, state: dict, group: dict, t: int) -> None:
        beta1, beta2 = group["betas"]
        m = _buffer(state, "exp_avg", p)
        u = _buffer(state, "exp_inf", p)
        m.lerp_(g, 1 - beta1)
        torch.maximum(u.mul_(beta2), g.abs().add_(group["eps"]), out=u)
        p.addcdiv_(m, u, value=-group["lr"] / (1 - beta1 ** t))


class Adadelta(_RuleOptimizer):
    """Adadelta: RMSprop whose step size is the running RMS of the past updates.

    RMSprop's update ``lr * g / sqrt(v)`` has no units of the weights (the gradient's units
    cancel). Adadelta replaces ``lr`` by the root mean square of the recent updates themselves,
    a second moving average ``a`` (same decay ``rho``), which restores the units and makes the
    rule largely insensitive to ``lr`` (which stays as an overall factor, default 1)::

        v <- rho * v + (1 - rho) * g^2
        delta = sqrt(a + eps) / sqrt(v + eps) * g
        a <- rho * a + (1 - rho) * delta^2
        p <- p - lr * delta

    ``weight_decay`` is L2 decay (added to ``g``). Defaults as :class:`torch.optim.Adadelta`.
    """

    def __init__(self, params: Params, lr: float = 1.0, rho: float = 0.9, eps: float = 1e-6,
                 weight_decay: float = 0.0, *, maximize: bool = False) -> None:
        super().__init__(params, dict(lr=lr, rho=rho, eps=eps, weight_decay=weight_decay, maximize=maximize))


    def _update(self, p: Tensor, g: Tensor, state: dict, group: dict, t: int) -> None:
        rho, eps = group["rho"], group["eps"]
        v = _buffer(state, "square_avg", p)
        a = _buffer(state, "acc_delta", p)
        v.mul_(rho).addcmul_(g, g, value=1 - rho)
        delta = a.add(eps).sqrt_().div_(v.add(eps).sqrt_()).mul_(g)
        a.mul_(rho).addcmul_(delta, delta, value=1 - rho)
        p.add_(delta, alpha=-group["lr"])


__all__ = ["Adadelta", "Adagrad", "Adam", "AdamW", "Adamax", "RMSprop", "SGD"]
