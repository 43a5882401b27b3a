"""Loads the C++/CUDA extension ``zoo._C`` and decides, per call, extension or fallback.

The extension is a plain shared library whose static initialisers register the
``torch.ops.zoo.*`` schemas and kernels; it is loaded with ``torch.ops.load_library``.
``ZOO_OPS=torch`` in the environment forces the pure-torch fallback. ``ZOO_EXT_PATH=/path/_C.so``
loads that build instead of the package's ``zoo/_C.so`` (``make asan`` points it at the
sanitizer build in ``build/asan``).
"""
from __future__ import annotations

import importlib.util
import os

import torch

_LOADED: bool | None = None
_LOAD_ERROR: str | None = None


def _load() -> bool:
    global _LOADED, _LOAD_ERROR
    if _LOADED is None:
        try:
            path = os.environ.get("ZOO_EXT_PATH")
            if path:
                if not os.path.isfile(path):
                    raise ImportError(f"ZOO_EXT_PATH={path}: no such file")
            else:
                spec = importlib.util.find_spec("zoo._C")
                if spec is None or spec.origin is None:
                    raise ImportError(
                        "zoo._C is not built (run `make setup` or `pip install --no-build-isolation -e .`)")
                path = spec.origin
            torch.ops.load_library(path)
            _LOADED = True
        except (ImportError, OSError, RuntimeError) as err:
            _LOADED, _LOAD_ERROR = False, str(err)
    return _LOADED


def forced_fallback() -> bool:
    return os.environ.get("ZOO_OPS", "").lower() == "torch"


def available() -> bool:
    """True when ``zoo._C`` is built and loaded (regardless of ``ZOO_OPS``)."""
    return _load()


def load_error() -> str | None:
    """Why the extension could not be loaded, if it could not."""
    _load()
    return _LOAD_ERROR


_REGISTERED: dict[tuple[str, str], bool] = {}


def _registered(op: str, device_type: str) -> bool:
    found = _REGISTERED.get((op, device_type))
    if found is None:
        key = {"cpu": "CPU", "cuda": "CUDA"}.get(device_type)
        found = key is not None and _load() and torch._C._dispatch_has_kernel_for_dispatch_key(f"zoo::{op}", key)
        _REGISTERED[(op, device_type)] = found
    return found


def has_kernel(op: str, device: torch.device) -> bool:
    """True when the extension should run ``zoo::<op>`` for tensors on ``device``
    (checked once per op and device type; ``ZOO_OPS`` is read on every call)."""
    return not forced_fallback() and _registered(op, device.type)


def has_kernel_for(op: str, x: torch.Tensor) -> bool:
    """:func:`has_kernel` for the device of tensor ``x``, without building a device
    object on the common CPU / CUDA paths (this runs on every SE block)."""
    device_type = "cpu" if x.is_cpu else "cuda" if x.is_cuda else x.device.type
    return not forced_fallback() and _registered(op, device_type)


def backend(device: str | torch.device = "cpu") -> str:
    """``"ext"`` when the extension's kernels run on ``device``, else ``"torch"`` (the fallback)."""
    device = torch.device(device)
    return "ext" if has_kernel("nms", device) else "torch"
