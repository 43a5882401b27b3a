"""The one place the zoo deserialises a file: :func:`load_file`.

Every read of weights, checkpoints and cached tensors goes through it: ``zoo.load(name,
weights=...)`` (:func:`zoo.weights.read_checkpoint`), the task modules' ``load_from_checkpoint``,
``python -m zoo fit/validate/test/predict --ckpt_path`` (LightningCLI's reading of the saved
hyper-parameters and the trainer's ``CheckpointIO``, :class:`zoo.callbacks.ZooCheckpointIO`) and
the decoded-clip cache of :mod:`zoo.data.video`. By the file's name:

* ``*.safetensors``: the ``safetensors`` package (tensors only, nothing to execute);
* darknet binary weights (``*.weights``, ``*.conv.<N>``): :func:`read_darknet_weights`;
* anything else: ``torch.load(..., weights_only=True)``, with the few plain containers Lightning
  puts in its checkpoints allowed (:func:`_safe_globals`).

Errors name the file: a missing file is ``FileNotFoundError``; a pickle that needs arbitrary
globals (a class, a function to call, e.g. a malicious ``__reduce__``) is *refused*, a
``ValueError`` saying so, and nothing in it ever runs; a truncated or corrupt file (a cut zip
archive, garbage bytes, an empty file, a bad safetensors header) is a ``ValueError`` saying it
is truncated or corrupt. To tell the two apart after ``torch.load`` failed, the pickle stream
is parsed (``pickletools``, which executes nothing): a well-formed stream that builds objects
was refused, one that does not parse is damaged.

Imports nothing of the zoo, so every part of the package (``data`` included) may use it.
"""
from __future__ import annotations

import array
import os
import pickle
import pickletools
import re
import struct
import sys
import zipfile
from typing import Any

import torch

__all__ = ["FORMATS", "DarknetWeights", "is_darknet_file", "load_file", "read_darknet_weights"]


def _safe_globals() -> list:
    """Plain containers Lightning puts in its checkpoints (hparams are an AttributeDict)."""
    allowed: list = []
    try:
        from lightning_fabric.utilities.data import AttributeDict

        allowed.append(AttributeDict)
    except ImportError:  # pragma: no cover - lightning is a hard dependency
        pass
    return allowed


FORMATS = ("torch", "safetensors", "darknet")


def load_file(path: str | os.PathLike, map_location: Any = "cpu", format: str | None = None) -> Any:
    """The object stored in the file ``path``, read without running anything stored in it.

    ``format`` is one of :data:`FORMATS`; None (the default) picks it by the name: ``*.safetensors``,
    darknet's ``*.weights`` / ``*.conv.<N>``, else ``torch``. ``map_location`` goes to
    ``torch.load`` (a device, a string, a dict or a function); a safetensors file loads onto it
    when it is a device or a string, else onto the CPU. Darknet files come back as
    :class:`DarknetWeights` (on the CPU).

    Raises ``FileNotFoundError`` when there is no such file, and ``ValueError`` naming the file
    when it is refused (a pickle that needs arbitrary code or objects) or truncated / corrupt.
    """
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"load_file: expected a path, got {type(path).__name__} (write the bytes to a file first)")
    if format is not None and format not in FORMATS:
        raise ValueError(f"format: expected one of {FORMATS} or None, got {format!r}")
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no such weights/checkpoint file: {path!r}")
    if format is None:
        format = "darknet" if is_darknet_file(path) else "safetensors" if path.endswith(".safetensors") else "torch"
    if format == "darknet":
        return read_darknet_weights(path)
    if os.path.getsize(path) == 0:
        raise ValueError(f"{path!r} is truncated or corrupt: the file is empty (0 bytes)")
    if format == "safetensors":
        return _load_safetensors(path, map_location)
    try:
        with torch.serialization.safe_globals(_safe_globals()):
            return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # noqa: BLE001 - every failure is reported naming the file
        raise _explain(path, err) from err


def _load_safetensors(path: str, map_location: Any) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file as safetensors_load

    device = str(map_location) if isinstance(map_location, (str, torch.device)) else "cpu"
    try:
        return safetensors_load(path, device=device)
    except Exception as err:  # noqa: BLE001 - SafetensorError and friends: bad header, short data
        raise ValueError(f"{path!r} is truncated or corrupt: not a readable safetensors file ({err})") from err


def _first_line(err: BaseException) -> str:
    """``Type: message`` of ``err`` on one line, without torch's advice to load unsafely."""
    if isinstance(err, pickle.UnpicklingError) and "Weights only load failed" in str(err) and \
            isinstance(err.__context__, Exception):
        err = err.__context__  # the weights-only unpickler's own reason ("Unsupported operand 17")
    text = str(err).strip()
    if isinstance(err, EOFError) and not text:
        text = "the data ends early"
    line = text.splitlines()[0] if text else "(no message)"
    line = line.split(" This is an internal miniz error")[0]  # torch's zip reader adds advice
    return f"{type(err).__name__}: {line}"


def _explain(path: str, err: Exception) -> Exception:
    """The error to raise for ``torch.load``'s failure ``err`` on ``path``."""
    if isinstance(err, RuntimeError) and "deserialize object on" in str(err):
        # a map_location / saved device this machine lacks: the file itself may be fine
        return ValueError(f"{path!r} could not be loaded here: {_first_line(err)}")
    well_formed, builds_objects, names = _scan_pickle(path)
    unsupported_global = isinstance(err, pickle.UnpicklingError) and "Unsupported global" in str(err)
    if unsupported_global or (isinstance(err, pickle.UnpicklingError) and well_formed and builds_objects):
        # what the stream imports (torch's own tensor rebuilding and the containers allowed left
        # out), else the global torch stopped at
        names = [n for n in names if not n.startswith(_ALLOWED_PREFIXES)] or \
            re.findall(r"GLOBAL (\S+) was not", str(err))
        needs = f" ({', '.join(names[:5])})" if names else ""
        return ValueError(
            f"{path!r} was refused: it is not a weights-only file, loading it would need arbitrary "
            f"code or objects{needs}, which the zoo never runs. Only tensors in plain containers "
            "(torch.save of a state dict, a Lightning checkpoint) and .safetensors files are read."
        )
    return ValueError(f"{path!r} is truncated or corrupt: {_first_line(err)}")


# opcodes that import a global or call / build an object: what a weights-only file must not need
_OBJECT_OPCODES = {"GLOBAL", "STACK_GLOBAL", "INST", "OBJ", "REDUCE", "BUILD", "NEWOBJ", "NEWOBJ_EX",
                   "EXT1", "EXT2", "EXT4"}
_STRING_OPCODES = {"SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE", "STRING", "BINSTRING",
                   "SHORT_BINSTRING"}
# globals a weights-only load allows (torch's tensor rebuilding, its containers, _safe_globals):
# left out of the names a refusal lists
_ALLOWED_PREFIXES = ("torch.", "collections.OrderedDict", "lightning_fabric.utilities.data.AttributeDict")


def _scan_pickle(path: str) -> tuple[bool, bool, list[str]]:
    """``(well_formed, builds_objects, globals named)`` of the pickle in ``path``, by parsing its
    opcodes (nothing is executed). A torch zip archive's pickle is its ``data.pkl``; any other
    file is read as up to four pickles in a row (torch's legacy format: magic number, protocol,
    system info, the object)."""
    names: list[str] = []
    builds = False

    def scan(stream: Any) -> None:
        nonlocal builds
        strings: list[str] = []  # the strings pushed so far, for STACK_GLOBAL's module and name
        memo: dict[int, str | None] = {}
        last: str | None = None  # the string the previous opcode pushed, if it pushed one
        for op, arg, _ in pickletools.genops(stream):
            pushed: str | None = None
            if op.name in _OBJECT_OPCODES:
                builds = True
            if op.name in ("GLOBAL", "INST"):
                names.append(str(arg).replace(" ", "."))
            elif op.name == "STACK_GLOBAL" and len(strings) >= 2:
                names.append(f"{strings[-2]}.{strings[-1]}")
            elif op.name in _STRING_OPCODES:
                pushed = str(arg)
            elif op.name == "MEMOIZE":
                memo[len(memo)] = pushed = last
            elif op.name in ("PUT", "BINPUT", "LONG_BINPUT"):
                memo[int(arg)] = pushed = last
            elif op.name in ("GET", "BINGET", "LONG_BINGET"):
                pushed = memo.get(int(arg))
            if pushed is not None and op.name not in ("MEMOIZE", "PUT", "BINPUT", "LONG_BINPUT"):
                strings.append(pushed)
            last = pushed

    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as zf:
                member = next((n for n in zf.namelist() if n.endswith("data.pkl")), None)
                if member is None:
                    return False, False, []
                scan(zf.read(member))
        else:
            with open(path, "rb") as f:
                for _ in range(4):
                    if not f.peek(1):
                        break
                    scan(f)
    except Exception:  # noqa: BLE001 - unknown opcode, cut short, bad archive: not a well-formed pickle
        return False, builds, list(dict.fromkeys(names))
    return True, builds, list(dict.fromkeys(names))


# --------------------------------------------------------------------------------------
# Darknet binary weights
# --------------------------------------------------------------------------------------

_DARKNET_PARTIAL = re.compile(r"\.conv\.\d+$")


def is_darknet_file(path: str | os.PathLike) -> bool:
    """Whether ``path`` is named like a darknet weights file: ``*.weights``, or
    ``*.conv.<N>`` (what ``darknet partial`` writes, e.g. ``darknet53.conv.74``)."""
    p = os.fspath(path)
    return p.endswith(".weights") or _DARKNET_PARTIAL.search(p) is not None


class DarknetWeights(dict):
    """A darknet weights file as read: ``{"header": int64 [4], "values": float32 [N]}``.

    ``header`` is (major, minor, revision, seen); ``values`` every float after it.
    ``path`` names the file; ``partial`` is True for ``*.conv.<N>`` files (a cut of
    the first convs only), which then load with ``strict=False``.
    """

    def __init__(self, header: torch.Tensor, values: torch.Tensor, path: str, partial: bool = False) -> None:
        super().__init__(header=header, values=values)
        self.path = path
        self.partial = partial


def read_darknet_weights(path: str | os.PathLike) -> DarknetWeights:
    """Read a darknet binary weights file.

    Layout (little-endian): int32 major, minor, revision; then ``seen`` (images
    trained on) as int64 when ``major*10 + minor >= 2`` and both are below 1000,
    else as int32 (darknet's parser.c); then float32 values to the end.
    ``ValueError`` naming the file when the header is bad or the rest is not a whole
    number of float32 values.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"weights: no such file {path!r}")
    with open(path, "rb") as f:
        data = bytearray(f.read())
    if len(data) < 16:
        raise ValueError(f"weights: {path!r} is too short for a darknet weights header ({len(data)} bytes)")
    major, minor, revision = struct.unpack_from("<3i", data, 0)
    # versions darknet writes are 0.1.x / 0.2.x; 1000 is added to mark transposed dense layers
    if not (0 <= major < 2000 and 0 <= minor < 2000 and revision >= 0):
        raise ValueError(
            f"weights: {path!r} has a bad darknet header: version {major}.{minor}.{revision} "
            "(is it a darknet .weights file?)"
        )
    offset = 20 if major * 10 + minor >= 2 and major < 1000 and minor < 1000 else 16
    if len(data) < offset:
        raise ValueError(f"weights: {path!r} is too short for a darknet weights header ({len(data)} bytes)")
    (seen,) = struct.unpack_from("<q" if offset == 20 else "<i", data, 12)
    if seen < 0:
        raise ValueError(f"weights: {path!r} has a bad darknet header: seen = {seen}")
    nbytes = len(data) - offset
    if nbytes % 4:
        raise ValueError(
            f"weights: {path!r} is not a darknet weights file: {nbytes} bytes after the header "
            "are not a whole number of float32 values"
        )
    if nbytes == 0:
        values = torch.zeros(0)
    elif sys.byteorder == "little":  # no copy: the tensor views the file's bytes
        values = torch.frombuffer(data, dtype=torch.float32, offset=offset, count=nbytes // 4)
    else:  # pragma: no cover
        floats = array.array("f")
        floats.frombytes(memoryview(data)[offset:])
        floats.byteswap()
        values = torch.frombuffer(floats, dtype=torch.float32)
    header = torch.tensor([major, minor, revision, seen], dtype=torch.int64)
    return DarknetWeights(header, values, path, partial=_DARKNET_PARTIAL.search(path) is not None)
