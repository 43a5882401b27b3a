"""Detection data: VOC XML (AI识虫 insects layout), COCO JSON or YOLO txt annotations, letterbox
transforms, mosaic, batches, anchors.

Layouts of one split (``root/{split}``, split = train / val / test), chosen by
``DetectionDataModule(annotations=...)`` (``"auto"``: the one format the split holds)::

    voc   {split}/annotations/xmls/<stem>.xml + {split}/images/<stem>.jpeg (.jpg, .png, ...)
    coco  {split}/annotations/instances_{split}.json (or the only .json there) + {split}/images/<file_name>
          images [{id, file_name, width, height}], annotations [{image_id, category_id,
          bbox [x, y, w, h] (top-left corner and size, px), iscrowd}], categories [{id, name}]
    yolo  {split}/labels/<stem>.txt + {split}/images/<stem>.jpeg (.jpg, .png, ...), optional
          {split}/classes.txt (or root/classes.txt): line ``class cx cy w h`` per object, centre and
          size over the image's width / height; ``class`` indexes classes.txt, else ``classes``;
          an image without a label file has no objects

COCO categories and classes.txt names are matched to ``classes`` by name. Every format is read
into the same raw record (:func:`read_voc_xml`'s, :mod:`zoo.data.detection_formats`), so the
same images give the same targets in each; COCO's ``iscrowd`` plays VOC's ``difficult``
(YOLO txt has neither). :func:`write_coco` / :func:`write_yolo_txt` convert a split.

Batch format (train, val, test and predict alike)::

    images  float32 [B, 3, S, S] in [0, 1] (not normalised), letterboxed, gray (114) padding
    targets list of B dicts: "boxes" float32 [n, 4] xyxy pixels of the network input,
            "labels" int64 [n] (index into ``classes``), "iscrowd" int64 [n]
    metas   list of B dicts: "path" str, "orig_size" (h, w), "scale" float, "pad" (left, top)

A box maps back to the original image as ``orig = (net - pad) / scale`` (x with ``left``,
y with ``top``). Predict batches from ``predict_dir`` have empty targets. A mosaic training
item (:func:`mosaic4`) has the mosaic as its "original" (``orig_size`` (S, S)) and one more
meta key, "mosaic": the 4 image paths.

``difficult`` objects: with ``use_difficult=False`` they are removed from training
targets and kept in eval targets with ``iscrowd=1`` (torchmetrics' MeanAveragePrecision
then neither rewards nor penalises detections of them); with ``use_difficult=True`` they
are ordinary objects everywhere (``iscrowd=0``).
"""
from __future__ import annotations

import hashlib
import inspect
import json
import math
import os
import shutil
import uuid
import warnings
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor
from torch.utils.data import Dataset
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from ..ops.boxes import shape_iou
from .base import SplitDataModule
from .corrupt import CorruptFileError, CorruptFileWarning, CorruptItems, SkipCollate, check_skip_corrupt
from .detection_formats import (  # (read_coco_json and the writers: re-exported)
    COCOFile,
    check_annotations,
    class_ids,
    coco_file,
    image_size,
    images_by_stem,
    labels_dir,
    read_coco_json,
    read_yolo_txt,
    resolve_annotations,
    split_formats,
    write_coco,
    write_yolo_txt,
    yolo_class_names,
)
from .images import IMAGE_SUFFIXES, list_images, open_image
from .synthetic_insects import GENERATOR_VERSION, INSECT_CLASSES, synthetic_insects

PAD_VALUE = 114  # letterbox / affine / mosaic fill, of 255
BOX_TOLERANCE = 1.0  # pixels a VOC box may stick out of the image (1-based coordinates)


# --------------------------------------------------------------------------------------
# annotations


def read_voc_xml(path: str | os.PathLike, classes: Sequence[str] = INSECT_CLASSES) -> dict[str, Any]:
    """Parse one VOC annotation.

    Returns ``{"filename": str | None, "size": (width, height), "boxes": float32 [n, 4]
    xyxy pixels, "labels": int64 [n] (index into ``classes``), "difficult": bool [n]}``.
    Coordinates are taken as written; a box may stick out of the image by up to 1 px
    (VOC's 1-based coordinates) and is then clipped to it. A malformed file, a missing
    size or bndbox field, a coordinate that is not a finite number, a box outside the image or
    an empty box (x2 <= x1 or y2 <= y1) raises :class:`~zoo.data.corrupt.CorruptFileError` (a
    ``ValueError``) naming the file; an unknown class name raises a plain ``ValueError`` (the
    ``classes`` given do not fit the data: ``skip_corrupt`` never skips that).
    """
    path = os.fspath(path)
    try:
        root = ET.parse(path).getroot()
    except (ET.ParseError, OSError, UnicodeError) as err:
        raise CorruptFileError(path, f"annotation {path!r}: not a readable XML file: {err}") from err

    def number(node: ET.Element, tag: str, where: str) -> float:
        child = node.find(tag)
        if child is None or child.text is None or not child.text.strip():
            raise CorruptFileError(path, f"annotation {path!r}: {where} has no <{tag}>")
        try:
            value = float(child.text)
        except ValueError:
            value = math.nan
        if not math.isfinite(value):
            raise CorruptFileError(path, f"annotation {path!r}: {where} <{tag}> is not a number: {child.text!r}")
        return value

    size = root.find("size")
    if size is None:
        raise CorruptFileError(path, f"annotation {path!r}: no <size> element")
    width, height = number(size, "width", "<size>"), number(size, "height", "<size>")
    if width < 1 or height < 1 or width != int(width) or height != int(height):
        raise CorruptFileError(path, f"annotation {path!r}: <size> must be positive whole pixels, got "
                                     f"{width} x {height}")
    width, height = int(width), int(height)
    index = {name: i for i, name in enumerate(classes)}
    boxes, labels, difficult = [], [], []
    for k, obj in enumerate(root.findall("object")):
        where = f"object {k}"
        name_node = obj.find("name")
        name = name_node.text.strip() if name_node is not None and name_node.text else None
        if name is None:
            raise CorruptFileError(path, f"annotation {path!r}: {where} has no <name>")
        if name not in index:
            raise ValueError(f"annotation {path!r}: {where} has unknown class {name!r}; known classes: "
                             f"{', '.join(classes)}")
        bb = obj.find("bndbox")
        if bb is None:
            raise CorruptFileError(path, f"annotation {path!r}: {where} ({name}) has no <bndbox>")
        x1, y1, x2, y2 = (number(bb, t, f"{where} ({name}) <bndbox>") for t in ("xmin", "ymin", "xmax", "ymax"))
        if x2 <= x1 or y2 <= y1:
            raise CorruptFileError(path, f"annotation {path!r}: {where} ({name}) box {[x1, y1, x2, y2]} is empty "
                                         "(needs xmax > xmin and ymax > ymin)")
        tol = BOX_TOLERANCE
        if x1 < -tol or y1 < -tol or x2 > width + tol or y2 > height + tol:
            raise CorruptFileError(path, f"annotation {path!r}: {where} ({name}) box {[x1, y1, x2, y2]} lies "
                                         f"outside the {width} x {height} image")
        x1, y1, x2, y2 = max(x1, 0.0), max(y1, 0.0), min(x2, float(width)), min(y2, float(height))
        if x2 <= x1 or y2 <= y1:  # e.g. xmin = width, xmax = width + 1
            raise CorruptFileError(path, f"annotation {path!r}: {where} ({name}) box is empty once clipped to "
                                         f"the {width} x {height} image")
        diff = obj.find("difficult")
        try:
            is_difficult = diff is not None and diff.text is not None and int(float(diff.text)) != 0
        except (ValueError, OverflowError):
            raise CorruptFileError(path, f"annotation {path!r}: {where} ({name}) <difficult> is not a number: "
                                         f"{diff.text!r}") from None
        boxes.append((x1, y1, x2, y2))
        labels.append(index[name])
        difficult.append(is_difficult)
    fn = root.find("filename")
    return {
        "filename": fn.text.strip() if fn is not None and fn.text else None,
        "size": (width, height),
        "boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
        "labels": torch.tensor(labels, dtype=torch.int64),
        "difficult": torch.tensor(difficult, dtype=torch.bool),
    }


# --------------------------------------------------------------------------------------
# transforms


def letterbox_geometry(height: int, width: int, size: int) -> tuple[float, tuple[int, int], tuple[int, int]]:
    """``(scale, (left, top), (new_h, new_w))`` to fit a ``height x width`` image in ``size x size``."""
    scale = size / max(height, width)
    new_h, new_w = max(1, round(height * scale)), max(1, round(width * scale))
    return scale, ((size - new_w) // 2, (size - new_h) // 2), (new_h, new_w)


def to_original(boxes: Tensor, meta: dict[str, Any]) -> Tensor:
    """Map xyxy boxes from the letterboxed network input back to the original image
    (``(net - pad) / scale``, clipped to ``meta["orig_size"]`` when it is there)."""
    left, top = meta.get("pad", (0.0, 0.0))
    scale = float(meta.get("scale", 1.0))
    out = (boxes - boxes.new_tensor([left, top, left, top])) / scale
    if "orig_size" in meta:
        h, w = meta["orig_size"]
        out[:, 0::2] = out[:, 0::2].clamp(0, w)
        out[:, 1::2] = out[:, 1::2].clamp(0, h)
    return out


class Letterbox(v2.Transform):
    """Resize keeping the aspect ratio so the long side is ``size``, pad to ``size x size``.

    A torchvision v2 transform: images are padded with ``fill`` (of 255; scaled for float
    images), masks with 0; ``BoundingBoxes`` are scaled and shifted with them.
    :meth:`geometry` gives the ``scale`` and ``pad`` (left, top) it applies.
    """

    def __init__(self, size: int, fill: int = PAD_VALUE) -> None:
        super().__init__()
        if size < 1:
            raise ValueError(f"size: expected >= 1, got {size}")
        self.size, self.fill = int(size), fill

    def geometry(self, height: int, width: int) -> tuple[float, tuple[int, int]]:
        scale, pad, _ = letterbox_geometry(height, width, self.size)
        return scale, pad

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        sizes = {tuple(TF.get_size(x)) for x in flat_inputs
                 if isinstance(x, (tv_tensors.Image, tv_tensors.Mask, Image.Image))
                 or (isinstance(x, Tensor) and not isinstance(x, tv_tensors.TVTensor))}
        sizes |= {tuple(x.canvas_size) for x in flat_inputs if isinstance(x, tv_tensors.BoundingBoxes)}
        if len(sizes) != 1:
            raise ValueError(f"Letterbox: expected one image size in the sample, got {sorted(sizes)}")
        (h, w), = sizes
        _, (left, top), (new_h, new_w) = letterbox_geometry(h, w, self.size)
        return {"resize": [new_h, new_w], "padding": [left, top, self.size - new_w - left, self.size - new_h - top]}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        out = self._call_kernel(TF.resize, inpt, params["resize"], antialias=True)
        if isinstance(inpt, tv_tensors.Mask):
            fill: float = 0
        elif isinstance(inpt, Tensor) and inpt.is_floating_point():
            fill = self.fill / 255.0
        else:
            fill = self.fill
        return self._call_kernel(TF.pad, out, params["padding"], fill=fill)


def _labels_and_crowd(inputs: Any) -> tuple[Tensor, Tensor]:
    """SanitizeBoundingBoxes' labels_getter: the per-box tensors to filter with the boxes."""
    target = inputs[1]
    return target["labels"], target["iscrowd"]


class DetectionTransforms:
    """``(image, target) -> (image float32 [3, S, S] in [0, 1], target, {"scale", "pad"})``.

    ``image`` is a PIL image (fastest) or a uint8 ``[3, H, W]`` tensor; ``target`` holds ``boxes``
    (xyxy pixels), ``labels`` and ``iscrowd``. The image is letterboxed to ``img_size``
    first (so augmentation works at network resolution, cheap for 1,300 px photos), then,
    when the corresponding option is on: a random affine map (rotation up to ``degrees``,
    shift up to ``translate`` of the side, zoom in ``scale``: zoom-in crops, zoom-out
    pads with gray; boxes are the enclosing box of the mapped corners, clipped to the
    image), horizontal / vertical flips with probability ``hflip`` / ``vflip``, and
    brightness/contrast/saturation jitter of ``jitter``. With ``sanitize`` boxes smaller
    than ``min_size`` px on a side are dropped with their labels (set it for training).
    The returned ``scale`` / ``pad`` describe the letterbox only.
    """

    def __init__(
        self,
        img_size: int,
        degrees: float | tuple[float, float] = 0.0,
        translate: float = 0.0,
        scale: tuple[float, float] = (1.0, 1.0),
        hflip: float = 0.0,
        vflip: float = 0.0,
        jitter: float = 0.0,
        sanitize: bool = False,
        min_size: float = 2.0,
    ) -> None:
        self.img_size = int(img_size)
        self.letterbox = Letterbox(self.img_size)
        ops: list[Callable] = []
        rotate = any(float(d) != 0.0 for d in (degrees if isinstance(degrees, (tuple, list)) else (degrees,)))
        if rotate or translate or tuple(scale) != (1.0, 1.0):
            ops.append(v2.RandomAffine(degrees=degrees, translate=(translate, translate) if translate else None,
                                       scale=tuple(scale), interpolation=v2.InterpolationMode.BILINEAR,
                                       fill={tv_tensors.Mask: 0, "others": PAD_VALUE}))
        if hflip:
            ops.append(v2.RandomHorizontalFlip(hflip))
        if vflip:
            ops.append(v2.RandomVerticalFlip(vflip))
        if jitter:
            ops.append(v2.ColorJitter(brightness=jitter, contrast=jitter, saturation=jitter))
        self.augment = v2.Compose(ops) if ops else None
        self.sanitize = (v2.SanitizeBoundingBoxes(min_size=min_size, labels_getter=_labels_and_crowd)
                         if sanitize else None)

    def __call__(self, image: Image.Image | Tensor, target: dict[str, Tensor]) -> tuple[Tensor, dict, dict]:
        # PIL until the end: its resize / affine / enhance kernels are many times faster on CPU
        if not isinstance(image, Image.Image):
            image = tv_tensors.Image(image)  # not a pure tensor, so labels are never taken for the image
        h, w = TF.get_size(image)
        target = dict(target)
        target["boxes"] = tv_tensors.BoundingBoxes(target["boxes"].reshape(-1, 4), format="XYXY", canvas_size=(h, w))
        scale, pad = self.letterbox.geometry(h, w)
        image, target = self.letterbox(image, target)
        if self.augment is not None:
            image, target = self.augment(image, target)
        if self.sanitize is not None:
            image, target = self.sanitize(image, target)
        image = TF.to_dtype(TF.to_image(image), torch.float32, scale=True).as_subclass(Tensor)
        target["boxes"] = target["boxes"].as_subclass(Tensor).float()
        return image, target, {"scale": scale, "pad": pad}


def train_transforms(img_size: int, augment: bool = True, degrees: float | tuple[float, float] = 10.0,
                     translate: float = 0.1, scale: tuple[float, float] = (0.75, 1.25), hflip: float = 0.5,
                     vflip: float = 0.5, jitter: float = 0.25, min_size: float = 2.0) -> DetectionTransforms:
    """Training transforms: letterbox, the random augmentations when ``augment``, then sanitize."""
    if not augment:
        return DetectionTransforms(img_size, sanitize=True, min_size=min_size)
    return DetectionTransforms(img_size, degrees, translate, scale, hflip, vflip, jitter, sanitize=True,
                               min_size=min_size)


#: The random augmentations :func:`train_transforms` takes, and ``mosaic`` (the probability of a
#: 4-image mosaic, which the training dataset makes: :func:`mosaic4`), the keys of
#: ``DetectionDataModule(augment={...})``.
AUGMENT_OPTIONS = tuple(name for name in inspect.signature(train_transforms).parameters
                        if name not in ("img_size", "augment", "min_size")) + ("mosaic",)


def _check_known_keys(arg: str, given: dict | None, known) -> None:
    """``ValueError`` naming ``arg`` when the dict ``given`` has keys outside ``known``."""
    unknown = set(given or {}) - set(known)
    if unknown:
        raise ValueError(f"{arg}: unknown keys {sorted(unknown)}; known: {', '.join(known)}")


def eval_transforms(img_size: int) -> DetectionTransforms:
    """Eval / predict transforms: letterbox only (every box kept)."""
    return DetectionTransforms(img_size)


# --------------------------------------------------------------------------------------
# datasets


def _empty_target() -> dict[str, Tensor]:
    return {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64),
            "iscrowd": torch.zeros(0, dtype=torch.int64)}


def _open(path: str, min_size: int | None, target: dict[str, Tensor], annotation: str | None = None,
          size: tuple[int, int] | None = None, size_field: str = "<size>"
          ) -> tuple[Image.Image, tuple[int, int], dict[str, Tensor]]:
    """``(decoded RGB image, (w, h) stored in the file, target scaled to the decoded image)``.

    JPEGs decode at a reduced scale while both sides stay >= ``min_size``. ``size`` (w, h): what
    ``annotation`` says (its ``size_field``) the image is; another size raises
    :class:`CorruptFileError` naming both files."""
    img, (w, h) = open_image(path, min_size)
    if size is not None and (w, h) != tuple(size):
        raise CorruptFileError(path, f"image {path!r} is {w} x {h} but its annotation {annotation!r} says "
                                     f"{size_field} {size[0]} x {size[1]}")
    dw, dh = img.size
    if (dw, dh) != (w, h):  # decoded at a reduced scale
        target = dict(target, boxes=target["boxes"] * torch.tensor([dw / w, dh / h, dw / w, dh / h]))
    return img, (w, h), target


def _finish(transforms: Callable | None, img: Image.Image, target: dict[str, Tensor]
            ) -> tuple[Tensor, dict[str, Tensor], dict[str, Any]]:
    """``transforms(img, target)``, or without transforms the image as float ``[3, H, W]`` in [0, 1]."""
    if transforms is None:
        image = TF.to_dtype(TF.pil_to_tensor(img), torch.float32, scale=True)
        return image, target, {"scale": 1.0, "pad": (0, 0)}
    return transforms(img, target)


def _load(transforms: Callable | None, path: str, target: dict[str, Tensor], annotation: str | None = None,
          size: tuple[int, int] | None = None, size_field: str = "<size>"
          ) -> tuple[Tensor, dict[str, Tensor], dict[str, Any]]:
    """Read ``path`` and apply ``transforms``: ``(image, target, meta)``."""
    img, (w, h), target = _open(path, getattr(transforms, "img_size", None), target, annotation, size, size_field)
    dw, dh = img.size
    image, target, geo = _finish(transforms, img, target)
    scale = float(geo["scale"]) * max(dw, dh) / max(w, h)  # original -> network pixels
    return image, target, {"path": path, "orig_size": (h, w), "scale": scale, "pad": tuple(geo["pad"])}


def mosaic4(tiles: Sequence[tuple[Image.Image, dict[str, Tensor]]], size: int, centre: tuple[int, int],
            fill: int = PAD_VALUE, min_side: float = 2.0, min_visible: float = 0.2
            ) -> tuple[Image.Image, dict[str, Tensor]]:
    """The YOLOv4 4-image mosaic: ``(RGB image size x size, target)``.

    ``tiles``: 4 ``(image, target)`` pairs, targets in the image's pixels (``boxes`` xyxy,
    ``labels``, ``iscrowd``). On a ``2S x 2S`` canvas (``S = size``) filled with ``fill`` gray,
    each image is scaled so that its long side is ``S`` (``w' = round(w * S / max(w, h))``, same
    for ``h'``) and placed with one corner on ``centre = (xc, yc)`` (canvas pixels, each in
    ``[S // 2, S // 2 + S]``): tile 0 above left of it (its bottom-right corner on the centre),
    1 above right, 2 below left, 3 below right. The result is the canvas' central ``S x S``
    window ``[S // 2, S // 2 + S)`` (the window every centre lies in), so each tile shows the
    part of its image next to the centre, at the letterbox scale.

    Boxes are scaled with their image (``x * w' / w``, ``y * h' / h``), shifted with it and clipped
    to the window; a box whose visible part is under ``min_side`` px on a side or under
    ``min_visible`` of its area (before clipping) is dropped with its label.
    """
    if len(tiles) != 4:
        raise ValueError(f"tiles: expected 4 (image, target) pairs, got {len(tiles)}")
    S, off = int(size), int(size) // 2
    xc, yc = int(centre[0]) - off, int(centre[1]) - off  # in the output window
    if not (0 <= xc <= S and 0 <= yc <= S):
        raise ValueError(f"centre: expected both coordinates in [{off}, {off + S}], got {tuple(centre)}")
    canvas = Image.new("RGB", (S, S), (fill, fill, fill))
    boxes, labels, crowd = [], [], []
    for k, (img, target) in enumerate(tiles):
        w, h = img.size
        f = S / max(w, h)
        nw, nh = max(1, round(w * f)), max(1, round(h * f))
        if (nw, nh) != (w, h):
            img = img.resize((nw, nh), Image.BILINEAR)
        x0 = xc - nw if k in (0, 2) else xc
        y0 = yc - nh if k in (0, 1) else yc
        canvas.paste(img, (x0, y0))  # (PIL crops what falls outside the window)
        b = target["boxes"].reshape(-1, 4).double() * torch.tensor([nw / w, nh / h, nw / w, nh / h],
                                                                   dtype=torch.float64)
        b = b + torch.tensor([x0, y0, x0, y0], dtype=torch.float64)
        area = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
        b = b.clamp(0, S)
        bw, bh = b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]
        keep = (bw >= min_side) & (bh >= min_side) & (bw * bh >= min_visible * area)
        boxes.append(b[keep].float())
        labels.append(target["labels"][keep])
        crowd.append(target["iscrowd"][keep])
    return canvas, {"boxes": torch.cat(boxes), "labels": torch.cat(labels), "iscrowd": torch.cat(crowd)}


class DetectionDataset(Dataset):
    """A split of a detection dataset: item = ``(image, target, meta)``; the base of
    :class:`VOCDetection`, :class:`COCODetection` and :class:`YOLODetection`, which differ only in
    how :meth:`read_records` reads the annotations.

    ``records`` (one per image, sorted by file stem): the raw record of :func:`read_voc_xml` (boxes
    in original-image pixels, ``difficult``) plus ``image`` (the file), ``annotation`` (the file
    that says where the boxes are) and ``size_field`` (what in it gives the image size, checked
    against the image when it is read; None: not checked). Every annotation is parsed and every
    image located at construction, so a broken dataset fails before training (``ValueError`` /
    ``FileNotFoundError`` naming the file). Images are decoded when read: a corrupt one, or one
    whose size differs from its annotation's, raises ``ValueError`` naming it then. With
    ``skip_corrupt`` a corrupt annotation is left out at construction (one warning,
    ``corrupt.left_out``) and a corrupt image when read (the item is None, see
    :mod:`zoo.data.corrupt`).

    ``transforms(pil_image, target) -> (image, target, {"scale", "pad"})``, e.g.
    :func:`train_transforms` / :func:`eval_transforms`; without it the image is the
    original ``[3, H, W]`` in [0, 1] with ``scale`` 1 and ``pad`` (0, 0). ``target`` holds
    ``boxes`` float32 [n, 4], ``labels`` int64 [n] and ``iscrowd`` int64 [n]; ``meta`` is
    ``{"path", "orig_size" (h, w), "scale", "pad" (left, top)}``.

    Difficult objects: with ``use_difficult`` they count as ordinary objects; otherwise
    they get ``iscrowd=1``, or are removed when ``drop_difficult`` (for training).

    Mosaic: with probability ``mosaic`` an item is the :func:`mosaic4` of it and 3 other items
    (distinct ones while the set has 4 or more; drawn uniformly), each at its training target,
    with a random centre, at ``mosaic_size`` (default ``transforms.img_size``); ``transforms`` then
    apply to the mosaic (letterbox: nothing left to do; then the affine map, flips, ...). Every
    draw uses torch's global RNG, which :class:`zoo.data.resume.SeededDataset` seeds per item, so
    that mosaics are reproducible and resumable like the other augmentations; with ``mosaic`` 0
    nothing is drawn. With ``skip_corrupt`` a corrupt partner image is replaced by another draw
    (a warning, not counted: it is not the item read).
    """

    #: the annotation format, one of :data:`zoo.data.detection_formats.ANNOTATION_FORMATS`
    format = ""

    def __init__(
        self,
        root: str | os.PathLike,
        split: str,
        classes: Sequence[str] = INSECT_CLASSES,
        transforms: Callable | None = None,
        use_difficult: bool = False,
        drop_difficult: bool = False,
        skip_corrupt: bool = False,
        mosaic: float = 0.0,
        mosaic_size: int | None = None,
    ) -> None:
        self.root, self.split = os.fspath(root), split
        self.corrupt = CorruptItems(skip_corrupt)
        self.classes = tuple(classes)
        _check_classes(self.classes)
        self.transforms, self.use_difficult, self.drop_difficult = transforms, use_difficult, drop_difficult
        mosaic = float(mosaic)
        if not 0.0 <= mosaic <= 1.0:
            raise ValueError(f"mosaic: expected a probability in [0, 1], got {mosaic}")
        self.mosaic = mosaic
        self.mosaic_size = int(mosaic_size if mosaic_size is not None else getattr(transforms, "img_size", 0) or 0)
        if mosaic > 0 and self.mosaic_size < 1:
            raise ValueError(f"mosaic_size: expected >= 1 (or transforms with an img_size), got {mosaic_size}")
        self.image_dir = os.path.join(self.root, split, "images")
        self.records: list[dict[str, Any]] = self.read_records()
        self.corrupt.resize(len(self.records))

    def read_records(self) -> list[dict[str, Any]]:
        """The split's records (see the class docstring), in order."""
        raise NotImplementedError

    def __len__(self) -> int:
        return len(self.records)

    def target(self, i: int) -> dict[str, Tensor]:
        """Item ``i``'s target in original-image pixels (before transforms), difficult rules applied."""
        rec = self.records[i]
        boxes, labels, difficult = rec["boxes"], rec["labels"], rec["difficult"]
        if self.use_difficult:
            difficult = torch.zeros_like(difficult)
        elif self.drop_difficult:
            boxes, labels, difficult = boxes[~difficult], labels[~difficult], difficult[~difficult]
        return {"boxes": boxes.clone(), "labels": labels.clone(), "iscrowd": difficult.to(torch.int64)}

    def _open(self, i: int, min_size: int | None) -> tuple[Image.Image, tuple[int, int], dict[str, Tensor]]:
        rec = self.records[i]
        field = rec.get("size_field")
        return _open(rec["image"], min_size, self.target(i), rec.get("annotation"),
                     rec["size"] if field else None, field or "<size>")

    def __getitem__(self, i: int) -> tuple[Tensor, dict[str, Tensor], dict[str, Any]] | None:
        if self.mosaic > 0 and float(torch.rand(())) < self.mosaic:
            return self.corrupt.read(i, lambda: self._mosaic_item(i))
        rec = self.records[i]
        field = rec.get("size_field")
        return self.corrupt.read(i, lambda: _load(self.transforms, rec["image"], self.target(i),
                                                  rec.get("annotation"), rec["size"] if field else None,
                                                  field or "<size>"))

    def _mosaic_item(self, i: int) -> tuple[Tensor, dict[str, Tensor], dict[str, Any]]:
        S, n = self.mosaic_size, len(self)
        img, _, target = self._open(i, S)
        tiles, used, bad = [(img, target)], [i], set()
        while len(tiles) < 4:
            if n - len(set(used)) - len(bad) > 0:  # a fresh item is left
                j = int(torch.randint(n, ()))
                while j in used or j in bad:
                    j = int(torch.randint(n, ()))
            else:  # fewer than 4 readable items: repeat
                j = used[int(torch.randint(len(used), ()))]
            try:
                img, _, target = self._open(j, S)
            except CorruptFileError as err:
                if not self.corrupt.skip:
                    raise
                warnings.warn(f"skip_corrupt: item {j} left out of the mosaic of item {i}: {err}", CorruptFileWarning,
                              stacklevel=2)
                bad.add(j)
                continue
            tiles.append((img, target))
            used.append(j)
        off = S // 2
        centre = (int(torch.randint(off, off + S + 1, ())), int(torch.randint(off, off + S + 1, ())))
        canvas, target = mosaic4(tiles, S, centre)
        image, target, geo = _finish(self.transforms, canvas, target)
        return image, target, {"path": self.records[i]["image"], "orig_size": (S, S), "scale": float(geo["scale"]),
                               "pad": tuple(geo["pad"]), "mosaic": tuple(self.records[j]["image"] for j in used)}


class VOCDetection(DetectionDataset):
    """A split in VOC XML (the AI识虫 insects layout); see :class:`DetectionDataset`.

    Reads ``root/{split}/annotations/xmls/*.xml`` (sorted by stem, :func:`read_voc_xml`) with the
    image ``root/{split}/images/<stem>.jpeg`` (or ``.jpg`` / ``.png``, ...). Records also keep
    ``xml`` (the annotation file).
    """

    format = "voc"

    def read_records(self) -> list[dict[str, Any]]:
        split = self.split
        xml_dir = os.path.join(self.root, split, "annotations", "xmls")
        img_dir = self.image_dir
        if not os.path.isdir(xml_dir):
            raise ValueError(f"{split} split: {xml_dir!r} is not a directory (expected the insects layout "
                             "root/{split}/annotations/xmls/*.xml + root/{split}/images/*.jpeg)")
        xmls = sorted((f for f in os.listdir(xml_dir) if f.lower().endswith(".xml")), key=lambda f: f[:-4])
        if not xmls:
            raise ValueError(f"{split} split: no .xml annotations in {xml_dir!r}")
        images = images_by_stem(img_dir)

        def record(f: str) -> dict[str, Any]:
            stem, xml_path = f[:-4], os.path.join(xml_dir, f)
            if stem not in images:
                raise FileNotFoundError(f"annotation {xml_path!r}: no image for it, expected "
                                        f"{os.path.join(img_dir, stem + IMAGE_SUFFIXES[0])!r} (or another of {', '.join(IMAGE_SUFFIXES[1:])})")
            rec = read_voc_xml(xml_path, self.classes)
            rec["xml"], rec["image"] = xml_path, images[stem]
            rec["annotation"], rec["size_field"] = xml_path, "<size>"
            return rec

        return [rec for _, rec in self.corrupt.scan(xmls, record, f"{split} annotation(s)")]


class COCODetection(DetectionDataset):
    """A split in COCO JSON; see :class:`DetectionDataset`.

    Reads ``root/{split}/annotations/instances_{split}.json`` (or the only ``.json`` file there,
    :class:`~zoo.data.detection_formats.COCOFile`) with the images ``root/{split}/images/<file_name>``,
    in file-name order. Categories map to ``classes`` by name; ``iscrowd`` objects are the
    ``difficult`` ones. An image without annotations has no objects. A malformed file raises
    :class:`CorruptFileError` naming it; a bad box makes its image corrupt (left out with
    ``skip_corrupt``, the error's path is the image's); a missing image raises
    ``FileNotFoundError`` naming the file and the image.
    """

    format = "coco"

    def read_records(self) -> list[dict[str, Any]]:
        path = coco_file(self.root, self.split)
        if path is None:
            raise ValueError(f"{self.split} split: no COCO .json file in "
                             f"{os.path.join(self.root, self.split, 'annotations')!r} (expected "
                             f"root/{self.split}/annotations/instances_{self.split}.json + root/{self.split}/images/)")
        coco = COCOFile(path, self.classes)
        if not len(coco):
            raise ValueError(f"{self.split} split: {path!r} lists no images")
        for im in coco.images:
            file = os.path.join(self.image_dir, *im["file_name"].split("/"))
            if not os.path.isfile(file):
                raise FileNotFoundError(f"annotation {path!r}: image id {im['id']!r}: no image file {file!r}")
            im["path"] = file

        def record(im: dict) -> dict[str, Any]:
            rec = coco.record(im, error_path=im["path"])
            rec["image"], rec["annotation"] = im["path"], path
            rec["size_field"] = f"for image id {im['id']!r} width x height"
            return rec

        return [rec for _, rec in self.corrupt.scan(coco.images, record, f"{self.split} image(s) of {path!r}")]


class YOLODetection(DetectionDataset):
    """A split in YOLO txt; see :class:`DetectionDataset`.

    Reads every image in ``root/{split}/images/`` (sorted by stem) with its labels
    ``root/{split}/labels/<stem>.txt`` (:func:`~zoo.data.detection_formats.read_yolo_txt`; no file:
    no objects). Class ids index ``root/{split}/classes.txt`` (else ``root/classes.txt``), each
    name matched to ``classes``, or ``classes`` when there is no such file. Boxes are normalised,
    so each image's size is read from its header at construction (an unreadable image is corrupt
    then). A label file without an image raises ``FileNotFoundError``; a bad line raises
    :class:`CorruptFileError` naming the file and the line (with ``skip_corrupt``: that image is
    left out). No object is difficult.
    """

    format = "yolo"

    def read_records(self) -> list[dict[str, Any]]:
        split, lbl_dir = self.split, labels_dir(self.root, self.split)
        if not os.path.isdir(lbl_dir):
            raise ValueError(f"{split} split: {lbl_dir!r} is not a directory (expected the YOLO layout "
                             f"root/{split}/labels/*.txt + root/{split}/images/)")
        images = images_by_stem(self.image_dir)
        if not images:
            raise ValueError(f"{split} split: no images in {self.image_dir!r}")
        for f in sorted(os.listdir(lbl_dir)):
            if f.lower().endswith(".txt") and f[:-4] not in images:
                raise FileNotFoundError(f"label file {os.path.join(lbl_dir, f)!r}: no image for it, expected "
                                        f"{os.path.join(self.image_dir, f[:-4] + IMAGE_SUFFIXES[0])!r} (or another "
                                        f"of {', '.join(IMAGE_SUFFIXES[1:])})")
        names, names_path = yolo_class_names(self.root, split)
        class_ids(self.classes, names, f"class names {names_path!r}")  # (before any label file needs them)

        def record(stem: str) -> dict[str, Any]:
            image = images[stem]
            size = image_size(image)
            label = os.path.join(lbl_dir, stem + ".txt")
            if os.path.isfile(label):
                rec = read_yolo_txt(label, size, self.classes, names, filename=os.path.basename(image))
            else:  # no label file: no objects
                rec = {"filename": os.path.basename(image), "size": size, "boxes": torch.zeros(0, 4),
                       "labels": torch.zeros(0, dtype=torch.int64), "difficult": torch.zeros(0, dtype=torch.bool)}
            rec["image"], rec["annotation"], rec["size_field"] = image, label, None
            return rec

        return [rec for _, rec in self.corrupt.scan(sorted(images), record, f"{split} image(s)")]


#: dataset class per annotation format
DATASETS: dict[str, type[DetectionDataset]] = {"voc": VOCDetection, "coco": COCODetection, "yolo": YOLODetection}


def detection_dataset(root: str | os.PathLike, split: str, annotations: str = "auto", **kwargs: Any
                      ) -> DetectionDataset:
    """The split ``root/{split}`` as the dataset of its format (``annotations``: ``"voc"``,
    ``"coco"``, ``"yolo"``, or ``"auto"``: the one format present); ``kwargs`` go to it."""
    return DATASETS[resolve_annotations(root, split, annotations)](root, split, **kwargs)


class DetectionImages(Dataset):
    """Every image in a folder (sorted): item = ``(image, empty target, meta)``; a corrupt image
    raises naming it, or with ``skip_corrupt`` gives None."""

    def __init__(self, root: str | os.PathLike, transforms: Callable | None = None,
                 skip_corrupt: bool = False) -> None:
        self.files = list_images(root, "predict_dir")
        self.transforms = transforms
        self.corrupt = CorruptItems(skip_corrupt, len(self.files))

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> tuple[Tensor, dict[str, Tensor], dict[str, Any]] | None:
        return self.corrupt.read(i, lambda: _load(self.transforms, self.files[i], _empty_target()))


# --------------------------------------------------------------------------------------
# batches


def detection_collate(batch: Sequence[tuple[Tensor, dict, dict]]) -> tuple[Tensor, list[dict], list[dict]]:
    """``[(image [3, S, S], target, meta), ...] -> (images [B, 3, S, S], [target, ...], [meta, ...])``."""
    if not batch:
        raise ValueError("detection_collate: empty batch")
    images, targets, metas = zip(*batch)
    shapes = {tuple(im.shape) for im in images}
    if len(shapes) != 1:
        raise ValueError(f"detection_collate: images of different shapes {sorted(shapes)}; letterbox them first")
    return torch.stack(images), list(targets), list(metas)


def resize_batch(images: Tensor, targets: list[dict], metas: list[dict], size: int
                 ) -> tuple[Tensor, list[dict], list[dict]]:
    """Resize square ``images [B, 3, S, S]`` to ``size``, scaling boxes and metas' scale / pad with them."""
    base = images.shape[-1]
    if size == base:
        return images, targets, metas
    f = size / base
    images = F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False, antialias=f < 1)
    images = images.clamp_(0.0, 1.0)
    targets = [dict(t, boxes=t["boxes"] * f) for t in targets]
    metas = [dict(m, scale=m["scale"] * f, pad=(m["pad"][0] * f, m["pad"][1] * f)) for m in metas]
    return images, targets, metas


def multiscale_sizes(lo: int, hi: int, stride: int = 32) -> list[int]:
    """The multiples of ``stride`` in ``[lo, hi]``."""
    sizes = list(range(math.ceil(lo / stride) * stride, hi + 1, stride))
    if not sizes:
        raise ValueError(f"multiscale: no multiple of {stride} in [{lo}, {hi}]")
    return sizes


class MultiScaleCollate:
    """:func:`detection_collate`, then the batch resized to a random one of ``sizes``."""

    def __init__(self, sizes: Sequence[int]) -> None:
        if not sizes:
            raise ValueError("MultiScaleCollate: sizes is empty")
        self.sizes = sorted(int(s) for s in sizes)

    def __call__(self, batch: Sequence[tuple[Tensor, dict, dict]]) -> tuple[Tensor, list[dict], list[dict]]:
        size = self.sizes[int(torch.randint(len(self.sizes), ()))]
        return resize_batch(*detection_collate(batch), size)


# --------------------------------------------------------------------------------------
# anchors


def _dataset_wh(ds: DetectionDataset, img_size: int) -> Tensor:
    """The (w, h) of the boxes ``ds`` trains on (not the iscrowd ones), letterboxed to ``img_size``."""
    out = []
    for i, rec in enumerate(ds.records):
        t = ds.target(i)
        boxes = t["boxes"][t["iscrowd"] == 0]
        out.append((boxes[:, 2:] - boxes[:, :2]) * (img_size / max(rec["size"])))
    return torch.cat(out) if out else torch.zeros(0, 2)


def kmeans_anchors(dataset_or_boxes: DetectionDataset | Tensor, k: int = 9, img_size: int = 416, iters: int = 300,
                   seed: int = 0, restarts: int = 3) -> Tensor:
    """k-means anchors ``[k, 2]`` (w, h) in network pixels, sorted by area.

    Distance 1 - IoU of boxes aligned at a common corner. ``dataset_or_boxes`` is a
    :class:`DetectionDataset` (its non-difficult boxes, letterboxed to ``img_size``; images are
    not read) or a tensor of ``[n, 2]`` (w, h), or ``[n, 4]`` xyxy, used as given.
    k-means++ seeding; the best of ``restarts`` runs (mean best IoU) wins.
    """
    if isinstance(dataset_or_boxes, DetectionDataset):
        wh = _dataset_wh(dataset_or_boxes, img_size)
    else:
        wh = torch.as_tensor(dataset_or_boxes, dtype=torch.float64)
        if wh.ndim != 2 or wh.shape[1] not in (2, 4):
            raise ValueError(f"kmeans_anchors: expected boxes [n, 2] (w, h) or [n, 4] xyxy, got {tuple(wh.shape)}")
        if wh.shape[1] == 4:
            wh = wh[:, 2:] - wh[:, :2]
    wh = wh.double()
    wh = wh[(wh > 0).all(1)]
    if len(wh) == 0:
        raise ValueError("kmeans_anchors: no boxes (with positive width and height) to cluster")
    if k < 1 or len(wh) < k:
        raise ValueError(f"kmeans_anchors: need 1 <= k <= number of boxes, got k={k} for {len(wh)} boxes")
    gen = torch.Generator().manual_seed(seed)
    best, best_fit = None, -1.0
    for _ in range(max(1, restarts)):
        centres = wh[torch.randint(len(wh), (1,), generator=gen)]
        while len(centres) < k:  # k-means++: far (in 1 - IoU) boxes are likelier next centres
            d = 1.0 - shape_iou(wh, centres).max(1).values
            p = d / d.sum() if d.sum() > 0 else torch.full_like(d, 1.0 / len(d))
            centres = torch.cat([centres, wh[torch.multinomial(p, 1, generator=gen)]])
        assign = None
        for _ in range(iters):
            iou = shape_iou(wh, centres)
            new = iou.argmax(1)
            if assign is not None and torch.equal(new, assign):
                break
            assign = new
            for j in range(k):
                members = wh[assign == j]
                if len(members):
                    centres[j] = members.median(0).values
                else:  # an empty cluster takes the worst-fitted box
                    centres[j] = wh[iou.max(1).values.argmin()]
        fit = shape_iou(wh, centres).max(1).values.mean().item()
        if fit > best_fit:
            best, best_fit = centres.clone(), fit
    return best[best.prod(1).argsort()].float()


# --------------------------------------------------------------------------------------
# datamodule


def _check_classes(classes: Sequence[str]) -> None:
    if not classes:
        raise ValueError("classes: expected at least one class name")
    if len(set(classes)) != len(classes):
        raise ValueError(f"classes: names must be unique, got {list(classes)}")


_SYNTHETIC_ARGS = {name: p.default for name, p in inspect.signature(synthetic_insects).parameters.items()
                   if name != "root"}


def synthetic_root(data_dir: str | os.PathLike, synthetic: dict | None = None) -> tuple[Path, dict]:
    """Where :class:`DetectionDataModule` keeps the generated set for ``synthetic`` kwargs, and the full kwargs."""
    kwargs = dict(_SYNTHETIC_ARGS)
    _check_known_keys("synthetic", synthetic, kwargs)
    kwargs.update(synthetic or {})
    # (options left at None are not in the key: sets generated before an option existed keep their folder)
    key = json.dumps({**{k: v for k, v in kwargs.items() if v is not None}, "version": GENERATOR_VERSION},
                     sort_keys=True)
    digest = hashlib.sha1(key.encode()).hexdigest()[:10]
    return Path(data_dir) / f"synthetic_insects_{digest}", kwargs


COMPLETE_MARKER = "COMPLETE.json"


def ensure_synthetic(data_dir: str | os.PathLike, synthetic: dict | None = None) -> Path:
    """Generate the synthetic set once (idempotent, safe against interruption) and return its root.

    A set counts as complete when its marker file exists. Generation goes to a temporary
    sibling folder renamed into place at the end, so an interrupted run never looks complete.
    """
    root, kwargs = synthetic_root(data_dir, synthetic)
    if (root / COMPLETE_MARKER).is_file():
        return root
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = root.parent / f".{root.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        synthetic_insects(tmp, **kwargs)
        (tmp / COMPLETE_MARKER).write_text(json.dumps({**kwargs, "version": GENERATOR_VERSION}, sort_keys=True))
        if root.exists() and not (root / COMPLETE_MARKER).is_file():
            shutil.rmtree(root, ignore_errors=True)  # an incomplete leftover
        try:
            os.rename(tmp, root)
        except OSError:
            if not (root / COMPLETE_MARKER).is_file():  # not a concurrent generator winning the race
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return root


class DetectionDataModule(SplitDataModule):
    """Detection data (VOC XML, COCO JSON or YOLO txt) as train / val / test / predict loaders.

    ``root`` holds the splits ``{train,val[,test]}``, each in one of the layouts of the module
    docstring (VOC: ``{split}/annotations/xmls/*.xml`` + ``{split}/images/*.jpeg``, the AI识虫
    layout; COCO: ``{split}/annotations/instances_{split}.json`` + ``{split}/images/``; YOLO txt:
    ``{split}/labels/*.txt`` + ``{split}/images/``). ``annotations`` picks the format: ``"voc"``,
    ``"coco"``, ``"yolo"``, or ``"auto"`` (default): per split, the one format it holds (several:
    ``ValueError``, set it). With ``root=None`` a generated insect set (``synthetic``: kwargs of
    :func:`zoo.data.synthetic_insects`, e.g. ``{n_train: 300, n_val: 60, size: 320,
    seed: 0}``) is written once to ``{data_dir}/synthetic_insects_<hash>`` and read back
    through :class:`VOCDetection`. Test uses the ``test`` split when it has annotations,
    else val; predict reads ``predict_dir`` (empty targets), else the val split.

    Images are letterboxed to ``img_size`` (gray padding). Training adds the random
    augmentations of :func:`train_transforms` when ``augment`` is true; a dict overrides
    some of their defaults (e.g. ``{degrees: 0, scale: [1, 1], jitter: 0}`` keeps only the
    flips; keys: :data:`AUGMENT_OPTIONS`); its ``mosaic`` (default 0: off) is the probability
    that a training item is a 4-image mosaic (:func:`mosaic4`, made by the dataset before the
    other augmentations, at the training size). ``multiscale=[lo, hi]``
    letterboxes training images to the largest multiple of 32 in the range and resizes
    each training batch to a random multiple of 32 in it. Batches are
    ``(images, targets, metas)``, see the module docstring. The CLI passes ``classes``
    and ``img_size`` on to the detector.

    Corrupt data (a malformed or impossible annotation, an image that does not decode or does not
    match its annotation's size) raises ``ValueError`` naming the file: annotations at ``setup``,
    images when read. With ``skip_corrupt`` those items are left out with a warning and counted
    (``data/skipped_<stage>`` per epoch, :class:`zoo.callbacks.SkippedItems`).
    """

    #: :func:`detection_collate` over the items that are not None (skip_corrupt)
    collate_fn = SkipCollate(detection_collate)

    def __init__(
        self,
        root: str | None = None,
        classes: list[str] = INSECT_CLASSES,  # type: ignore[assignment]  # a tuple: immutable default
        img_size: int = 416,
        batch_size: int = 8,
        num_workers: int = 0,
        multiscale: list[int] | None = None,
        augment: bool | dict[str, Any] = True,
        use_difficult: bool = False,
        predict_dir: str | None = None,
        synthetic: dict | None = None,
        data_dir: str = "runs/data",
        skip_corrupt: bool = False,
        annotations: str = "auto",
    ) -> None:
        super().__init__()
        check_skip_corrupt(skip_corrupt)
        check_annotations(annotations)
        if img_size < 32 or img_size % 32:
            raise ValueError(f"img_size: expected a multiple of 32 (the network stride), got {img_size}")
        if batch_size < 1:
            raise ValueError(f"batch_size: expected >= 1, got {batch_size}")
        if num_workers < 0:
            raise ValueError(f"num_workers: expected >= 0, got {num_workers}")
        if isinstance(augment, dict):
            _check_known_keys("augment", augment, AUGMENT_OPTIONS)
            mosaic = augment.get("mosaic", 0.0)
            if isinstance(mosaic, bool) or not isinstance(mosaic, (int, float)) or not 0.0 <= mosaic <= 1.0:
                raise ValueError(f"augment: mosaic must be a probability in [0, 1], got {mosaic!r}")
        self.sizes: list[int] | None = None
        if multiscale is not None:
            if len(multiscale) != 2 or not 0 < multiscale[0] <= multiscale[1]:
                raise ValueError(f"multiscale: expected [min_size, max_size] with 0 < min <= max, got {multiscale}")
            self.sizes = multiscale_sizes(int(multiscale[0]), int(multiscale[1]))
        _check_classes(list(classes))
        if root is None:
            synthetic_root(data_dir, synthetic)  # validates the kwargs now
        self.save_hyperparameters()
        self.classes: list[str] = list(classes)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def data_root(self) -> str:
        """The dataset root: ``root``, or where the synthetic set is (or will be) generated."""
        hp = self.hparams
        return hp.root if hp.root is not None else str(synthetic_root(hp.data_dir, hp.synthetic)[0])

    def prepare_data(self) -> None:
        if self.hparams.root is None:
            ensure_synthetic(self.hparams.data_dir, self.hparams.synthetic)

    def _split(self, split: str, transforms: DetectionTransforms, train: bool = False,
               mosaic: float = 0.0) -> DetectionDataset:
        return detection_dataset(self._root, split, self.hparams.annotations, classes=self.classes,
                                 transforms=transforms, use_difficult=self.hparams.use_difficult,
                                 drop_difficult=train, skip_corrupt=self.hparams.skip_corrupt, mosaic=mosaic)

    def setup(self, stage: str | None = None) -> None:
        hp = self.hparams
        self._root = hp.root if hp.root is not None else str(ensure_synthetic(hp.data_dir, hp.synthetic))
        if not os.path.isdir(self._root):
            raise ValueError(f"root: {self._root!r} is not a directory")
        evaluate = eval_transforms(hp.img_size)

        def val() -> DetectionDataset:
            if self.val_set is None:
                self.val_set = self._split("val", evaluate)
            return self.val_set

        if stage in (None, "fit") and self.train_set is None:
            train_size = max(self.sizes) if self.sizes else hp.img_size
            options = dict(hp.augment) if isinstance(hp.augment, dict) else {}
            mosaic = float(options.pop("mosaic", 0.0)) if hp.augment else 0.0
            self.train_set = self._split("train", train_transforms(train_size, bool(hp.augment), **options),
                                         train=True, mosaic=mosaic)
        if stage in (None, "fit", "validate"):
            val()
        if stage in (None, "test") and self.test_set is None:
            found = split_formats(self._root, "test")
            has_test = hp.annotations in found or (hp.annotations == "auto" and bool(found))
            self.test_set = self._split("test", evaluate) if has_test else val()
        if stage in (None, "predict") and self.predict_set is None:
            self.predict_set = (DetectionImages(hp.predict_dir, evaluate, hp.skip_corrupt)
                                if hp.predict_dir is not None else val())

    def train_collate(self) -> Callable:
        return SkipCollate(MultiScaleCollate(self.sizes)) if self.sizes else self.collate_fn
