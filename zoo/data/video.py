"""Video data for deepfake detection: the DFDC layout (mp4 files + ``metadata.json``), decoded
with PyAV.

Layout. A folder of mp4 files and ``metadata.json``::

    {"x.mp4": {"label": "FAKE", "split": "train", "original": "y.mp4"},
     "y.mp4": {"label": "REAL", "split": "train", "original": null}, ...}

``label`` FAKE is 1.0, REAL 0.0. ``split`` ("train" / "val") may be absent: those entries are
split by ``val_fraction`` / ``seed`` in groups (a fake and its ``original`` form one group), so a
fake never lands on the other side of its original (:func:`split_entries`).

Frames. A clip is ``T`` frames spread uniformly over the video (:func:`sample_indices`: frame
``round(k (N - 1) / (T - 1))``, k = 0 .. T-1, ties rounded up). A video shorter than ``T``
frames still gives ``T`` frames: its frames repeat in order (a nearest-frame stretch, e.g.
N = 3, T = 5 gives frames 0, 1, 1, 2, 2). :func:`read_frames` decodes only what it needs: it seeks
to the keyframe at or before each wanted frame and decodes forward to it, skipping the
non-reference frames on the way (no other frame depends on them), and keeps decoding instead of
seeking when the next wanted frame lies before the next keyframe.

Faces. With ``face_crop`` every frame of a clip is cropped to one box (:func:`face_box`): OpenCV's
bundled frontal-face Haar cascade runs on each sampled frame, the largest face per frame is
kept, the box is the median of those boxes, enlarged by ``FACE_MARGIN`` (1.3x, to keep the
forehead, chin and the blending boundary of a face swap), made square and shifted/clipped into
the frame. No face in any frame: the whole frame.

Then each frame is resized to ``S x S`` (bilinear, antialiased; a whole non-square frame is
stretched), stored as uint8 and, with a ``cache_dir``, saved once per (file, T, S, face_crop)
so that later epochs decode nothing (:func:`load_clip`). Items are ``(clip float32 [T, 3, S, S]
normalised with mean/std, label float32 scalar)``, batches ``(x [B, T, 3, S, S], y [B])``.

Corrupt files (:mod:`zoo.data.corrupt`). :class:`VideoDataModule` probes every file at ``setup``
(:func:`probe_video`): by default every bad file is named in one ``ValueError`` before any
training step; with ``skip_corrupt=True`` they are left out with one warning. A file that probes
fine but fails to decode later (e.g. truncated inside) raises naming the file, or, with
``skip_corrupt``, is dropped from its batch with a warning (:func:`drop_failed_collate`) so that
nothing else in the epoch is lost; every skipped clip is counted. ``bad_files="raise"|"skip"``
is the deprecated spelling of ``skip_corrupt=False|True``.
"""
from __future__ import annotations

import bisect
import functools
import hashlib
import json
import os
import uuid
import warnings
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset, default_collate

from ..registry import IMAGENET_MEAN, IMAGENET_STD
from ..serialization import load_file
from .base import SplitDataModule
from .classification import resolve_norm
from .corrupt import CorruptFileError, CorruptItems, SkipCollate, check_skip_corrupt

#: label values of the DFDC labels
LABELS = {"REAL": 0.0, "FAKE": 1.0}

#: the splits ``metadata.json`` may name
SPLITS = ("train", "val")

#: how much a detected face box is enlarged (side x 1.3) before cropping
FACE_MARGIN = 1.3

#: the longest side face detection runs at (frames are downscaled to it, never upscaled)
FACE_DETECT_SIDE = 480

#: what the clip cache stores; bump it when the stored pixels change
_CACHE_VERSION = "clip-v1"


def _av():
    try:
        import av
    except ImportError as e:  # pragma: no cover - the video extra is part of make setup
        raise ImportError("zoo.data.video needs PyAV: pip install 'zoo[video]' (or av)") from e
    return av


def write_mp4(path: str | os.PathLike, frames: np.ndarray, fps: int = 30, gop: int | None = None,
              crf: int = 18, faststart: bool = False) -> str:
    """Write ``frames`` (uint8 ``[T, H, W, 3]`` RGB, H and W even) to ``path`` as H.264 (yuv420p)
    at ``fps`` frames per second, a keyframe every ``gop`` frames (default: every second, as
    camera and streaming exports do) and quality ``crf`` (0 lossless .. 51). ``faststart`` puts
    the index (``moov``) before the frame data, as web exports do (default: after it, FFmpeg's
    default). Returns the path."""
    av = _av()
    path = os.fspath(path)
    if not isinstance(frames, np.ndarray) or frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        got = f"{frames.dtype} {tuple(frames.shape)}" if isinstance(frames, np.ndarray) else type(frames).__name__
        raise ValueError(f"frames: expected a uint8 array [T, H, W, 3], got {got}")
    t, h, w, _ = frames.shape
    if t < 1 or h % 2 or w % 2:
        raise ValueError(f"frames: expected at least one frame of even height and width, got {tuple(frames.shape)}")
    if isinstance(fps, bool) or not isinstance(fps, int) or fps < 1:
        raise ValueError(f"fps: expected an int >= 1, got {fps!r}")
    gop = fps if gop is None else gop
    if isinstance(gop, bool) or not isinstance(gop, int) or gop < 1:
        raise ValueError(f"gop: expected an int >= 1, got {gop!r}")
    with av.open(path, mode="w", options={"movflags": "faststart"} if faststart else {}) as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.gop_size = gop
        # scenecut off: keyframes exactly every `gop` frames; one thread: the same bytes on every run
        stream.options = {"crf": str(crf), "preset": "veryfast", "sc_threshold": "0",
                          "keyint_min": str(gop), "threads": "1"}
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


# --------------------------------------------------------------------------------------
# metadata


@dataclass(frozen=True)
class VideoEntry:
    """One file of ``metadata.json``: ``name`` (as listed), ``path`` (under the root), ``label``
    (1.0 FAKE, 0.0 REAL), ``split`` ("train" / "val" / None when absent) and ``original`` (the
    file a fake was made from, None for real videos or when not given)."""

    name: str
    path: str
    label: float
    split: str | None
    original: str | None


def read_metadata(root: str | os.PathLike) -> list[VideoEntry]:
    """The entries of ``<root>/metadata.json`` (sorted by file name).

    ``ValueError`` naming metadata.json when ``root`` is not a folder, the file is missing or
    not JSON, is not an object of objects, or an entry has a label other than "FAKE"/"REAL", a
    split other than "train"/"val" (or absent/null) or an ``original`` that is not a string or
    null; ``ValueError`` naming metadata.json and every listed file that does not exist.
    """
    root = os.fspath(root)
    meta = os.path.join(root, "metadata.json")
    if not os.path.isdir(root):
        raise ValueError(f"root: {root!r} is not a directory (expected mp4 files and metadata.json)")
    if not os.path.isfile(meta):
        raise ValueError(f"metadata.json: {meta!r} does not exist (the DFDC layout needs it next to the mp4 files)")
    try:
        with open(meta, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"metadata.json: {meta!r} is not valid JSON: {err}") from err
    if not isinstance(data, dict) or not data:
        raise ValueError(f"metadata.json: {meta!r} must be a non-empty object "
                         '{"file.mp4": {"label": "FAKE" | "REAL", ...}, ...}')
    entries, missing = [], []
    for name in sorted(data):
        e = data[name]
        if not isinstance(e, dict):
            raise ValueError(f"metadata.json: entry {name!r} in {meta!r} must be an object, got {e!r}")
        label = e.get("label")
        if label not in LABELS:
            raise ValueError(f"metadata.json: entry {name!r} in {meta!r} has label {label!r}; "
                             f"expected 'FAKE' or 'REAL'")
        split = e.get("split")
        if split is not None and split not in SPLITS:
            raise ValueError(f"metadata.json: entry {name!r} in {meta!r} has split {split!r}; "
                             f"expected 'train', 'val' or none")
        original = e.get("original")
        if original is not None and not isinstance(original, str):
            raise ValueError(f"metadata.json: entry {name!r} in {meta!r} has original {original!r}; "
                             "expected a file name or null")
        path = os.path.join(root, name)
        if not os.path.isfile(path):
            missing.append(name)
        entries.append(VideoEntry(name, path, LABELS[label], split, original or None))
    if missing:
        raise ValueError(f"metadata.json: {meta!r} lists {len(missing)} file(s) that do not exist in "
                         f"{root!r}: {missing}")
    return entries


def split_entries(entries: Sequence[VideoEntry], val_fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """``(train indices, val indices)`` of ``entries``.

    An entry's group is its ``original`` when it has one, else its own name: a fake and the real
    video it was made from form one group. Entries with a ``split`` keep it; an entry without one
    takes the split of a member of its group that has one (the first, by file name), and the
    remaining groups are split at random (``seed``), ``round(groups * val_fraction)`` of them
    going to val (at least 1 when the metadata names no val entry, and at least 1 left for train
    when it names no train entry). When no entry is marked "val" (DFDC's training parts mark
    every file "train"), the "train" marks are ignored and all groups are split that way.
    """
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction: expected a value in (0, 1), got {val_fraction!r}")
    if not any(e.split == "val" for e in entries):
        entries = [VideoEntry(e.name, e.path, e.label, None, e.original) for e in entries]
    group_of = [e.original or e.name for e in entries]
    explicit: dict[str, str] = {}
    for g, e in zip(group_of, entries):
        if e.split is not None:
            explicit.setdefault(g, e.split)
    free = sorted({g for g in group_of if g not in explicit})
    val_groups: set[str] = set()
    if free:
        has_val = "val" in explicit.values()
        has_train = "train" in explicit.values()
        perm = torch.randperm(len(free), generator=torch.Generator().manual_seed(seed)).tolist()
        n_val = round(len(free) * val_fraction)
        if not has_val:
            n_val = max(1, n_val)
        if not has_train:
            n_val = min(len(free) - 1, n_val)
        val_groups = {free[i] for i in perm[:n_val]}
    split = [e.split or explicit.get(g) or ("val" if g in val_groups else "train")
             for g, e in zip(group_of, entries)]
    train = [i for i, s in enumerate(split) if s == "train"]
    val = [i for i, s in enumerate(split) if s == "val"]
    if not train or not val:
        raise ValueError(f"val_fraction: {len(entries)} video(s) in {len(set(group_of))} group(s) give "
                         f"{len(train)} train and {len(val)} val video(s); both need at least one")
    return train, val


# --------------------------------------------------------------------------------------
# probing and decoding


@dataclass(frozen=True)
class VideoInfo:
    """What :func:`probe_video` finds: ``num_frames`` (N), ``fps``, ``width`` and ``height``
    (pixels of the decoded frames)."""

    num_frames: int
    fps: float
    width: int
    height: int


def _open(path: str):
    """``(container, its first video stream)``; ``ValueError`` naming ``path`` when it cannot be
    opened or has no video stream."""
    av = _av()
    if not os.path.isfile(path):
        raise CorruptFileError(path, f"video: {path!r} does not exist")
    try:
        container = av.open(path)
    except (av.FFmpegError, OSError, UnicodeDecodeError) as err:
        raise CorruptFileError(path, f"video: {path!r} cannot be opened as a video (corrupt or truncated?): "
                                     f"{err}") from err
    if not container.streams.video:
        container.close()
        raise CorruptFileError(path, f"video: {path!r} has no video stream")
    return container, container.streams.video[0]


def _rate(stream) -> Fraction | None:
    """Frames per second of ``stream`` as a fraction (average, else guessed/base rate), None if unknown."""
    for r in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        if r is not None and r > 0:
            return Fraction(r)
    return None


def _count_packets(container, stream) -> int:
    """Frames of ``stream`` counted as its non-empty, non-discarded packets (demuxed, not decoded)."""
    return sum(1 for p in container.demux(stream) if p.size and not p.is_discard)


def probe_video(path: str | os.PathLike) -> VideoInfo:
    """Frame count, frame rate and size of the first video stream of ``path``.

    The count is the stream's ``frames`` from the container header; when that is 0 or unknown the
    packets are counted (demuxed, not decoded). The first frame is decoded to check that the
    stream is decodable at all. ``ValueError`` naming the file when it does not exist, is
    not a readable container (random bytes, an mp4 truncated before its index), has no video
    stream, has 0 frames, no frame rate or a first frame that does not decode. A file truncated
    inside its frame data can pass: :func:`read_frames` reports it when it gets there.
    """
    av = _av()
    path = os.fspath(path)
    container, stream = _open(path)
    try:
        n = stream.frames or 0
        if n <= 0:
            n = _count_packets(container, stream)
            if n <= 0:
                raise CorruptFileError(path, f"video: {path!r} has a video stream with 0 frames")
            container.close()  # back to the start without relying on a seekable index
            container, stream = _open(path)
        rate = _rate(stream)
        if rate is None:
            raise CorruptFileError(path, f"video: {path!r} has no frame rate")
        first = next(iter(container.decode(stream)), None)
        if first is None:
            raise CorruptFileError(path, f"video: {path!r} has no decodable frame")
        return VideoInfo(num_frames=int(n), fps=float(rate), width=int(first.width), height=int(first.height))
    except av.FFmpegError as err:
        raise CorruptFileError(path, f"video: {path!r} cannot be decoded (corrupt or truncated?): {err}") from err
    finally:
        container.close()


def sample_indices(num_frames: int, frames: int) -> list[int]:
    """``frames`` (T) frame indices spread uniformly over a video of ``num_frames`` (N) frames:
    ``round(linspace(0, N - 1, T))``, i.e. index ``k`` is ``round(k (N - 1) / (T - 1))`` with ties
    rounded up, computed exactly in integers (T = 1: frame 0). Both ends are included and for
    N >= T consecutive gaps differ by at most 1.

    A video shorter than T frames still gives exactly T indices: its frames repeat in order, a
    nearest-frame stretch (N = 3, T = 5: ``[0, 1, 1, 2, 2]``). ``ValueError`` naming the argument
    for a non-integer or a value < 1.
    """
    for name, v in (("num_frames", num_frames), ("frames", frames)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"{name}: expected an int >= 1, got {v!r}")
    n, t = int(num_frames), int(frames)
    if t == 1:
        return [0]
    # round half up of k (n-1) / (t-1) = floor((2 k (n-1) + (t-1)) / (2 (t-1)))
    return [(2 * k * (n - 1) + (t - 1)) // (2 * (t - 1)) for k in range(t)]


class _Fallback(Exception):
    """The seek path met a stream whose timestamps it cannot map to frame indices."""


def _check_indices(indices: Sequence[int]) -> list[int]:
    """``indices`` as a list of Python ints; ``ValueError`` naming ``indices`` unless they are ints >= 0."""
    try:
        out = list(indices)
    except TypeError as err:
        raise ValueError(f"indices: expected a sequence of ints >= 0, got {indices!r}") from err
    if not out:
        raise ValueError("indices: expected at least one frame index")
    if any(isinstance(i, bool) or not isinstance(i, (int, np.integer)) or i < 0 for i in out):
        raise ValueError(f"indices: expected ints >= 0, got {out!r}")
    return [int(i) for i in out]


def _decode_sequential(container, stream, targets: list[int]) -> tuple[dict[int, np.ndarray], int]:
    """Decode from the start, frame after frame, keeping the frames whose index is in ``targets``;
    returns them and the number of frames decoded."""
    wanted, last, got, n = set(targets), max(targets), {}, 0
    for i, frame in enumerate(container.decode(stream)):
        n = i + 1
        if i in wanted:
            got[i] = frame.to_ndarray(format="rgb24")
        if i >= last:
            break
    return got, n


def _packet_index(container, stream) -> tuple[list[int], list[int]]:
    """``(pts of every frame, pts of the keyframes)`` of ``stream`` from its packets (demuxed, not
    decoded; empty and discarded packets left out). :class:`_Fallback` when a packet has no pts."""
    pts, keys = [], []
    for p in container.demux(stream):
        if not p.size or p.is_discard:
            continue
        if p.pts is None:
            raise _Fallback("a packet without pts")
        pts.append(int(p.pts))
        if p.is_keyframe:
            keys.append(int(p.pts))
    return pts, keys


def _decode_skipping(container, stream, keep_pts: set[int]):
    """The decoded frames of ``stream`` from the current position, in presentation order, with the
    decoder told to skip the non-reference frames (``skip_frame = NONREF``: frames no other frame
    is predicted from, e.g. most B-frames) unless their pts is in ``keep_pts``. Skipping them
    changes no other frame, so the frames returned are exactly those of a full decode, with gaps."""
    ctx = stream.codec_context
    for packet in container.demux(stream):
        # the final flush packet has no pts: decode it normally to get the delayed frames
        ctx.skip_frame = "DEFAULT" if packet.pts is None or int(packet.pts) in keep_pts else "NONREF"
        yield from packet.decode()


def _decode_seek(container, stream, targets: list[int]) -> dict[int, np.ndarray]:
    """Decode ``targets`` (sorted, unique) by seeking.

    Frame ``i`` has pts ``origin + i / (rate * time_base)``, ``origin`` the first frame's pts (the
    smallest packet pts). The packets (demuxed, not decoded) give the keyframes and check that
    grid: every packet must land on its own frame index 0 .. N-1. For each target the decoder
    seeks to the keyframe at or before it and decodes forward to it -- unless it already stands
    before the target with no keyframe in between (or the keyframe is the next frame), then it
    keeps decoding. On the way the decoder skips the non-reference frames that are not targets
    (:func:`_decode_skipping`). Raises :class:`_Fallback` when the timestamps do not follow the grid
    (variable frame rate, missing pts, a seek landing after its target, decoded frames that are
    not in order), so that the caller decodes sequentially instead.
    """
    rate, tb = _rate(stream), stream.time_base
    if rate is None or tb is None:
        raise _Fallback("no frame rate or time base")
    step = 1 / (rate * Fraction(tb))  # pts units per frame
    all_pts, key_pts = _packet_index(container, stream)
    if not all_pts or not key_pts:
        raise _Fallback("no frame or keyframe packets")
    origin = min(all_pts)

    def index_of(pts: int) -> int:
        return round((pts - origin) / step)

    def pts_of(i: int) -> int:
        return origin + round(i * step)

    if sorted(index_of(p) for p in all_pts) != list(range(len(all_pts))):
        raise _Fallback("timestamps off the constant frame-rate grid")
    keys = sorted(index_of(p) for p in key_pts)
    keep = {pts_of(t) for t in targets}
    got: dict[int, np.ndarray] = {}
    frames = None
    pos = -1  # index of the last decoded frame (-1: the decoder needs a seek)
    for t in targets:
        k = bisect.bisect_right(keys, t) - 1
        key = keys[k] if k >= 0 else 0
        if frames is None or pos >= t or key > pos + 1:
            try:
                container.seek(pts_of(t), stream=stream, backward=True, any_frame=False)
            except _av().FFmpegError as err:  # e.g. a stream without a seek index
                raise _Fallback(f"seek failed: {err}") from err
            frames, pos = _decode_skipping(container, stream, keep), -1
        while True:
            frame = next(frames, None)
            if frame is None:  # the stream ended before t: let the sequential pass decide
                raise _Fallback(f"the stream ended before frame {t}")
            if frame.pts is None:
                raise _Fallback("a frame without pts")
            i = index_of(frame.pts)
            if i > t or i <= pos:  # past the target, or out of order: the grid does not hold
                raise _Fallback(f"frame {i} after {pos} while looking for {t}")
            pos = i
            if i == t:
                got[t] = frame.to_ndarray(format="rgb24")
                break
    return got


def read_frames(path: str | os.PathLike, indices: Sequence[int], seek: bool = True) -> np.ndarray:
    """The frames ``indices`` of the first video stream of ``path``: uint8 ``[T, H, W, 3]`` RGB,
    in the order of ``indices`` (a repeated index gives its frame again). Frame ``i`` is the
    ``i``-th frame in presentation order, counted from 0.

    ``seek=True`` decodes only what the sorted unique indices need: it seeks to the keyframe at
    or before each and decodes forward to it (skipping the non-reference frames that are not
    wanted), and keeps decoding instead of seeking again when
    the next index lies before the next keyframe; keyframes come from the packets (demuxed, not
    decoded) and frame indices map to timestamps through the stream's time base and average
    frame rate, with the first frame's pts as origin. A stream whose timestamps do not fit that
    grid (variable frame rate, missing pts) is decoded sequentially instead. ``seek=False``
    decodes every frame from the start up to the last index and picks the indices.

    ``ValueError`` naming the file for a file that cannot be opened or decoded (corrupt or
    truncated data) or an index beyond the last frame; naming ``indices`` for bad indices.
    """
    av = _av()
    path = os.fspath(path)
    order = _check_indices(indices)
    targets = sorted(set(order))
    container, stream = _open(path)
    decoded = 0
    try:
        got = None
        if seek:
            try:
                got = _decode_seek(container, stream, targets)
            except _Fallback:
                container.close()
                container, stream = _open(path)
        if got is None:
            got, decoded = _decode_sequential(container, stream, targets)
    except av.FFmpegError as err:
        raise CorruptFileError(path, f"video: {path!r} cannot be decoded (corrupt or truncated?): {err}") from err
    finally:
        container.close()
    missing = [t for t in targets if t not in got]
    if missing:
        raise CorruptFileError(path, f"video: {path!r} has no frame(s) {missing[:5]}"
                                     f"{' ...' if len(missing) > 5 else ''}: it ended after {decoded} decoded "
                                     "frame(s) (index beyond the end, or truncated data)")
    return np.stack([got[i] for i in order])


# --------------------------------------------------------------------------------------
# faces


@functools.lru_cache(maxsize=1)
def _cascade():
    import cv2

    path = os.path.join(cv2.data.haarcascades, "haarcascade_frontalface_default.xml")
    cascade = cv2.CascadeClassifier(path)
    if cascade.empty():
        raise ValueError(f"face_crop: OpenCV's Haar cascade {path!r} cannot be loaded "
                         "(opencv-python-headless < 5 ships it)")
    return cascade


def largest_face(frame: np.ndarray, max_side: int = FACE_DETECT_SIDE) -> tuple[int, int, int, int] | None:
    """The largest frontal face in ``frame`` (uint8 ``[H, W, 3]`` RGB) found by OpenCV's bundled Haar
    cascade, as ``(top, left, height, width)`` in frame pixels, or None. The frame is converted to
    grey and downscaled so that its longest side is at most ``max_side`` before detection."""
    import cv2

    if not isinstance(frame, np.ndarray) or frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
        raise ValueError(f"frame: expected a uint8 array [H, W, 3], got {getattr(frame, 'dtype', type(frame))} "
                         f"{getattr(frame, 'shape', '')}")
    grey = cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_RGB2GRAY)
    h, w = grey.shape
    scale = min(1.0, max_side / max(h, w))
    if scale < 1.0:
        grey = cv2.resize(grey, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
    faces = _cascade().detectMultiScale(grey, scaleFactor=1.1, minNeighbors=5)
    if len(faces) == 0:
        return None
    x, y, fw, fh = max((tuple(int(v) for v in f) for f in faces), key=lambda f: f[2] * f[3])
    return round(y / scale), round(x / scale), round(fh / scale), round(fw / scale)


def face_box(frames: np.ndarray, margin: float = FACE_MARGIN) -> tuple[int, int, int, int]:
    """One face box for a clip (uint8 ``[T, H, W, 3]`` RGB) as ``(top, left, height, width)``.

    The largest face of each frame (:func:`largest_face`); the box is the per-coordinate median
    (centre x, centre y, side) over the frames where a face was found, its side ``margin`` times
    the larger of the detected height and width, square, shifted into the frame and, when larger
    than the frame's shorter side, clipped to it. No face in any frame: the whole frame
    ``(0, 0, H, W)``.
    """
    if not isinstance(frames, np.ndarray) or frames.ndim != 4:
        raise ValueError(f"frames: expected a uint8 array [T, H, W, 3], got {getattr(frames, 'shape', type(frames))}")
    if not margin > 0:
        raise ValueError(f"margin: expected > 0, got {margin!r}")
    h, w = frames.shape[1:3]
    boxes = [b for b in (largest_face(f) for f in frames) if b is not None]
    if not boxes:
        return 0, 0, h, w
    b = np.array(boxes, dtype=np.float64)
    cy = float(np.median(b[:, 0] + b[:, 2] / 2))
    cx = float(np.median(b[:, 1] + b[:, 3] / 2))
    side = float(np.median(np.maximum(b[:, 2], b[:, 3]))) * margin
    side = int(min(max(1, round(side)), h, w))
    top = int(min(max(0, round(cy - side / 2)), h - side))
    left = int(min(max(0, round(cx - side / 2)), w - side))
    return top, left, side, side


# --------------------------------------------------------------------------------------
# clips


def _resize(frames: np.ndarray, size: int) -> torch.Tensor:
    """uint8 ``[T, h, w, 3]`` -> uint8 ``[T, 3, size, size]`` (bilinear, antialiased, rounded)."""
    x = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float()
    if x.shape[-2:] != (size, size):
        x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return x.round_().clamp_(0, 255).to(torch.uint8).contiguous()


def load_clip(path: str | os.PathLike, frames: int, size: int, face_crop: bool = False,
              num_frames: int | None = None, seek: bool = True) -> torch.Tensor:
    """The clip of ``path``: uint8 ``[T, 3, S, S]`` (T = ``frames``, S = ``size``): the frames
    :func:`sample_indices` picks (``num_frames`` known, or probed), cropped to :func:`face_box`
    when ``face_crop``, each resized to ``S x S``. ``ValueError`` naming the file when it cannot be
    probed or decoded."""
    path = os.fspath(path)
    n = probe_video(path).num_frames if num_frames is None else num_frames
    pixels = read_frames(path, sample_indices(n, frames), seek=seek)
    if face_crop:
        top, left, h, w = face_box(pixels)
        pixels = pixels[:, top:top + h, left:left + w]
    return _resize(pixels, size)


def cache_file(cache_dir: str | os.PathLike, path: str | os.PathLike, frames: int, size: int,
               face_crop: bool) -> Path:
    """Where the clip of ``path`` is cached: ``<cache_dir>/<stem>-<key>.pt``, the key a hash of
    (absolute path, file size, mtime_ns, T, S, face_crop): a file that changes gets a new entry."""
    path = os.path.abspath(os.fspath(path))
    st = os.stat(path)
    key = json.dumps([_CACHE_VERSION, path, st.st_size, st.st_mtime_ns, int(frames), int(size), bool(face_crop)])
    digest = hashlib.sha1(key.encode()).hexdigest()[:16]
    return Path(cache_dir) / f"{Path(path).stem}-{digest}.pt"


def _save_atomic(tensor: torch.Tensor, target: Path) -> None:
    """``torch.save`` to a temporary file renamed into place: readers never see half a file."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        torch.save(tensor, tmp)
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()


class VideoClips(Dataset):
    """Clips of video files: item ``i`` is ``(clip float32 [T, 3, S, S], label float32 scalar)``,
    the clip of ``paths[i]`` (:func:`load_clip`) scaled to 0..1 and normalised with ``mean`` /
    ``std`` (per channel), the label 1.0 FAKE / 0.0 REAL / -1.0 unknown (``labels`` None).

    ``train``: a random horizontal flip of the whole clip (every frame alike) and, with
    ``crop_scale`` < 1, a random square window of side ``U(crop_scale, 1) * S`` (one window for
    every frame) resized back to ``S x S``. ``cache_dir``: the
    uint8 clip (after crop and resize) is saved there on its first read (:func:`cache_file`,
    written atomically, so several loader workers may share it) and loaded afterwards without
    decoding. ``num_frames``: the frame counts, when known (else each file is probed).
    A file that fails to decode raises :class:`~zoo.data.corrupt.CorruptFileError` naming it; with
    ``skip_corrupt`` the item is None instead (with a warning, counted in ``corrupt``), which
    :func:`drop_failed_collate` leaves out of its batch. ``files`` lists the file names (basenames)
    in order.
    """

    def __init__(self, paths: Sequence[str | os.PathLike], labels: Sequence[float] | None = None, frames: int = 20,
                 size: int = 112, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD,
                 train: bool = False, face_crop: bool = False, cache_dir: str | os.PathLike | None = None,
                 num_frames: Sequence[int] | None = None, skip_corrupt: bool = False,
                 crop_scale: float = 1.0) -> None:
        self.paths = [os.fspath(p) for p in paths]
        if isinstance(crop_scale, bool) or not isinstance(crop_scale, (int, float)) or not 0.0 < crop_scale <= 1.0:
            raise ValueError(f"crop_scale: expected a fraction of the side in (0, 1], got {crop_scale!r}")
        self.crop_scale = float(crop_scale)
        if labels is not None and len(labels) != len(self.paths):
            raise ValueError(f"labels: expected one label per file ({len(self.paths)}), got {len(labels)}")
        if num_frames is not None and len(num_frames) != len(self.paths):
            raise ValueError(f"num_frames: expected one count per file ({len(self.paths)}), got {len(num_frames)}")
        for name, v in (("frames", frames), ("size", size)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name}: expected an int >= 1, got {v!r}")
        self.corrupt = CorruptItems(skip_corrupt, len(self.paths))
        if len(mean) != 3 or len(std) != 3:
            raise ValueError(f"mean/std: expected 3 values each (RGB), got {len(mean)} and {len(std)}")
        self.labels = None if labels is None else [float(v) for v in labels]
        self.num_frames = None if num_frames is None else [int(n) for n in num_frames]
        self.files = [os.path.basename(p) for p in self.paths]
        self.frames, self.size, self.train, self.face_crop = frames, size, train, face_crop
        self.cache_dir = None if cache_dir is None else os.fspath(cache_dir)
        self.mean = torch.tensor([float(m) for m in mean]).view(1, 3, 1, 1)
        self.std = torch.tensor([float(s) for s in std]).view(1, 3, 1, 1)

    def __len__(self) -> int:
        return len(self.paths)

    def clip(self, i: int) -> torch.Tensor:
        """The uint8 clip ``[T, 3, S, S]`` of file ``i``, from the cache when it is there."""
        path = self.paths[i]
        n = None if self.num_frames is None else self.num_frames[i]
        if self.cache_dir is None:
            return load_clip(path, self.frames, self.size, self.face_crop, n)
        target = cache_file(self.cache_dir, path, self.frames, self.size, self.face_crop)
        if target.is_file():
            try:
                x = load_file(target)
                if isinstance(x, torch.Tensor) and x.dtype == torch.uint8 and \
                        tuple(x.shape) == (self.frames, 3, self.size, self.size):
                    return x
            except Exception:  # noqa: BLE001 - a damaged cache entry is decoded again
                pass
        x = load_clip(path, self.frames, self.size, self.face_crop, n)
        _save_atomic(x, target)
        return x

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor] | None:
        x = self.corrupt.read(i, lambda: self.clip(i))
        if x is None:
            return None
        if self.train and bool(torch.randint(0, 2, ())):
            x = x.flip(-1)
        x = x.float()
        if self.train and self.crop_scale < 1.0:
            s = self.size
            side = max(1, round(s * float(torch.empty(()).uniform_(self.crop_scale, 1.0))))
            if side < s:
                top, left = (int(torch.randint(0, s - side + 1, ())) for _ in range(2))
                x = F.interpolate(x[..., top:top + side, left:left + side], size=(s, s), mode="bilinear",
                                  align_corners=False)
        x = (x / 255.0 - self.mean) / self.std
        y = torch.tensor(-1.0 if self.labels is None else self.labels[i], dtype=torch.float32)
        return x, y


def drop_failed_collate(batch: Sequence[Any]) -> Any:
    """torch's default collate over the items that are not None (clips that failed to decode
    with ``skip_corrupt``): ``(x [B', T, 3, S, S], y [B'])`` with B' <= B. None when every
    item of the batch failed (the tasks skip it). The video form of :class:`zoo.data.corrupt.SkipCollate`."""
    return _SKIP_COLLATE(batch)


_SKIP_COLLATE = SkipCollate(default_collate)


# --------------------------------------------------------------------------------------
# datamodule


def list_videos(root: str | os.PathLike, arg: str = "predict_dir") -> list[str]:
    """The mp4 files of ``root`` (sorted); ``ValueError`` naming ``arg`` when it is not a folder or has none."""
    root = os.fspath(root)
    if not os.path.isdir(root):
        raise ValueError(f"{arg}: {root!r} is not a directory")
    files = sorted(os.path.join(root, f) for f in os.listdir(root)
                   if f.lower().endswith(".mp4") and os.path.isfile(os.path.join(root, f)))
    if not files:
        raise ValueError(f"{arg}: {root!r} has no .mp4 files")
    return files


class VideoDataModule(SplitDataModule):
    """Clips of a DFDC-layout folder for a deepfake detector.

    ``root``: a folder of mp4 files with ``metadata.json`` (:func:`read_metadata`); None: the
    embedded default, synthetic face videos written once under ``<data_dir>/deepfake_synth``
    (``zoo.data.synthetic_faces.synthetic_deepfakes``). Train/val come from the metadata's
    ``split``, else from :func:`split_entries` (``val_fraction``, ``seed``; a fake stays with
    its original); test is val; predict is the mp4 files of ``predict_dir`` (sorted, unlabelled:
    label -1) or else val. Every item is ``frames`` frames (:func:`sample_indices`), cropped to
    the face when ``face_crop``, resized to ``size x size``, normalised with ``mean``/``std``
    (:func:`zoo.data.classification.resolve_norm`: explicit, else the spec of ``arch``, else
    ImageNet's); training flips whole clips at random when ``augment`` and, with ``crop_scale`` < 1,
    crops one random square window per clip (side ``U(crop_scale, 1)`` of the frame) resized back. Decoded clips are cached
    under ``cache_dir`` (None: no cache). Batches are ``(x [B, T, 3, S, S] float32, y [B] float32)``.

    ``setup`` probes every file (:func:`probe_video`). By default a bad file raises
    ``ValueError`` naming it and why (several: one error naming every one). With ``skip_corrupt``
    they are left out with one warning (and listed in ``skipped``), and a clip that fails to
    decode later is left out of its batch with a warning (:func:`drop_failed_collate`; a batch
    whose clips all failed is None) and counted (``data/skipped_<stage>`` per epoch,
    :class:`zoo.callbacks.SkippedItems`; the prediction writers leave its row out).
    ``bad_files="raise"`` / ``"skip"`` is the deprecated spelling of ``skip_corrupt=False`` /
    ``True``.
    """

    #: every loader drops the clips that failed to decode (only possible with ``skip_corrupt``)
    collate_fn = staticmethod(drop_failed_collate)

    def __init__(
        self,
        root: str | None = None,
        frames: int = 20,
        size: int = 112,
        batch_size: int = 8,
        num_workers: int = 0,
        val_fraction: float = 0.2,
        face_crop: bool = False,
        cache_dir: str | None = "runs/data/video_cache",
        data_dir: str = "runs/data",
        arch: str | None = None,
        mean: list[float] | None = None,
        std: list[float] | None = None,
        augment: bool = True,
        crop_scale: float = 1.0,
        predict_dir: str | None = None,
        bad_files: str | None = None,
        seed: int = 0,
        skip_corrupt: bool = False,
    ) -> None:
        super().__init__()
        if root is not None and not os.path.isdir(root):
            raise ValueError(f"root: {root!r} is not a directory (expected mp4 files and metadata.json)")
        ints = (("frames", frames, 1), ("size", size, 1), ("batch_size", batch_size, 1),
                ("num_workers", num_workers, 0), ("seed", seed, 0))
        for name, v, lo in ints:
            if isinstance(v, bool) or not isinstance(v, int) or v < lo:
                raise ValueError(f"{name}: expected an int >= {lo}, got {v!r}")
        if isinstance(val_fraction, bool) or not isinstance(val_fraction, (int, float)) or not 0.0 < val_fraction < 1.0:
            raise ValueError(f"val_fraction: expected a value in (0, 1), got {val_fraction!r}")
        if isinstance(crop_scale, bool) or not isinstance(crop_scale, (int, float)) or not 0.0 < crop_scale <= 1.0:
            raise ValueError(f"crop_scale: expected a fraction of the side in (0, 1], got {crop_scale!r}")
        for name, v in (("face_crop", face_crop), ("augment", augment)):
            if not isinstance(v, bool):
                raise ValueError(f"{name}: expected True or False, got {v!r}")
        if cache_dir is not None and (not isinstance(cache_dir, (str, os.PathLike)) or not os.fspath(cache_dir)):
            raise ValueError(f"cache_dir: expected a folder path or None, got {cache_dir!r}")
        if not isinstance(data_dir, (str, os.PathLike)) or not os.fspath(data_dir):
            raise ValueError(f"data_dir: expected a folder path, got {data_dir!r}")
        if predict_dir is not None and not os.path.isdir(predict_dir):
            raise ValueError(f"predict_dir: {predict_dir!r} is not a directory")
        check_skip_corrupt(skip_corrupt)
        if bad_files is not None:
            if bad_files not in ("raise", "skip"):
                raise ValueError(f"bad_files: expected 'raise' or 'skip', got {bad_files!r}")
            if skip_corrupt and bad_files == "raise":
                raise ValueError("bad_files, skip_corrupt: bad_files='raise' contradicts skip_corrupt=True "
                                 "(bad_files is deprecated: give skip_corrupt alone)")
            warnings.warn(f"bad_files={bad_files!r} is deprecated: use skip_corrupt={bad_files == 'skip'}",
                          DeprecationWarning, stacklevel=2)
            skip_corrupt = bad_files == "skip"
        self.save_hyperparameters()
        self.hparams["skip_corrupt"] = skip_corrupt
        self.mean, self.std = resolve_norm(arch, mean, std, 3)
        self.classes: list[str] = ["REAL", "FAKE"]
        self.entries: list[VideoEntry] | None = None
        #: the files ``skip_corrupt`` left out at ``setup``: ``{path: reason}``
        self.skipped: dict[str, str] = {}
        self._sets: dict[str, VideoClips] = {}

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def _root(self) -> str:
        hp = self.hparams
        if hp.root is not None:
            return hp.root
        from .synthetic_faces import synthetic_deepfakes

        return os.fspath(synthetic_deepfakes(Path(hp.data_dir) / "deepfake_synth"))

    def prepare_data(self) -> None:
        """Write the embedded default (once) and check the metadata."""
        read_metadata(self._root())

    def _clips(self, paths: list[str], labels: list[float] | None, train: bool, what: str) -> VideoClips:
        """The clips of the ``paths`` that probe fine (:meth:`CorruptItems.scan`: the bad ones raise,
        or with ``skip_corrupt`` are left out with one warning and listed in ``skipped``)."""
        hp = self.hparams
        scan = CorruptItems(hp.skip_corrupt)
        kept = scan.scan(list(range(len(paths))), lambda i: probe_video(paths[i]).num_frames, f"{what} video(s)")
        keep, counts = [i for i, _ in kept], [n for _, n in kept]
        clips = VideoClips([paths[i] for i in keep], None if labels is None else [labels[i] for i in keep],
                           hp.frames, hp.size, self.mean, self.std, train=train and hp.augment,
                           face_crop=hp.face_crop, cache_dir=hp.cache_dir, num_frames=counts,
                           skip_corrupt=hp.skip_corrupt, crop_scale=hp.crop_scale)
        clips.corrupt.left_out.update(scan.left_out)
        self.skipped.update(scan.left_out)
        return clips

    def setup(self, stage: str | None = None) -> None:
        hp = self.hparams
        if stage != "predict" or hp.predict_dir is None:
            if "train" not in self._sets:
                self.entries = read_metadata(self._root())
                train_idx, val_idx = split_entries(self.entries, hp.val_fraction, hp.seed)
                for name, idx, train in (("train", train_idx, True), ("val", val_idx, False)):
                    es = [self.entries[i] for i in idx]
                    self._sets[name] = self._clips([e.path for e in es], [e.label for e in es], train, name)
            self.train_set = self._sets["train"]
            self.val_set = self.test_set = self._sets["val"]
        if hp.predict_dir is None:
            self.predict_set = self.val_set
        elif stage in (None, "predict"):
            if "predict" not in self._sets:
                self._sets["predict"] = self._clips(list_videos(hp.predict_dir), None, False, "predict")
            self.predict_set = self._sets["predict"]


__all__ = [
    "FACE_MARGIN",
    "LABELS",
    "VideoClips",
    "VideoDataModule",
    "VideoEntry",
    "VideoInfo",
    "cache_file",
    "drop_failed_collate",
    "face_box",
    "largest_face",
    "list_videos",
    "load_clip",
    "probe_video",
    "read_frames",
    "read_metadata",
    "sample_indices",
    "split_entries",
    "write_mp4",
]
