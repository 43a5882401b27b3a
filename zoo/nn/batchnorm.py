"""Batch normalization (Ioffe & Szegedy, "Batch Normalization: Accelerating Deep Network Training
by Reducing Internal Covariate Shift", ICML 2015) written out in plain tensor ops, as a reference
that reads like the paper and behaves exactly like ``torch.nn.BatchNorm{1,2,3}d`` (same
arguments, same parameter and buffer names, same state dicts, same numbers).

What the layer computes
-----------------------
The input has a channel dimension 1, ``[N, C, *]``. Each channel ``c`` is treated on its own: all
of its values in the batch and at every position, ``m = N * prod(*)`` numbers, are shifted and
scaled to zero mean and unit variance,

    x_hat = (x - mu_c) / sqrt(var_c + eps),

and then, with ``affine=True``, mapped to ``y = weight_c * x_hat + bias_c``.

Why the statistics of the batch in training
    The point of the layer is that the next layer sees inputs with a stable distribution while
    the weights before it keep changing. The exact mean and variance over the whole data set
    under the *current* weights would cost a pass over the data at every step, so the batch is
    used as a sample of it. Because ``mu`` and ``var`` are functions of the batch, the gradient
    flows through them too (every sample's output depends on the others): the layer cannot
    simply undo a shift of its input by learning a bias, and the noise of the batch estimate
    acts as a mild regulariser. Here the statistics are ordinary ``mean`` ops, and autograd
    differentiates through them.

Why running estimates at inference
    At test time the output for one sample must not depend on which other samples share its
    batch (or need a batch at all), and must be deterministic. So during training the layer
    also keeps ``running_mean`` and ``running_var``, estimates of the population statistics,
    and in eval mode normalises with these fixed numbers: the layer becomes a per-channel affine
    map that can even be folded into the preceding convolution.

Biased vs unbiased variance
    Normalising uses the *biased* variance of the batch, ``sum((x - mu)^2) / m``: it is the
    exact second moment of the numbers being normalised, so the normalised batch has unit
    variance exactly. The running estimate instead stores the *unbiased* variance,
    ``sum((x - mu)^2) / (m - 1)`` (Bessel's correction), since it estimates the variance of the
    population from a sample whose mean was itself estimated. With ``m = 1`` neither makes sense
    (the biased variance is 0 and the unbiased one 0/0), so training with a single value per
    channel is an error.

EMA vs cumulative average
    With a float ``momentum`` the running statistics are an exponential moving average, updated
    after each training batch as ``new = (1 - momentum) * old + momentum * batch``: recent
    batches count most, which suits statistics that drift as the weights train. (This
    "momentum" is the weight of the *new* value, the opposite of an optimizer's momentum.) With
    ``momentum=None`` the layer keeps the plain average over all batches so far: after
    incrementing ``num_batches_tracked`` to ``k``, the factor is ``1 / k``, which makes the
    running value the equal-weight mean of the ``k`` batch statistics. ``num_batches_tracked``
    counts training forwards in either case.

What affine adds
    Forcing zero mean and unit variance could limit what the layer can represent (a sigmoid
    after it would stay in its near-linear range). The learnt per-channel ``weight`` (gamma, 1
    at init) and ``bias`` (beta, 0 at init) give that freedom back: the layer can scale and
    shift each channel, up to recovering the identity, while the optimisation still benefits
    from normalised activations.

Edge behaviour (as torch)
-------------------------
* ``track_running_stats=False``: no buffers, and batch statistics are used in eval mode too.
  If the flag is switched off after construction while the buffers exist, training normalises
  with batch statistics without updating them and eval mode still uses them.
* Whenever batch statistics are used, a single value per channel raises ``ValueError``
  ("Expected more than 1 value per channel when training") and ``eps`` must be positive
  (non-negative otherwise).
* An empty batch gives an empty output, counts in ``num_batches_tracked`` and leaves the running
  statistics as they were.
* Half and bfloat16 inputs are normalised in float32 and returned in their own dtype.
Unlike torch, a bad input raises before any state changes (torch has already counted the batch
in ``num_batches_tracked`` when it raises), and a wrong rank or channel count is a ``ValueError``
that names ``input``.

:func:`convert_batchnorm` swaps the torch and zoo modules in a model, in either direction.
"""
from __future__ import annotations

import torch
from torch import nn

__all__ = ["BatchNorm1d", "BatchNorm2d", "BatchNorm3d", "convert_batchnorm"]


class _BatchNormBase(nn.Module):
    """Shared code of :class:`BatchNorm1d`, :class:`BatchNorm2d` and :class:`BatchNorm3d`, which
    only differ in the input ranks they accept. See the module docstring for the maths."""

    # Version 2 of the state-dict layout has ``num_batches_tracked`` (as torch's BN).
    _version = 2
    _ranks: tuple[int, ...] = ()
    _layout: str = ""

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float | None = 0.1,
                 affine: bool = True, track_running_stats: bool = True, device=None, dtype=None,
                 *, bias: bool = True) -> None:
        super().__init__()
        factory = {"device": device, "dtype": dtype}
        self.num_features = num_features
        self.eps = eps
        self.momentum = momentum
        self.affine = affine
        self.track_running_stats = track_running_stats
        if affine:
            self.weight = nn.Parameter(torch.empty(num_features, **factory))
            if bias:
                self.bias = nn.Parameter(torch.empty(num_features, **factory))
            else:
                self.register_parameter("bias", None)
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
        if track_running_stats:
            self.register_buffer("running_mean", torch.zeros(num_features, **factory))
            self.register_buffer("running_var", torch.ones(num_features, **factory))
            self.register_buffer("num_batches_tracked", torch.zeros((), dtype=torch.long, device=device))
        else:
            self.register_buffer("running_mean", None)
            self.register_buffer("running_var", None)
            self.register_buffer("num_batches_tracked", None)
        self.reset_parameters()

    def reset_running_stats(self) -> None:
        """Running mean 0, running variance 1, no batch seen (a no-op without running stats)."""
        if self.track_running_stats:
            with torch.no_grad():
                self.running_mean.zero_()
                self.running_var.fill_(1.0)
                self.num_batches_tracked.zero_()

    def reset_parameters(self) -> None:
        """Reset the running statistics, and the affine map to the identity (weight 1, bias 0)."""
        self.reset_running_stats()
        with torch.no_grad():
            if self.weight is not None:
                self.weight.fill_(1.0)
            if self.bias is not None:
                self.bias.zero_()

    def extra_repr(self) -> str:
        return (f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, affine={self.affine}, "
                f"bias={self.bias is not None}, track_running_stats={self.track_running_stats}")

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys,
                              unexpected_keys, error_msgs) -> None:
        # State dicts saved before version 2 have no batch counter: start it at 0 (as torch).
        version = local_metadata.get("version", None)
        key = prefix + "num_batches_tracked"
        if (version is None or version < 2) and self.track_running_stats and key not in state_dict:
            nbt = self.num_batches_tracked
            usable = nbt is not None and nbt.device.type != "meta"
            state_dict[key] = nbt if usable else torch.tensor(0, dtype=torch.long)
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys,
                                      unexpected_keys, error_msgs)

    def _check_input(self, input: torch.Tensor) -> None:
        name = type(self).__name__
        expected = f"{self._layout} with C = num_features = {self.num_features}"
        if not isinstance(input, torch.Tensor):
            raise ValueError(f"input: {name} expects a tensor {expected}, got {type(input).__name__}")
        if input.dim() not in self._ranks:
            raise ValueError(f"input: {name} expects {expected}, got a {input.dim()}-D tensor "
                             f"of shape {tuple(input.shape)}")
        if input.shape[1] != self.num_features:
            raise ValueError(f"input: {name} expects {expected}, got {input.shape[1]} channels "
                             f"(shape {tuple(input.shape)})")
        if not input.is_floating_point():
            raise ValueError(f"input: {name} expects a floating-point tensor, got {input.dtype}")

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        self._check_input(input)
        have_buffers = self.running_mean is not None and self.running_var is not None
        # Batch statistics in training, and in eval when there is nothing else to use.
        use_batch_stats = self.training or not have_buffers
        update = self.training and self.track_running_stats
        count = input.shape[0]  # values per channel: N times the spatial size
        for size in input.shape[2:]:
            count *= size
        if use_batch_stats:
            if count == 1:
                raise ValueError("Expected more than 1 value per channel when training, "
                                 f"got input size {input.size()}")
            if self.eps <= 0.0:
                raise ValueError(
                    f"eps: must be positive when normalising with batch statistics, got {self.eps}")
        elif self.eps < 0.0:
            raise ValueError(f"eps: must be non-negative, got {self.eps}")

        # Per-channel vectors are viewed as [1, C, 1, ...] to broadcast against the input.
        shape = (1, self.num_features) + (1,) * (input.dim() - 2)
        reduce_dims = [0] + list(range(2, input.dim()))
        # Half / bfloat16 are normalised in float32; float32 and float64 in their own precision.
        x = input.to(torch.promote_types(input.dtype, torch.float32))

        if use_batch_stats:
            mean = x.mean(dim=reduce_dims)
            centered = x - mean.view(shape)
            var = (centered * centered).mean(dim=reduce_dims)  # biased: divides by count
        else:
            mean = self.running_mean.to(x.dtype)
            var = self.running_var.to(x.dtype)
            centered = x - mean.view(shape)
        out = centered / torch.sqrt(var + self.eps).view(shape)
        if self.weight is not None:
            out = out * self.weight.view(shape)
        if self.bias is not None:
            out = out + self.bias.view(shape)

        if update:
            with torch.no_grad():
                factor = 0.0 if self.momentum is None else self.momentum
                if self.num_batches_tracked is not None:
                    self.num_batches_tracked.add_(1)
                    if self.momentum is None:  # cumulative average: every batch weighs the same
                        factor = 1.0 / float(self.num_batches_tracked)
                # An empty batch has no statistics: it is counted above but changes nothing else.
                if have_buffers and count > 0:
                    unbiased = var * (count / (count - 1))
                    for buf, batch in ((self.running_mean, mean), (self.running_var, unbiased)):
                        buf.copy_(factor * batch.to(buf.dtype) + (1.0 - factor) * buf)
        return out.to(input.dtype)


class BatchNorm1d(_BatchNormBase):
    """Batch normalization over ``[N, C]`` or ``[N, C, L]`` input (statistics per channel over
    ``N`` and ``L``); same arguments, state and results as ``torch.nn.BatchNorm1d``."""

    _ranks = (2, 3)
    _layout = "a 2-D [N, C] or 3-D [N, C, L] tensor"


class BatchNorm2d(_BatchNormBase):
    """Batch normalization over ``[N, C, H, W]`` input (statistics per channel over ``N, H, W``);
    same arguments, state and results as ``torch.nn.BatchNorm2d``."""

    _ranks = (4,)
    _layout = "a 4-D [N, C, H, W] tensor"


class BatchNorm3d(_BatchNormBase):
    """Batch normalization over ``[N, C, D, H, W]`` input (statistics per channel over
    ``N, D, H, W``); same arguments, state and results as ``torch.nn.BatchNorm3d``."""

    _ranks = (5,)
    _layout = "a 5-D [N, C, D, H, W] tensor"


_TORCH_TO_ZOO = {nn.BatchNorm1d: BatchNorm1d, nn.BatchNorm2d: BatchNorm2d, nn.BatchNorm3d: BatchNorm3d}
_ZOO_TO_TORCH = {v: k for k, v in _TORCH_TO_ZOO.items()}


def _swap(bn: nn.Module, cls: type) -> nn.Module:
    """A ``cls`` module holding ``bn``'s very parameter and buffer tensors (so device, dtype,
    ``requires_grad`` and any optimizer's references carry over), its hyper-parameters and mode."""
    new = cls(bn.num_features, eps=bn.eps, momentum=bn.momentum, affine=bn.affine,
              track_running_stats=bn.track_running_stats, device="meta")
    for name in ("weight", "bias"):
        new._parameters[name] = bn._parameters[name]
    for name in ("running_mean", "running_var", "num_batches_tracked"):
        new._buffers[name] = bn._buffers[name]
    new.train(bn.training)
    return new


def convert_batchnorm(model: nn.Module, to: str = "zoo") -> nn.Module:
    """Replace, recursively and in place, every ``torch.nn.BatchNorm{1,2,3}d`` by the zoo's
    (``to="zoo"``) or every zoo ``BatchNorm{1,2,3}d`` by torch's (``to="torch"``), and return
    ``model``. The new modules share the old ones' parameters and buffers and keep ``eps``,
    ``momentum``, ``affine``, ``track_running_stats`` and the training mode; a module shared by
    several parents stays shared. Only those exact classes are swapped: subclasses,
    ``SyncBatchNorm``, lazy and other norms are left alone. When ``model`` is itself a BN module
    of the source kind, the new module is returned (``model`` is unchanged)."""
    if to == "zoo":
        mapping = _TORCH_TO_ZOO
    elif to == "torch":
        mapping = _ZOO_TO_TORCH
    else:
        raise ValueError(f"to: expected 'zoo' or 'torch', got {to!r}")
    done: dict[int, nn.Module] = {}

    def convert(module: nn.Module) -> nn.Module:
        cls = mapping.get(type(module))
        if cls is None:
            for name, child in list(module._modules.items()):
                if child is not None:
                    module._modules[name] = convert(child)
            return module
        if id(module) not in done:
            done[id(module)] = _swap(module, cls)
        return done[id(module)]

    return convert(model)
