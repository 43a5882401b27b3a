"""Data-flow tracer: :func:`flow` runs one forward pass and lists, in execution order, what each
layer receives and returns, its parameters, multiply-accumulates and activation memory.

>>> f = zoo.flow("yolov3_se")            # a registry name: built and run on the meta device
>>> print(f.to_table())                  # aligned text; f.to_markdown(), f.to_json(), f.plot("yolo.png")
>>> f.totals                             # {"params": ..., "macs": ..., "activation_bytes": ...}

Rows. One per call of a leaf module (a module without children), and one per *data-flow op* run
directly in a non-leaf module's forward (outside every leaf): concatenation (``cat``, ``stack``),
upsampling, pooling, adds and multiplies of two tensors (residual connections, gates), anything
with multiply-accumulates (a functional convolution or matrix product), and every custom op
``torch.ops.zoo.*`` (the fused squeeze-excite, adder2d, yolo_decode, ...). A functional row's
``path`` is the path of the module whose forward ran it with the op in brackets
(``backbone.stages.1.0(add)``; ``(cat)`` for the top-level module), its ``type`` is the op's
name and its ``input_shapes`` leave out parameters (and views of them). Ops inside a leaf module
count towards that module's row. Ops outside leaves that only reshape or activate (views,
``relu``, ``flatten``) have no row. Modules that never run (GoogLeNet's aux heads in eval mode)
have no row either.

Attribution: forward pre/post hooks on every module keep a stack of the modules running, and a
:class:`~torch.utils._python_dispatch.TorchDispatchMode` sees every aten / zoo op and charges it to
the innermost module on that stack. Modules reached through a method other than ``__call__``
(``self.backbone.forward_multiscale(x)``) are not on the stack; their leaves still are.

Counts.

* ``params``: the parameters a row's module owns, each parameter counted once (in the first row
  that uses it, even if the module runs twice or a weight is shared). Parameters of modules that
  are never called but whose tensors an enclosing module uses directly (``SEBlock`` passes its
  ``fc1`` / ``fc2`` weights to the fused op) go to the first functional row of the nearest
  enclosing module that ran one. ``totals["params"]`` is the model's exact parameter count.
* ``macs``: per aten op, convolutions ``numel(out) * C_in / groups * prod(kernel)`` (for a
  transposed convolution ``numel(in) * C_out / groups * prod(kernel)``) and matrix products
  (``mm``, ``addmm``, ``bmm``, ``baddbmm``, ``matmul``, ``linear``: ``M * K * N`` per matrix); the
  zoo ops by :func:`zoo.ops.se_macs` (the two FC layers), :func:`zoo.ops.adder_macs` (as the
  equivalent convolution) and :func:`zoo.ops.yolo_decode_macs` (4 multiply-adds per box, also for
  the decode inside ``yolo_postprocess``). Elementwise ops and normalisation count nothing, as in
  ``torch.utils.flop_counter`` (whose FLOPs are twice these MACs).
* ``activation_bytes``: bytes of a row's output tensors (an in-place op's output counts too).
"""
from __future__ import annotations

import json
import math
from typing import Any, Callable, Sequence

import torch
from torch import Tensor, nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from . import ops as zoo_ops
from .registry import create_net, get_spec

__all__ = ["Flow", "flow", "op_macs"]

ROW_KEYS = ("path", "type", "input_shapes", "output_shapes", "params", "macs", "activation_bytes")


# ----------------------------------------------------------------------------- MACs per op


def _conv(args: Sequence[Any], out: Tensor, transposed: bool) -> int:
    x, w = args[0], args[1]
    return (x.numel() if transposed else out.numel()) * int(w.shape[1]) * math.prod(int(d) for d in w.shape[2:])


def _matmul(a: Tensor, b: Tensor) -> int:
    """``[..., M, K] @ [..., K, N]`` with equal batch dims: ``numel(a) * N``."""
    return a.numel() * int(b.shape[-1])


def _postprocess_macs(args: Sequence[Any]) -> int:
    preds, anchors = args[0], args[1]
    return sum(zoo_ops.yolo_decode_macs(p.shape, a.shape[0]) for p, a in zip(preds, anchors))


#: schema name -> fn(args, kwargs, out) -> MACs
_MACS: dict[str, Callable[[Sequence[Any], dict, Any], int]] = {
    "aten::convolution": lambda a, k, o: _conv(a, o, bool(a[6])),
    "aten::_convolution": lambda a, k, o: _conv(a, o, bool(a[6])),
    "aten::convolution_overrideable": lambda a, k, o: _conv(a, o, bool(a[6])),
    "aten::cudnn_convolution": lambda a, k, o: _conv(a, o, False),
    "aten::cudnn_convolution_transpose": lambda a, k, o: _conv(a, o, True),
    "aten::_slow_conv2d_forward": lambda a, k, o: _conv(a, o, False),
    "aten::mm": lambda a, k, o: _matmul(a[0], a[1]),
    "aten::bmm": lambda a, k, o: _matmul(a[0], a[1]),
    "aten::addmm": lambda a, k, o: _matmul(a[1], a[2]),
    "aten::baddbmm": lambda a, k, o: _matmul(a[1], a[2]),
    "aten::matmul": lambda a, k, o: o.numel() * int(a[0].shape[-1]),
    "aten::linear": lambda a, k, o: a[0].numel() * int(a[1].shape[0]),
    "zoo::squeeze_excite": lambda a, k, o: zoo_ops.se_macs(a[0].shape, a[1].shape),
    "zoo::adder2d": lambda a, k, o: zoo_ops.adder_macs(o.shape, a[1].shape),
    "zoo::yolo_decode": lambda a, k, o: zoo_ops.yolo_decode_macs(a[0].shape, a[1].shape[0]),
    "zoo::yolo_postprocess": lambda a, k, o: _postprocess_macs(a),
}

_CONCAT = {"aten::cat", "aten::concat", "aten::stack", "aten::hstack", "aten::vstack"}
_BINARY = {"aten::add", "aten::add_", "aten::mul", "aten::mul_"}


def op_macs(func: Any, args: Sequence[Any], kwargs: dict | None, out: Any) -> int:
    """Multiply-accumulates of one dispatched op (``func`` an ``OpOverload``); 0 for ops without a
    formula (elementwise, normalisation, data movement)."""
    rule = _MACS.get(func._schema.name)
    return int(rule(args, kwargs or {}, out)) if rule is not None else 0


def _is_flow_op(name: str, args: Sequence[Any], macs: int) -> bool:
    """Whether an op run outside every leaf module gets a row of its own."""
    if macs or name.startswith("zoo::") or name in _CONCAT:
        return True
    op = name.split("::", 1)[-1]
    if op.startswith(("upsample", "_upsample", "grid_sampler")) or "pool" in op:
        return True
    if name in _BINARY:
        return (len(args) >= 2 and isinstance(args[0], Tensor) and isinstance(args[1], Tensor)
                and args[0].ndim >= 1 and args[1].ndim >= 1)
    return False


# ----------------------------------------------------------------------------- the trace


def _tensors(obj: Any) -> list[Tensor]:
    return [t for t in tree_flatten(obj)[0] if isinstance(t, Tensor)]


def _shapes(obj: Any) -> list[list[int]]:
    return [[int(d) for d in t.shape] for t in _tensors(obj)]


def _is_weight(t: Tensor) -> bool:
    """A parameter, or a view of one (``SEBlock`` passes ``fc1.weight.reshape(r, c)``)."""
    return isinstance(t, nn.Parameter) or isinstance(getattr(t, "_base", None), nn.Parameter)


def _data_shapes(obj: Any) -> list[list[int]]:
    """The shapes of the tensors of ``obj`` that are not weights: what flows through the net."""
    return [[int(d) for d in t.shape] for t in _tensors(obj) if not _is_weight(t)]


def _nbytes(obj: Any) -> int:
    return sum(t.numel() * t.element_size() for t in _tensors(obj))


class _Frame:
    __slots__ = ("module", "path", "row")

    def __init__(self, module: nn.Module, path: str, row: dict | None) -> None:
        self.module, self.path, self.row = module, path, row


class _Trace(TorchDispatchMode):
    """The module stack (kept by hooks) and the op counter (this dispatch mode)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.rows: list[dict[str, Any]] = []
        self.stack: list[_Frame] = []
        self.counted: set[int] = set()  # ids of parameters already in a row
        self.first_fn_row: dict[str, dict] = {}  # module path -> its first functional row
        self.paths = {id(m): p for p, m in model.named_modules()}
        self.leaf = {id(m): not any(True for _ in m.children()) for m in model.modules()}
        self.handles = []
        for m in model.modules():
            self.handles.append(m.register_forward_pre_hook(self._pre, with_kwargs=True))
            self.handles.append(m.register_forward_hook(self._post))

    def remove(self) -> None:
        for h in self.handles:
            h.remove()
        self.handles.clear()

    def _new_params(self, params) -> int:
        n = 0
        for p in params:
            if id(p) not in self.counted:
                self.counted.add(id(p))
                n += p.numel()
        return n

    def _pre(self, module: nn.Module, args, kwargs) -> None:
        path = self.paths.get(id(module), type(module).__name__)
        row = None
        if self.leaf.get(id(module), False):
            row = {"path": path, "type": type(module).__name__, "input_shapes": _shapes((args, kwargs)),
                   "output_shapes": [], "params": self._new_params(module.parameters()), "macs": 0,
                   "activation_bytes": 0}
            self.rows.append(row)
        self.stack.append(_Frame(module, path, row))

    def _post(self, module: nn.Module, args, output) -> None:
        while self.stack:
            frame = self.stack.pop()
            if frame.module is module:
                if frame.row is not None:
                    frame.row["output_shapes"] = _shapes(output)
                    frame.row["activation_bytes"] = _nbytes(output)
                return

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if not self.stack:
            return out
        frame = self.stack[-1]
        name = func._schema.name
        macs = op_macs(func, args, kwargs, out)
        if frame.row is not None:  # inside a leaf module: its row
            frame.row["macs"] += macs
        elif _is_flow_op(name, args, macs):
            op = name.split("::", 1)[1]
            kind = f"zoo.{op}" if name.startswith("zoo::") else op
            row = {"path": f"{frame.path}({op})", "type": kind, "input_shapes": _data_shapes((args, kwargs)),
                   "output_shapes": _shapes(out), "params": 0, "macs": macs, "activation_bytes": _nbytes(out)}
            self.rows.append(row)
            self.first_fn_row.setdefault(frame.path, row)
        return out

    def attach_orphans(self, model: nn.Module) -> None:
        """Parameters no leaf row took (held by a container, or by a child that is never called
        while its parent uses the tensors) go to the nearest enclosing module's first functional row."""
        for path, m in model.named_modules():
            params = [p for p in m.parameters(recurse=False) if id(p) not in self.counted]
            if not params:
                continue
            parts = path.split(".") if path else []
            for i in range(len(parts), -1, -1):
                row = self.first_fn_row.get(".".join(parts[:i]))
                if row is not None:
                    row["params"] += self._new_params(params)
                    break


# ----------------------------------------------------------------------------- the result


def _dims(shape: Sequence[int]) -> str:
    return "x".join(map(str, shape))


def _shapes_str(shapes: list[list[int]]) -> str:
    return ", ".join(_dims(s) for s in shapes) or "-"


def _si(n: float, unit: str = "") -> str:
    for suffix, scale in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.2f} {suffix}{unit}"
    return f"{int(n)} {unit}".rstrip() if unit else str(int(n))


def _mib(n: int) -> str:
    return f"{n / 2**20:.2f} MiB" if n >= 2**20 else f"{n / 2**10:.1f} KiB" if n >= 2**10 else f"{n} B"


class Flow:
    """The trace of one forward pass (see :mod:`zoo.tracer`).

    Attributes:
        name: the registry name, or the model's class name.
        input_shape: the shape of the input it ran on (batch included).
        rows: one dict per row in execution order, with :data:`ROW_KEYS`: ``path``, ``type``,
            ``input_shapes`` / ``output_shapes`` (lists of shapes, each a list of ints),
            ``params``, ``macs``, ``activation_bytes``.
        totals: ``params`` (the model's parameter count, each parameter once), ``macs`` (the sum
            of the rows') and ``activation_bytes`` (the sum of the rows').
    """

    _COLUMNS = ("#", "path", "type", "input", "output", "params", "MACs", "activations")
    _RIGHT = {"#", "params", "MACs", "activations"}

    def __init__(self, name: str, input_shape: Sequence[int], rows: list[dict[str, Any]], params: int) -> None:
        self.name = name
        self.input_shape = [int(d) for d in input_shape]
        self.rows = rows
        self.totals = {"params": int(params), "macs": sum(r["macs"] for r in rows),
                       "activation_bytes": sum(r["activation_bytes"] for r in rows)}

    def __repr__(self) -> str:
        t = self.totals
        return (f"Flow({self.name!r}, input {_dims(self.input_shape)}, {len(self.rows)} rows, params {t['params']:,}, "
                f"MACs {t['macs']:,}, activation_bytes {t['activation_bytes']:,})")

    def _cells(self) -> list[list[str]]:
        return [[str(i), r["path"], r["type"], _shapes_str(r["input_shapes"]), _shapes_str(r["output_shapes"]),
                 f"{r['params']:,}", _si(r["macs"]), _mib(r["activation_bytes"])] for i, r in enumerate(self.rows)]

    def totals_lines(self) -> list[str]:
        t = self.totals
        return [f"params:      {t['params']:,}",
                f"MACs:        {_si(t['macs'])} ({t['macs']:,} multiply-accumulates)",
                f"activations: {_mib(t['activation_bytes'])} ({t['activation_bytes']:,} bytes of row outputs)"]

    def to_table(self) -> str:
        """Aligned text: a header line, one line per row, then the totals."""
        cells = self._cells()
        widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(self._COLUMNS)]

        def line(values) -> str:
            return "  ".join(v.rjust(w) if c in self._RIGHT else v.ljust(w)
                             for c, v, w in zip(self._COLUMNS, values, widths)).rstrip()

        out = [f"{self.name}: input {_dims(self.input_shape)}, {len(self.rows)} rows", line(self._COLUMNS)]
        out += [line(r) for r in cells]
        return "\n".join(out + [""] + self.totals_lines())

    def to_markdown(self) -> str:
        """A Markdown table (one line per row) and a totals line."""
        out = [f"**{self.name}**, input `{_dims(self.input_shape)}`, {len(self.rows)} rows", "",
               "| " + " | ".join(self._COLUMNS) + " |",
               "|" + "|".join("---:" if c in self._RIGHT else "---" for c in self._COLUMNS) + "|"]
        for r in self._cells():
            r[1], r[2] = f"`{r[1]}`", f"`{r[2]}`"
            out.append("| " + " | ".join(v.replace("|", "\\|") for v in r) + " |")
        t = self.totals
        out += ["", f"Total: {t['params']:,} parameters, {_si(t['macs'])} ({t['macs']:,}) multiply-accumulates, "
                    f"{_mib(t['activation_bytes'])} ({t['activation_bytes']:,} bytes) of activations."]
        return "\n".join(out)

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.name, "input_shape": self.input_shape, "rows": self.rows, "totals": self.totals}

    def to_json(self, indent: int | None = 1) -> str:
        """``{"model", "input_shape", "rows": [...], "totals": {...}}`` as JSON."""
        return json.dumps(self.to_dict(), indent=indent)

    def plot(self, path) -> str:
        """Write a PNG (matplotlib, Agg canvas; pyplot is not used): row index on the x axis, and
        stacked panels: the output's height H (line) and channels (twin axis), both on log2 scales,
        MACs per row (bars), activation memory per row (bars); dashed lines mark the concatenations.
        Returns ``path``."""
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        x = list(range(len(self.rows)))
        height, chans = [], []
        for r in self.rows:
            s = r["output_shapes"][0] if r["output_shapes"] else []
            height.append(s[-2] if len(s) >= 3 else math.nan)
            chans.append(s[1] if len(s) >= 2 else math.nan)
        t = self.totals
        fig = Figure(figsize=(max(8.0, min(24.0, len(x) / 12)), 8.0), layout="constrained")
        FigureCanvasAgg(fig)
        ax_hw, ax_mac, ax_mem = fig.subplots(3, 1, sharex=True)
        ax_hw.step(x, height, where="mid", color="tab:blue", label="H")
        ax_hw.set_ylabel("output H", color="tab:blue")
        ax_c = ax_hw.twinx()
        ax_c.step(x, chans, where="mid", color="tab:orange", label="channels")
        ax_c.set_ylabel("output channels", color="tab:orange")
        ax_mac.bar(x, [r["macs"] / 1e6 for r in self.rows], width=1.0, color="tab:green")
        ax_mac.set_ylabel("MMACs")
        ax_mem.bar(x, [r["activation_bytes"] / 2**20 for r in self.rows], width=1.0, color="tab:purple")
        ax_mem.set_ylabel("activations (MiB)")
        ax_mem.set_xlabel("depth (row, in execution order); dashed: concatenations")
        ax_hw.set_yscale("log", base=2)
        ax_c.set_yscale("log", base=2)
        joins = [i for i, r in enumerate(self.rows) if r["type"] in ("cat", "concat", "stack")]
        for ax in (ax_hw, ax_mac, ax_mem):
            ax.grid(alpha=0.3)
            for i in joins:
                ax.axvline(i, color="grey", linestyle="--", linewidth=0.8)
        fig.suptitle(f"{self.name}, input {_dims(self.input_shape)}: {t['params'] / 1e6:.2f} M params, "
                     f"{t['macs'] / 1e9:.2f} GMACs, {t['activation_bytes'] / 2**20:.1f} MiB activations")
        fig.savefig(path, format="png", dpi=100)
        return path


# ----------------------------------------------------------------------------- flow()


def _model_device_dtype(model: nn.Module) -> tuple[torch.device | None, torch.dtype]:
    dtype = torch.float32
    device = None
    for t in (*model.parameters(), *model.buffers()):
        if device is None:
            device = t.device
        if t.is_floating_point():
            dtype = t.dtype
            break
    return device, dtype


def _size(example: Any, what: str) -> tuple[int, ...]:
    try:
        size = tuple(example)
        ok = len(size) >= 1 and all(isinstance(d, int) and not isinstance(d, bool) and d >= 1 for d in size)
    except TypeError:
        ok = False
    if not ok:
        raise ValueError(f"example: expected {what} as positive ints (the batch of 1 is added), got {example!r}")
    return size


def flow(model: nn.Module | str, example: Tensor | tuple[int, ...] | None = None) -> Flow:
    """Trace one forward pass of ``model`` on ``example``: see :mod:`zoo.tracer` for the rows.

    Args:
        model: an ``nn.Module``, or a registry name: then it is built on the meta device (nothing
            is computed) and ``example`` defaults to a batch of 1 at the spec's ``input_size``
            (``(C, H, W)``, or ``(T, C, H, W)`` for a video model).
        example: the input: a tensor (batch included; moved to the model's device, or to meta
            for a model on meta), or an input size without the batch, e.g. ``(3, 224, 224)``.
            Required for a module.

    The forward runs in eval mode under ``torch.no_grad()`` (each module's training flag is
    restored after it).

    Raises:
        KeyError: an unknown registry name (the registry's message, with the closest names).
        TypeError: ``model`` or ``example`` of the wrong type.
        ValueError: a bad input size, or a forward pass that fails on ``example`` (the message
            names ``example``, its shape and the model's error).
    """
    if isinstance(model, str):
        spec = get_spec(model)
        name = model
        if example is None:
            example = tuple(spec.input_size)
        with torch.device("meta"):
            model = create_net(name)
    elif isinstance(model, nn.Module):
        name = type(model).__name__
        if example is None:
            raise ValueError("example: required when model is an nn.Module (a tensor or an input size such as "
                             "(3, 224, 224))")
    else:
        raise TypeError(f"model: expected an nn.Module or a registered model name, got {type(model).__name__}")

    device, dtype = _model_device_dtype(model)
    if isinstance(example, Tensor):
        device = device or example.device
        if example.device != device:
            example = (torch.zeros(example.shape, dtype=example.dtype, device=device) if example.is_meta
                       else example.to(device))
        x = example
    elif isinstance(example, (tuple, list, torch.Size)):
        x = torch.zeros((1, *_size(example, "an input size")), dtype=dtype, device=device or "cpu")
    else:
        raise TypeError(f"example: expected a Tensor, an input size tuple such as (3, 224, 224) or None, "
                        f"got {type(example).__name__}")

    modes = [(m, m.training) for m in model.modules()]
    trace = _Trace(model)
    model.eval()
    try:
        with torch.no_grad(), trace:
            model(x)
    except Exception as err:
        raise ValueError(f"example: the forward pass of {name} on an input of shape {_dims(x.shape)} failed: "
                         f"{type(err).__name__}: {err}") from err
    finally:
        trace.remove()
        for m, training in modes:
            m.training = training
    trace.attach_orphans(model)
    return Flow(name, x.shape, trace.rows, sum(p.numel() for p in model.parameters()))
