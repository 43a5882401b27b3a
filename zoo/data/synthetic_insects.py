"""Generated insect-tray scenes in the AI识虫 insects layout (JPEG + VOC XML).

The embedded default of :class:`zoo.data.DetectionDataModule`: written to disk in the
real format and read back by :class:`zoo.data.VOCDetection`, like a user's data.

Each of the 7 classes has its own body shape, colour and texture, so that a small
detector learns them quickly:

========== ===================================== ============================
class      shape                                 colour / texture
========== ===================================== ============================
Boerner    oval (length/width 1.7), small head   brown, plain
Leconte    3 segments, 6 legs, 2 antennae        black, plain
Linnaeus   round (1.1), black head               red, black spots
acuminatus long thin spindle (4.5), pointed       green, dark mid-line
armandi    oval (2.0), 2 antennae                orange, dark cross stripes
coleoptera oval (1.5), 6 legs                    dark blue, 2 pale lengthwise stripes
linnaeus   oval (1.3), black head                black, white spots
========== ===================================== ============================

Insects are 6%–20% of the image side long, rotated by any angle, 1–15 per image, on a
light tray (plain colour, slight gradient and noise, sometimes a darker frame).
Overlap is mild: a new insect may cover at most 15% of its own pixels and no older
insect loses more than 25% of its pixels. Every box written is the tight box of the
insect's visible pixels in the final label map (0-based pixel edges: ``xmax`` is the
last column + 1). Rendering is analytic in numpy (no rotation of bitmaps), so 300
images of 320 px take a few seconds.
"""
from __future__ import annotations

import math
import os
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
from PIL import Image

INSECT_CLASSES = ("Boerner", "Leconte", "Linnaeus", "acuminatus", "armandi", "coleoptera", "linnaeus")

GENERATOR_VERSION = 1  # bump when the rendering changes: it is part of the cache key

#: per class: body kind, length/width ratio, base RGB, texture, texture RGB, legs, antennae
_CLASS_STYLE = (
    dict(body="oval", aspect=1.7, rgb=(112, 70, 36), texture="head", tex_rgb=(62, 38, 18), legs=False, antennae=False),
    dict(body="segments", aspect=2.4, rgb=(34, 34, 40), texture="plain", tex_rgb=(0, 0, 0), legs=True, antennae=True),
    dict(body="oval", aspect=1.1, rgb=(205, 42, 32), texture="spots", tex_rgb=(20, 18, 18), legs=False, antennae=False),
    dict(body="spindle", aspect=4.5, rgb=(62, 124, 50), texture="midline", tex_rgb=(28, 60, 22), legs=False,
         antennae=False),
    dict(body="oval", aspect=2.0, rgb=(218, 142, 30), texture="cross", tex_rgb=(64, 36, 10), legs=False, antennae=True),
    dict(body="oval", aspect=1.5, rgb=(38, 58, 142), texture="lengthwise", tex_rgb=(176, 192, 232), legs=True,
         antennae=False),
    dict(body="oval", aspect=1.3, rgb=(30, 30, 30), texture="white_spots", tex_rgb=(238, 238, 238), legs=False,
         antennae=False),
)
_LEG_RGB = (24, 22, 20)


def _segment_dist(u: np.ndarray, v: np.ndarray, a: tuple[float, float], b: tuple[float, float]) -> np.ndarray:
    """Distance of points (u, v) to the segment a-b."""
    du, dv = b[0] - a[0], b[1] - a[1]
    t = np.clip(((u - a[0]) * du + (v - a[1]) * dv) / (du * du + dv * dv), 0.0, 1.0)
    return np.hypot(u - (a[0] + t * du), v - (a[1] + t * dv))


def _appendages(style: dict, half_len: float, half_wid: float) -> list[tuple[tuple[float, float], tuple[float, float]]]:
    """Leg and antenna segments in the insect frame (u along the body, head at +u)."""
    segs = []
    if style["legs"]:
        for pos in (-0.35, 0.0, 0.35):
            u0, lean = pos * half_len, (0.2 if pos >= 0 else -0.2) * half_len
            for side in (-1.0, 1.0):
                segs.append(((u0, 0.6 * side * half_wid), (u0 + lean, side * (1.55 * half_wid + 1.5))))
    if style["antennae"]:
        for side in (-1.0, 1.0):
            segs.append(((0.85 * half_len, 0.2 * side * half_wid),
                         (half_len + 0.3 * half_len + 1.0, side * (0.5 * half_wid + 1.5))))
    return segs


def _render_insect(cls: int, length: float, angle: float, rng: np.random.Generator):
    """One insect centred at the origin: ``(mask [h, w] bool, rgb [h, w, 3] float, (hy, hx))``.

    The arrays cover pixel offsets ``[-hy, hy] x [-hx, hx]`` around the centre; the body
    axis is turned by ``angle`` radians. Each pixel is mapped back into the insect's own
    frame and tested against the analytic shape, so nothing is rotated as a bitmap.
    """
    style = _CLASS_STYLE[cls]
    half_len = length / 2.0
    half_wid = max(1.5, length / style["aspect"] / 2.0)
    segs = _appendages(style, half_len, half_wid)
    # extent of the unrotated insect (body + appendages), then of the rotated one
    ext_u = max([half_len] + [abs(p[0]) for s in segs for p in s]) + 2.0
    ext_v = max([half_wid] + [abs(p[1]) for s in segs for p in s]) + 2.0
    c, s = math.cos(angle), math.sin(angle)
    hx = int(math.ceil(abs(c) * ext_u + abs(s) * ext_v))
    hy = int(math.ceil(abs(s) * ext_u + abs(c) * ext_v))
    ys, xs = np.mgrid[-hy:hy + 1, -hx:hx + 1].astype(np.float32)
    u = xs * c - ys * s
    v = xs * s + ys * c
    un, vn = u / half_len, v / half_wid

    kind = style["body"]
    if kind == "oval":
        body = un * un + vn * vn <= 1.0
    elif kind == "spindle":
        body = (np.abs(un) <= 1.0) & (np.abs(vn) <= np.clip(1.0 - un * un, 0.0, None) ** 0.8)
    else:  # segments: abdomen, thorax, head along u
        body = np.zeros_like(un, dtype=bool)
        for cu, ru, rv in ((-0.45, 0.55, 1.0), (0.32, 0.25, 0.75), (0.8, 0.2, 0.55)):
            body |= ((un - cu) / ru) ** 2 + (vn / rv) ** 2 <= 1.0

    base = np.asarray(style["rgb"], np.float32) + rng.uniform(-12, 12, 3).astype(np.float32)
    shade = 1.0 - 0.3 * np.clip(vn * vn, 0.0, 1.0)  # darker towards the sides: a rounded look
    rgb = base[None, None, :] * shade[..., None]
    tex_rgb = np.asarray(style["tex_rgb"], np.float32)
    tex = style["texture"]
    if tex == "head":
        paint = ((un - 0.82) / 0.22) ** 2 + (vn / 0.5) ** 2 <= 1.0
    elif tex in ("spots", "white_spots"):
        paint = np.zeros_like(body)
        radius = 0.2 if tex == "spots" else 0.17
        for cu, cv in rng.uniform(-0.6, 0.6, (int(rng.integers(4, 8)), 2)):
            paint |= (un - cu) ** 2 + (vn - cv) ** 2 <= radius * radius
        if tex == "spots":  # and a black head
            paint |= ((un - 0.8) / 0.25) ** 2 + (vn / 0.6) ** 2 <= 1.0
    elif tex == "midline":
        paint = np.abs(vn) <= 0.18
    elif tex == "cross":
        period = 0.36
        paint = (np.mod(un + 1.0, period) < period * 0.45) & (un < 0.75)
    elif tex == "lengthwise":
        paint = (np.abs(np.abs(vn) - 0.45) <= 0.13) & (un < 0.7)
    else:
        paint = np.zeros_like(body)
    rgb = np.where(paint[..., None], tex_rgb * shade[..., None], rgb)

    mask = body
    if segs:
        thick = max(0.7, 0.06 * half_wid * 2.0)
        legs = np.zeros_like(body)
        for a, b in segs:
            legs |= _segment_dist(u, v, a, b) <= thick
        rgb = np.where((legs & ~body)[..., None], np.asarray(_LEG_RGB, np.float32), rgb)
        mask = body | legs
    return mask, rgb, (hy, hx)


def _tray(size: int, rng: np.random.Generator) -> np.ndarray:
    """A light tray ``[size, size, 3]`` float: plain colour, slight gradient and noise, maybe a frame."""
    base = np.asarray((226, 222, 212), np.float32) + rng.uniform(-10, 10, 3).astype(np.float32)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / max(size - 1, 1)
    theta = rng.uniform(0, 2 * math.pi)
    ramp = (xx - 0.5) * math.cos(theta) + (yy - 0.5) * math.sin(theta)
    img = base[None, None, :] + (rng.uniform(4, 10) * ramp)[..., None]
    img += rng.normal(0.0, 2.5, (size, size, 3)).astype(np.float32)
    if rng.random() < 0.5:  # a darker frame along the edges
        t = max(2, int(round(size * rng.uniform(0.015, 0.035))))
        frame = np.zeros((size, size), bool)
        frame[:t], frame[-t:], frame[:, :t], frame[:, -t:] = True, True, True, True
        img[frame] -= rng.uniform(18, 35)
    return img


def render_scene(size: int, rng: np.random.Generator, max_insects: int = 15, min_insects: int = 1):
    """One scene: ``(image [size, size, 3] uint8, boxes [n, 4] int xyxy, labels [n] int)``.

    Boxes are the tight boxes of each insect's visible pixels (0-based pixel edges). The scene
    tries to place a uniform random number of insects in ``[min_insects, max_insects]`` (an
    insect that finds no free place in 20 tries is left out).
    """
    img = _tray(size, rng)
    label_map = np.zeros((size, size), np.int32)
    areas: list[int] = []  # rendered pixel count per placed insect
    visible: list[int] = []
    windows: list[tuple[int, int, int, int]] = []
    classes: list[int] = []
    for _ in range(int(rng.integers(min_insects, max_insects + 1))):
        cls = int(rng.integers(len(INSECT_CLASSES)))
        length = rng.uniform(0.06, 0.20) * size
        mask, rgb, (hy, hx) = _render_insect(cls, length, rng.uniform(0, 2 * math.pi), rng)
        area = int(mask.sum())
        if area == 0 or 2 * hx + 1 > size or 2 * hy + 1 > size:
            continue
        for _attempt in range(20):
            cx, cy = int(rng.integers(hx, size - hx)), int(rng.integers(hy, size - hy))
            y0, x0 = cy - hy, cx - hx
            region = label_map[y0:y0 + mask.shape[0], x0:x0 + mask.shape[1]]
            under = region[mask]
            covered = np.bincount(under, minlength=len(areas) + 1)
            if covered[1:].sum() > 0.15 * area:
                continue
            ok = all(visible[j] - covered[j + 1] >= 0.75 * areas[j] for j in np.nonzero(covered[1:])[0])
            if not ok:
                continue
            for j in np.nonzero(covered[1:])[0]:
                visible[j] -= int(covered[j + 1])
            region[mask] = len(areas) + 1
            patch = img[y0:y0 + mask.shape[0], x0:x0 + mask.shape[1]]
            patch[mask] = rgb[mask] + rng.normal(0.0, 3.0, (area, 3)).astype(np.float32)
            areas.append(area)
            visible.append(area)
            windows.append((y0, x0, y0 + mask.shape[0], x0 + mask.shape[1]))
            classes.append(cls)
            break
    boxes, labels = [], []
    for j, (y0, x0, y1, x1) in enumerate(windows):
        m = label_map[y0:y1, x0:x1] == j + 1
        rows, cols = np.nonzero(m.any(axis=1))[0], np.nonzero(m.any(axis=0))[0]
        if len(rows) == 0:
            continue
        boxes.append((x0 + cols[0], y0 + rows[0], x0 + cols[-1] + 1, y0 + rows[-1] + 1))
        labels.append(classes[j])
    image = np.clip(np.rint(img), 0, 255).astype(np.uint8)
    return image, np.asarray(boxes, np.int64).reshape(-1, 4), np.asarray(labels, np.int64)


def write_voc_xml(path: str | os.PathLike, filename: str, width: int, height: int,
                  boxes, labels, classes=INSECT_CLASSES) -> None:
    """Write one VOC annotation (``difficult`` 0 for every object)."""
    root = ET.Element("annotation")
    ET.SubElement(root, "folder").text = "insects"
    ET.SubElement(root, "filename").text = filename
    size = ET.SubElement(root, "size")
    ET.SubElement(size, "width").text = str(int(width))
    ET.SubElement(size, "height").text = str(int(height))
    ET.SubElement(size, "depth").text = "3"
    for box, label in zip(boxes, labels):
        obj = ET.SubElement(root, "object")
        ET.SubElement(obj, "name").text = classes[int(label)]
        ET.SubElement(obj, "pose").text = "Unspecified"
        ET.SubElement(obj, "truncated").text = "0"
        ET.SubElement(obj, "difficult").text = "0"
        bb = ET.SubElement(obj, "bndbox")
        for key, value in zip(("xmin", "ymin", "xmax", "ymax"), box):
            ET.SubElement(bb, key).text = str(int(value))
    tree = ET.ElementTree(root)
    ET.indent(tree)
    tree.write(path, encoding="utf-8", xml_declaration=False)


def synthetic_insects(root: str | os.PathLike, n_train: int = 200, n_val: int = 40, size: int = 320,
                      seed: int = 0, train_insects: tuple[int, int] | list[int] | None = None) -> Path:
    """Write ``n_train`` + ``n_val`` generated scenes under ``root`` in the insects layout.

    ``root/{train,val}/images/NNNNN.jpeg`` (quality 90) and
    ``root/{train,val}/annotations/xmls/NNNNN.xml``. Deterministic given ``seed``
    (each image has its own random stream, so a split's images do not depend on the
    other split's size). ``train_insects = [lo, hi]``: the number of insects per training
    scene (default 1-15, as in val; val scenes are always 1-15). Returns ``Path(root)``.
    """
    if train_insects is not None:
        if len(train_insects) != 2 or not 1 <= int(train_insects[0]) <= int(train_insects[1]):
            raise ValueError(f"train_insects: expected [lo, hi] with 1 <= lo <= hi, got {train_insects}")
        lo, hi = int(train_insects[0]), int(train_insects[1])
    if size < 64:
        raise ValueError(f"size: expected >= 64 pixels, got {size}")
    if n_train < 1 or n_val < 1:
        raise ValueError(f"n_train, n_val: expected >= 1 each, got {n_train}, {n_val}")
    root = Path(root)
    for split_id, (split, n) in enumerate((("train", n_train), ("val", n_val))):
        img_dir, xml_dir = root / split / "images", root / split / "annotations" / "xmls"
        img_dir.mkdir(parents=True, exist_ok=True)
        xml_dir.mkdir(parents=True, exist_ok=True)
        for i in range(n):
            rng = np.random.default_rng([seed, split_id, i])
            if split == "train" and train_insects is not None:
                image, boxes, labels = render_scene(size, rng, max_insects=hi, min_insects=lo)
            else:
                image, boxes, labels = render_scene(size, rng)
            stem = f"{i:05d}"
            Image.fromarray(image).save(img_dir / f"{stem}.jpeg", quality=90, subsampling=0)
            write_voc_xml(xml_dir / f"{stem}.xml", f"{stem}.jpeg", size, size, boxes, labels)
    return root
