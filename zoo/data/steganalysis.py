"""Steganalysis data: cover/stego pairs, embedding with conseal, and the embedded default photos.

A steganalyser learns the difference between a cover image and the same image carrying a
hidden message, so its data comes in **pairs** (or, with K embedding algorithms, groups of
K + 1 images: the cover and one stego per algorithm). Everything here keeps a pair together:

* :class:`StegoPairs` returns one pair per item: ``images [K+1, C, H, W]`` (float32 pixel
  values 0..255, the cover first) and ``labels [K+1] = 0, 1, ..., K``. Random crops, flips
  and rot90 are drawn once per item and applied to every image of it.
* :func:`pair_collate` flattens a batch of pairs to ``x [B*(K+1), C, H, W]``, ``y [B*(K+1)]``:
  with one algorithm ``x[2i]`` is a cover and ``x[2i+1]`` its stego (labels 0 and 1).
* :class:`StegoDataModule` splits by pair (a pair never spans train and val), and builds the
  stego images either from a directory matched by file name, or by embedding each cover with
  conseal (:func:`embed_covers`: once, in parallel worker processes, cached as PNG).

Embedding (:func:`embed_image`) works on uint8 pixels only: conseal's simulators add -1, 0
or +1 to each pixel, and a float array would silently wrap -1 to 255. Colour images are
embedded channel by channel, each channel with its own seed. Supported algorithms
(all spatial, payload in bits per pixel in (0, 1]): ``wow``, ``suniward``, ``hill`` (conseal's
content-adaptive simulators) and ``lsbm`` (LSB matching: about half the pixels change by +-1 at
1 bpp).
"""
from __future__ import annotations

import hashlib
import json
import multiprocessing as mp
import os
import re
import shutil
import uuid
import warnings
import zlib
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from ..registry import get_spec
from .base import SplitDataModule
from .corrupt import CorruptFileError, CorruptFileWarning, CorruptItems, SkipCollate, check_skip_corrupt
from .images import is_image_file, list_images

#: the embedding algorithms :func:`embed_image` knows (all spatial-domain)
ALGORITHMS = ("wow", "suniward", "hill", "lsbm")

#: the embedding of the embedded default: LSB matching at 1 bit per pixel
DEFAULT_EMBED = {"algorithm": "lsbm", "payload": 1.0, "seed": 0}

_EMBED_KEYS = ("algorithm", "payload", "seed")


# --------------------------------------------------------------------------------------
# embedding


def check_embed(embed: dict | Sequence[dict], arg: str = "embed") -> list[dict]:
    """``embed`` (one dict or a list of dicts with keys ``algorithm``, ``payload``, ``seed``) as a
    list of complete dicts (``seed`` defaults to 0); ``ValueError`` naming ``arg`` for an unknown
    key or algorithm, a payload outside (0, 1], a non-integer seed or a repeated entry."""
    entries = [embed] if isinstance(embed, dict) else list(embed)
    if not entries:
        raise ValueError(f"{arg}: expected at least one embedding")
    out = []
    for e in entries:
        if not isinstance(e, dict):
            raise ValueError(f"{arg}: expected a dict with keys {_EMBED_KEYS}, got {e!r}")
        unknown = sorted(set(e) - set(_EMBED_KEYS))
        if unknown:
            raise ValueError(f"{arg}: unknown key(s) {unknown}; expected {_EMBED_KEYS}")
        algorithm = e.get("algorithm")
        if algorithm not in ALGORITHMS:
            raise ValueError(f"{arg}: unknown algorithm {algorithm!r}; expected one of {ALGORITHMS}")
        payload = e.get("payload")
        if isinstance(payload, bool) or not isinstance(payload, (int, float)) or not 0.0 < payload <= 1.0:
            raise ValueError(f"{arg}: payload must be in (0, 1] bits per pixel for the spatial algorithm "
                             f"{algorithm!r}, got {payload!r}")
        seed = e.get("seed", 0)
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ValueError(f"{arg}: seed must be an int >= 0, got {seed!r}")
        out.append({"algorithm": algorithm, "payload": float(payload), "seed": seed})
    keys = [embed_key(e) for e in out]
    if len(set(keys)) != len(keys):
        raise ValueError(f"{arg}: the same embedding is listed twice: {keys}")
    return out


def embed_key(embed: dict) -> str:
    """The name of an embedding, used for its cache folder and class name: ``wow-0.4bpp-seed0``."""
    return f"{embed['algorithm']}-{embed['payload']:g}bpp-seed{embed.get('seed', 0)}"


def _channel_seed(seed: int, name: str, channel: int) -> int:
    """A seed per (global seed, image name, channel): different messages in every image and
    channel, the same ones on every run."""
    return zlib.crc32(f"{seed}/{name}/{channel}".encode()) & 0x7FFFFFFF


def _simulate(x0: np.ndarray, algorithm: str, payload: float, seed: int) -> np.ndarray:
    """One conseal simulator on one uint8 channel ``[H, W]``."""
    import conseal

    if algorithm == "lsbm":
        return conseal.lsb.simulate(x0, payload, modify=conseal.LSB_MATCHING, seed=seed)
    module = {"wow": conseal.wow, "suniward": conseal.suniward, "hill": conseal.hill}[algorithm]
    return module.simulate_single_channel(x0, payload, seed=seed)


def embed_image(cover: np.ndarray, algorithm: str, payload: float, seed: int = 0, name: str = "") -> np.ndarray:
    """The stego version of ``cover``: uint8 ``[H, W]`` (grey) or ``[H, W, C]`` (colour, embedded per
    channel), the same shape and dtype; each pixel changes by at most 1.

    ``name`` (e.g. the file name) enters each channel's seed, so that two images embedded with
    the same ``seed`` carry different messages. ``ValueError`` for a non-uint8 array, an unknown
    ``algorithm`` or a ``payload`` outside (0, 1].
    """
    check_embed({"algorithm": algorithm, "payload": payload, "seed": seed})
    if not isinstance(cover, np.ndarray) or cover.dtype != np.uint8:
        raise ValueError(f"cover: expected a uint8 numpy array (8-bit pixels), got "
                         f"{getattr(cover, 'dtype', type(cover).__name__)}")
    if cover.ndim not in (2, 3) or min(cover.shape[:2]) < 1:
        raise ValueError(f"cover: expected [H, W] or [H, W, C] pixels, got shape {cover.shape}")
    planes = [cover] if cover.ndim == 2 else [cover[..., c] for c in range(cover.shape[2])]
    out = [_simulate(np.ascontiguousarray(p), algorithm, payload, _channel_seed(seed, name, c))
           for c, p in enumerate(planes)]
    stego = out[0] if cover.ndim == 2 else np.stack(out, axis=-1)
    if stego.dtype != np.uint8 or stego.shape != cover.shape:
        raise RuntimeError(f"conseal returned {stego.dtype} {stego.shape} for a uint8 {cover.shape} cover")
    return stego


def read_pixels(path: str | os.PathLike, arg: str = "cover_dir") -> np.ndarray:
    """The 8-bit pixels of an image file: uint8 ``[H, W]`` (grey, PIL mode ``L``) or ``[H, W, 3]``
    (``RGB``). Any other pixel format (16-bit, float, palette, alpha, 1-bit) raises ``ValueError``
    naming the file and ``arg``: converting it would change the pixels a stego signal lives in. A
    file that is not a readable image (missing, empty, truncated) raises
    :class:`~zoo.data.corrupt.CorruptFileError` (a ``ValueError``) naming it."""
    path = os.fspath(path)
    try:
        with Image.open(path) as img:
            mode = img.mode
            if mode in ("L", "RGB"):
                return np.asarray(img.convert(mode), dtype=np.uint8).copy()
    except Exception as err:  # noqa: BLE001 - whatever a damaged file makes PIL raise is the file's fault
        raise CorruptFileError(path, f"{arg}: {path!r} cannot be read as an image "
                                     f"({type(err).__name__}: {err})") from err
    raise ValueError(f"{arg}: {path!r} is not an 8-bit grey or RGB image (PIL mode {mode!r}); "
                     "steganalysis needs 8-bit pixels (mode 'L' or 'RGB')")


def _write_png(path: Path, pixels: np.ndarray) -> None:
    """Write ``pixels`` as a PNG through a temporary file renamed into place (never half-written)."""
    tmp = path.with_name(f".{path.stem}.tmp-{os.getpid()}-{uuid.uuid4().hex[:6]}.png")
    try:
        Image.fromarray(pixels).save(tmp, format="PNG")
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _embed_file(cover_path: str, stego_path: str, embed: dict) -> str:
    """Worker: read a cover, embed it, write the stego PNG; returns ``stego_path``."""
    cover = read_pixels(cover_path)
    name = Path(cover_path).stem
    stego = embed_image(cover, embed["algorithm"], embed["payload"], embed["seed"], name=name)
    _write_png(Path(stego_path), stego)
    return stego_path


def cache_folder(cache_dir: str | os.PathLike, cover_dir: str | os.PathLike, embed: dict) -> Path:
    """Where :func:`embed_covers` keeps the stego images of ``cover_dir`` for ``embed``:
    ``{cache_dir}/{cover folder name}-{digest of its absolute path}/{embed_key}``."""
    cover_dir = os.path.abspath(os.fspath(cover_dir))
    digest = hashlib.sha1(cover_dir.encode()).hexdigest()[:8]
    return Path(cache_dir) / f"{os.path.basename(cover_dir) or 'covers'}-{digest}" / embed_key(embed)


def _fresh(stego: Path, cover: str) -> bool:
    """A cached stego is reused when it exists and is not older than its cover."""
    try:
        return stego.stat().st_mtime_ns >= os.stat(cover).st_mtime_ns
    except FileNotFoundError:
        return False


def _pool_context():
    # fork starts workers at once and shares the imported modules; the workers run numpy and
    # conseal only (no torch ops), so forking a process that has torch loaded is safe here.
    methods = mp.get_all_start_methods()
    return mp.get_context("fork" if "fork" in methods else "spawn")


def embed_covers(
    cover_files: Sequence[str],
    out_dir: str | os.PathLike,
    embed: dict,
    workers: int | None = None,
    progress: bool = True,
    skip_corrupt: bool = False,
) -> tuple[list[str], int]:
    """Embed every cover once, caching the stego PNGs in ``out_dir`` (one per cover, same stem).

    Returns ``(stego paths in the order of cover_files, number embedded now)``: a stego that is
    already there and not older than its cover is reused, so a second call embeds nothing.
    ``workers`` processes embed in parallel (None: one per CPU; 0: in this process); a progress
    bar counts the images when ``progress``. Covers are only read. An unreadable or non-8-bit
    cover raises ``ValueError`` naming it (images embedded before it stay cached); with
    ``skip_corrupt`` an unreadable cover is passed over with a warning instead (its stego path is
    returned but not written: reading the pair later fails on the cover, which is then skipped).
    """
    embed = check_embed(embed)[0]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stegos = [str(out / f"{Path(c).stem}.png") for c in cover_files]
    todo = [(c, s) for c, s in zip(cover_files, stegos) if not _fresh(Path(s), c)]
    if not todo:
        return stegos, 0
    if workers is None:
        workers = os.cpu_count() or 1
    if workers < 0:
        raise ValueError(f"workers: expected >= 0, got {workers}")
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(todo), desc=f"embedding {embed_key(embed)}", unit="img")
    corrupt: list[str] = []

    def failed(err: CorruptFileError) -> None:
        if not skip_corrupt:
            raise err
        corrupt.append(str(err))

    try:
        if workers == 0 or len(todo) == 1:
            for c, s in todo:
                try:
                    _embed_file(c, s, embed)
                except CorruptFileError as err:
                    failed(err)
                if bar is not None:
                    bar.update(1)
        else:
            with ProcessPoolExecutor(max_workers=min(workers, len(todo)), mp_context=_pool_context()) as pool:
                futures = [pool.submit(_embed_file, c, s, embed) for c, s in todo]
                try:
                    for fut in as_completed(futures):
                        try:
                            fut.result()
                        except CorruptFileError as err:
                            failed(err)
                        if bar is not None:
                            bar.update(1)
                except BaseException:
                    for f in futures:
                        f.cancel()
                    raise
    finally:
        if bar is not None:
            bar.close()
    if corrupt:
        warnings.warn(f"skip_corrupt: {len(corrupt)} cover(s) not embedded: {'; '.join(corrupt)}",
                      CorruptFileWarning, stacklevel=2)
    return stegos, len(todo) - len(corrupt)


# --------------------------------------------------------------------------------------
# pairs


def _stem(path: str) -> str:
    return Path(path).stem


def match_by_name(cover_files: Sequence[str], stego_dir: str, arg: str = "stego_dir") -> list[str]:
    """The stego file for each cover, matched by file stem in ``stego_dir`` (any image suffix).
    ``ValueError`` naming ``arg`` and the files when a cover has no stego or a stego no cover."""
    stegos = list_images(stego_dir, arg)
    by_stem: dict[str, str] = {}
    for s in stegos:
        stem = _stem(s)
        if stem in by_stem:
            raise ValueError(f"{arg}: two stego files share the stem {stem!r}: {by_stem[stem]!r} and {s!r}")
        by_stem[stem] = s
    covers = {_stem(c) for c in cover_files}
    missing = [os.path.basename(c) for c in cover_files if _stem(c) not in by_stem]
    extra = [os.path.basename(s) for s in stegos if _stem(s) not in covers]
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"no stego image for cover(s) {missing[:5]}{' ...' if len(missing) > 5 else ''}")
        if extra:
            parts.append(f"stego image(s) {extra[:5]}{' ...' if len(extra) > 5 else ''} match no cover")
        raise ValueError(f"{arg}: cover and stego file names do not match in {stego_dir!r}: " + "; ".join(parts))
    return [by_stem[_stem(c)] for c in cover_files]


def _to_tensor(pixels: np.ndarray, channels: int, path: str, arg: str) -> torch.Tensor:
    """uint8 ``[H, W]`` / ``[H, W, 3]`` -> float32 ``[channels, H, W]`` on the 0..255 scale."""
    have = 1 if pixels.ndim == 2 else pixels.shape[2]
    if have != channels:
        kind = "grey" if have == 1 else "colour"
        raise ValueError(f"{arg}: {path!r} is a {kind} image ({have} channel(s)) but the model takes "
                         f"{channels}; converting it would destroy the stego signal")
    t = torch.from_numpy(pixels)
    t = t.unsqueeze(0) if t.ndim == 2 else t.permute(2, 0, 1)
    return t.float()


class StegoPairs(Dataset):
    """Cover/stego groups: item ``i`` is ``(images [K+1, C, H, W] float32 0..255, labels [K+1])``,
    the cover of ``covers[i]`` first (label 0), then its stego from each list of ``stegos`` (label k).

    ``crop``: a ``crop x crop`` window at the same place in every image of the item (random when
    ``train``, else centred; None: the whole image). ``augment`` (with ``train``) also draws a
    random rot90 and a horizontal flip, once per item, applied to every image of it. A cover and its stego of
    different sizes raise ``ValueError`` naming both files. A file of the item that cannot be read
    (or a size mismatch) raises :class:`~zoo.data.corrupt.CorruptFileError` naming it, or with
    ``skip_corrupt`` makes the whole item None (left out of its batch and counted).
    """

    def __init__(self, covers: Sequence[str], stegos: Sequence[Sequence[str]], channels: int = 1,
                 crop: int | None = None, train: bool = False, augment: bool = True,
                 skip_corrupt: bool = False) -> None:
        if any(len(s) != len(covers) for s in stegos):
            raise ValueError("stegos: every list must have one file per cover")
        self.covers = list(covers)
        self.stegos = [list(s) for s in stegos]
        self.files = self.covers
        self.channels, self.crop, self.train, self.augment = channels, crop, train, augment
        self.corrupt = CorruptItems(skip_corrupt, len(self.covers))

    def __len__(self) -> int:
        return len(self.covers)

    def _window(self, h: int, w: int, path: str) -> tuple[int, int, int, int]:
        c = self.crop
        if c is None:
            return 0, 0, h, w
        if h < c or w < c:
            raise ValueError(f"crop_size: {c} is larger than the image {path!r} ({h}x{w})")
        if self.train:
            top = int(torch.randint(0, h - c + 1, ()))
            left = int(torch.randint(0, w - c + 1, ()))
        else:
            top, left = (h - c) // 2, (w - c) // 2
        return top, left, c, c

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor] | None:
        return self.corrupt.read(i, lambda: self._item(i))

    def _item(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        paths = [self.covers[i]] + [s[i] for s in self.stegos]
        args = ["cover_dir"] + ["stego_dir"] * len(self.stegos)
        pixels = [read_pixels(p, a) for p, a in zip(paths, args)]
        for p, x in zip(paths[1:], pixels[1:]):
            if x.shape != pixels[0].shape:
                raise CorruptFileError(p, f"stego_dir: {p!r} ({x.shape}) and its cover {paths[0]!r} "
                                          f"({pixels[0].shape}) differ in size")
        imgs = torch.stack([_to_tensor(x, self.channels, p, a) for x, p, a in zip(pixels, paths, args)])
        top, left, h, w = self._window(imgs.shape[-2], imgs.shape[-1], paths[0])
        imgs = imgs[..., top:top + h, left:left + w]
        if self.train and self.augment:  # one draw per item: every image of the pair gets the same transform
            k = int(torch.randint(0, 4, ()))
            if k:
                imgs = torch.rot90(imgs, k, dims=(-2, -1))
            if bool(torch.randint(0, 2, ())):
                imgs = imgs.flip(-1)
        labels = torch.arange(len(paths), dtype=torch.int64)
        return imgs.contiguous(), labels


def pair_collate(batch: Sequence[tuple[torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor]:
    """``B`` items of :class:`StegoPairs` -> ``(x [B*(K+1), C, H, W], y [B*(K+1)])``: the groups
    one after the other, so with one algorithm ``x[2i]`` is a cover and ``x[2i+1]`` its stego."""
    x = torch.stack([b[0] for b in batch])
    y = torch.stack([b[1] for b in batch])
    return x.flatten(0, 1), y.flatten()


class ImagesForPrediction(Dataset):
    """A flat folder of images for ``predict``: item ``(image [C, H, W] float32 0..255, index)``,
    centre-cropped to ``crop`` when given; ``files`` lists them. A corrupt file raises naming it,
    or with ``skip_corrupt`` gives None."""

    def __init__(self, root: str, channels: int, crop: int | None = None, skip_corrupt: bool = False) -> None:
        self.files = list_images(root, "predict_dir")
        self.channels, self.crop = channels, crop
        self.corrupt = CorruptItems(skip_corrupt, len(self.files))

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int] | None:
        return self.corrupt.read(i, lambda: self._item(i))

    def _item(self, i: int) -> tuple[torch.Tensor, int]:
        path = self.files[i]
        x = _to_tensor(read_pixels(path, "predict_dir"), self.channels, path, "predict_dir")
        if self.crop is not None:
            h, w = x.shape[-2:]
            if h < self.crop or w < self.crop:
                raise ValueError(f"crop_size: {self.crop} is larger than the image {path!r} ({h}x{w})")
            top, left = (h - self.crop) // 2, (w - self.crop) // 2
            x = x[:, top:top + self.crop, left:left + self.crop]
        return x.contiguous(), i


# --------------------------------------------------------------------------------------
# the embedded default


def _photos(colour: bool) -> list[tuple[str, np.ndarray]]:
    """The photographs shipped inside scikit-image and scikit-learn, as uint8 arrays: RGB ones
    when ``colour``, else every photo in grey (ITU-R 601 luma, rounded)."""
    import skimage.data as sd
    from sklearn.datasets import load_sample_images

    grey_names = ["camera", "brick", "grass", "gravel", "moon", "coins", "clock", "cell"]
    rgb_names = ["astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field", "immunohistochemistry",
                 "retina"]
    rgb = [(n, getattr(sd, n)()) for n in rgb_names]
    left, right, _ = sd.stereo_motorcycle()
    rgb += [("motorcycle_left", left), ("motorcycle_right", right)]
    sk = load_sample_images()
    rgb += [(Path(f).stem, im) for f, im in zip(sk.filenames, sk.images)]
    if colour:
        return rgb
    grey = [(n, getattr(sd, n)()) for n in grey_names]
    weights = np.array([0.299, 0.587, 0.114])
    grey += [(n, np.clip(np.rint(im[..., :3].astype(np.float64) @ weights), 0, 255).astype(np.uint8))
             for n, im in rgb]
    return grey


def default_covers(root: str | os.PathLike, colour: bool = False, size: int = 256) -> list[str]:
    """Write the embedded default covers once and return their paths (sorted).

    Every non-overlapping ``size x size`` crop of the bundled photos (:func:`_photos`) that is
    not mostly flat or saturated (grey-level std >= 4, at most 5% of pixels at 0 or 255), and
    its horizontal mirror, as PNG files ``<photo>_r<row>c<col>__<0|m>.png`` in ``root``. The
    part before ``__`` names the crop, so the mirror and the crop land on the same side of a
    train/val split. Written to a temporary folder renamed into place, with a marker file: an
    interrupted run never leaves a half-written set.
    """
    root = Path(root)
    marker = root / "COMPLETE.json"
    if not marker.is_file():
        root.parent.mkdir(parents=True, exist_ok=True)
        tmp = root.parent / f".{root.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        tmp.mkdir()
        try:
            n = 0
            for name, im in _photos(colour):
                h, w = im.shape[:2]
                for r in range(h // size):
                    for c in range(w // size):
                        crop = np.ascontiguousarray(im[r * size:(r + 1) * size, c * size:(c + 1) * size])
                        grey = crop if crop.ndim == 2 else crop.mean(axis=2)
                        if grey.std() < 4.0 or np.mean((crop == 0) | (crop == 255)) > 0.05:
                            continue
                        for tag, pixels in (("0", crop), ("m", crop[:, ::-1])):
                            Image.fromarray(np.ascontiguousarray(pixels)).save(tmp / f"{name}_r{r}c{c}__{tag}.png")
                            n += 1
            (tmp / "COMPLETE.json").write_text(json.dumps({"colour": colour, "size": size, "covers": n}))
            if root.exists() and not marker.is_file():
                shutil.rmtree(root, ignore_errors=True)
            try:
                os.rename(tmp, root)
            except OSError:
                if not marker.is_file():
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return sorted(str(p) for p in root.iterdir() if is_image_file(p))


# --------------------------------------------------------------------------------------
# datamodule


_GROUP = re.compile(r"^(.*?)__")


def group_of(path: str) -> str:
    """The split group of a cover file: the part of its stem before ``__`` when it has one
    (e.g. crops of one image), else the whole stem."""
    stem = _stem(path)
    m = _GROUP.match(stem)
    return m.group(1) if m else stem


def split_pairs(files: Sequence[str], val_fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """``(train indices, val indices)`` of ``files``: a deterministic random split of their groups
    (:func:`group_of`), so all files of a group, and every pair, land on one side."""
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction: expected a value in (0, 1), got {val_fraction}")
    groups = sorted({group_of(f) for f in files})
    if len(groups) < 2:
        raise ValueError(f"val_fraction: {len(files)} cover(s) in {len(groups)} group(s) cannot be split "
                         "into train and val")
    perm = torch.randperm(len(groups), generator=torch.Generator().manual_seed(seed)).tolist()
    n_val = min(len(groups) - 1, max(1, round(len(groups) * val_fraction)))
    val_groups = {groups[i] for i in perm[:n_val]}
    train = [i for i, f in enumerate(files) if group_of(f) not in val_groups]
    val = [i for i, f in enumerate(files) if group_of(f) in val_groups]
    return train, val


class StegoDataModule(SplitDataModule):
    """Cover/stego pairs for a steganalyser (:class:`zoo.tasks.Steganalyzer`).

    Stego images come from one of:

    * ``stego_dir``: a folder (or a list of folders, one per algorithm) with one stego per
      cover, matched by file stem;
    * ``embed``: ``{"algorithm": "wow" | "suniward" | "hill" | "lsbm", "payload": bpp,
      "seed": s}`` (or a list of them): each cover is embedded once with conseal, in
      ``embed_workers`` processes with a progress bar, and cached as PNG under ``cache_dir``
      (:func:`cache_folder`); later runs reuse the cache.

    With ``cover_dir=None`` the covers are the embedded default (:func:`default_covers`:
    256x256 crops of the photos bundled with scikit-image and scikit-learn, grey or colour
    after ``channels``), written once under ``data_dir``, and ``embed`` defaults to LSB
    matching at 1 bpp.

    With K stego sources the classes are ``["cover", <source 1>, ..., <source K>]`` (the CLI
    passes them to the model); K = 1 gives ``["cover", "stego"]``. Batches are
    ``(x [N, C, H, W] float32 0..255, y [N])`` made of whole groups (:func:`pair_collate`):
    ``batch_size`` counts images and must be a multiple of K + 1. Pairs are split into train
    and val by :func:`split_pairs` (``val_fraction``, ``seed``); a pair never spans both.
    Training draws a random ``crop_size`` window (None: whole images, which must then share one
    size) and, with ``augment``, rot90 and a flip, the same for every image of a pair; val,
    test and predict use centred crops. ``channels`` defaults to the model's input channels
    (``arch``, linked by the CLI), else 1.

    A cover or stego file that cannot be read raises ``ValueError`` naming it when its pair is
    read; with ``skip_corrupt`` the pair is left out of its batch with a warning and counted
    (``data/skipped_<stage>`` per epoch, :class:`zoo.callbacks.SkippedItems`), and a corrupt
    cover is not embedded.
    """

    def __init__(
        self,
        cover_dir: str | None = None,
        stego_dir: str | list[str] | None = None,
        embed: dict | list[dict] | None = None,
        batch_size: int = 32,
        val_fraction: float = 0.2,
        num_workers: int = 0,
        cache_dir: str = "runs/data/stego_cache",
        crop_size: int | None = None,
        augment: bool = True,
        channels: int | None = None,
        arch: str | None = None,
        predict_dir: str | None = None,
        embed_workers: int | None = None,
        data_dir: str = "runs/data",
        seed: int = 0,
        skip_corrupt: bool = False,
    ) -> None:
        super().__init__()
        check_skip_corrupt(skip_corrupt)
        if stego_dir is not None and embed is not None:
            raise ValueError("stego_dir, embed: give one source of stego images, not both")
        if cover_dir is not None and stego_dir is None and embed is None:
            raise ValueError("stego_dir, embed: with cover_dir, give a stego_dir matched by file name "
                             "or an embed dict ({algorithm, payload, seed})")
        if cover_dir is None and stego_dir is not None:
            raise ValueError("stego_dir: needs its cover_dir")
        if cover_dir is not None and not os.path.isdir(cover_dir):
            raise ValueError(f"cover_dir: {cover_dir!r} is not a directory")
        if cover_dir is None and embed is None:
            embed = dict(DEFAULT_EMBED)
        self._embeds = check_embed(embed) if embed is not None else None
        stego_dirs = [stego_dir] if isinstance(stego_dir, str) else list(stego_dir or [])
        for d in stego_dirs:
            if not os.path.isdir(d):
                raise ValueError(f"stego_dir: {d!r} is not a directory")
        self._stego_dirs = stego_dirs
        if channels is None:
            channels = get_spec(arch).input_size[0] if arch is not None else 1
        if channels not in (1, 3):
            raise ValueError(f"channels: expected 1 (grey) or 3 (colour), got {channels}")
        k = len(self._embeds) if self._embeds is not None else len(stego_dirs)
        if isinstance(batch_size, bool) or batch_size < k + 1 or batch_size % (k + 1):
            raise ValueError(f"batch_size: expected a positive multiple of {k + 1} (whole cover/stego "
                             f"groups), got {batch_size}")
        if crop_size is not None and crop_size < 1:
            raise ValueError(f"crop_size: expected >= 1 or None, got {crop_size}")
        if num_workers < 0:
            raise ValueError(f"num_workers: expected >= 0, got {num_workers}")
        if not 0.0 < val_fraction < 1.0:
            raise ValueError(f"val_fraction: expected a value in (0, 1), got {val_fraction}")
        self.save_hyperparameters()
        self.channels = channels
        if self._embeds is not None:
            names = [embed_key(e) for e in self._embeds]
        else:
            names = [os.path.basename(os.path.normpath(d)) or d for d in stego_dirs]
        self.classes: list[str] = ["cover", "stego"] if k == 1 else ["cover", *names]
        self.stego_files: list[list[str]] | None = None
        self.cover_files: list[str] | None = None

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def group_size(self) -> int:
        """Images per pair: 1 + the number of stego sources."""
        return len(self.classes)

    def _covers(self) -> list[str]:
        hp = self.hparams
        if hp.cover_dir is not None:
            return list_images(hp.cover_dir, "cover_dir")
        kind = "colour" if self.channels == 3 else "grey"
        return default_covers(Path(hp.data_dir) / f"stego_photos_{kind}_256", colour=self.channels == 3)

    def prepare_data(self) -> None:
        """Write the default covers and embed every cover (both cached: a second run does nothing)."""
        self._resolve()

    def _resolve(self) -> tuple[list[str], list[list[str]]]:
        if self.cover_files is not None and self.stego_files is not None:
            return self.cover_files, self.stego_files
        hp = self.hparams
        covers = self._covers()
        if self._embeds is not None:
            cover_root = hp.cover_dir or os.path.dirname(covers[0])
            stegos = [embed_covers(covers, cache_folder(hp.cache_dir, cover_root, e), e, hp.embed_workers,
                                   skip_corrupt=hp.skip_corrupt)[0]
                      for e in self._embeds]
        else:
            stegos = [match_by_name(covers, d) for d in self._stego_dirs]
        self.cover_files, self.stego_files = covers, stegos
        return covers, stegos

    def setup(self, stage: str | None = None) -> None:
        hp = self.hparams
        covers, stegos = self._resolve()
        train_idx, val_idx = split_pairs(covers, hp.val_fraction, hp.seed)

        def subset(idx: list[int], train: bool) -> StegoPairs:
            return StegoPairs([covers[i] for i in idx], [[s[i] for i in idx] for s in stegos], self.channels,
                              hp.crop_size, train=train, augment=hp.augment, skip_corrupt=hp.skip_corrupt)

        self.train_set = subset(train_idx, True)
        self.val_set = subset(val_idx, False)
        self.test_set = self.val_set
        self.predict_set = (ImagesForPrediction(hp.predict_dir, self.channels, hp.crop_size, hp.skip_corrupt)
                            if hp.predict_dir is not None else self.val_set)

    def train_collate(self) -> Callable:
        return SkipCollate(pair_collate)

    def train_batch_size(self) -> int:
        """Pairs (cover + its stegos) per training batch: ``batch_size // group_size``."""
        return self.hparams.batch_size // self.group_size

    def _loader(self, ds: Dataset | None, shuffle: bool, collate_fn: Callable | None = None) -> DataLoader:
        if ds is None:
            raise RuntimeError(f"{type(self).__name__}: call setup() for this stage first")
        hp = self.hparams
        pairs = isinstance(ds, StegoPairs)
        return DataLoader(ds, batch_size=hp.batch_size // self.group_size if pairs else hp.batch_size,
                          shuffle=shuffle, num_workers=hp.num_workers,
                          collate_fn=SkipCollate(pair_collate if pairs else None),
                          persistent_workers=hp.num_workers > 0)


__all__ = [
    "ALGORITHMS",
    "DEFAULT_EMBED",
    "ImagesForPrediction",
    "StegoDataModule",
    "StegoPairs",
    "cache_folder",
    "check_embed",
    "default_covers",
    "embed_covers",
    "embed_image",
    "embed_key",
    "group_of",
    "match_by_name",
    "pair_collate",
    "read_pixels",
    "split_pairs",
]
