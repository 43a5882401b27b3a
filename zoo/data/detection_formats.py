"""Detection annotations in COCO JSON and YOLO txt, next to VOC XML: readers, layout detection, writers.

Every reader produces the same raw record as :func:`zoo.data.detection.read_voc_xml`::

    {"filename": str, "size": (width, height), "boxes": float32 [n, 4] xyxy pixels (0-based edges),
     "labels": int64 [n] (index into ``classes``), "difficult": bool [n]}

so that :class:`~zoo.data.detection.VOCDetection`, :class:`~zoo.data.detection.COCODetection` and
:class:`~zoo.data.detection.YOLODetection` share one pipeline (difficult rules, transforms, mosaic).
COCO's ``iscrowd`` fills ``difficult`` (both mean: not trained on, ignored by the mAP); YOLO txt has
no such flag.

Layouts of one split (``root/{split}``)::

    VOC   root/{split}/annotations/xmls/<stem>.xml   + root/{split}/images/<stem>.jpeg (.jpg, .png, ...)
    COCO  root/{split}/annotations/<name>.json       + root/{split}/images/<file_name>
          (instances_{split}.json when there are several .json files)
    YOLO  root/{split}/labels/<stem>.txt             + root/{split}/images/<stem>.jpeg (.jpg, .png, ...)
          [+ root/{split}/classes.txt or root/classes.txt: the class names, line k = class id k]

A COCO file: ``images`` [{id, file_name, width, height}], ``annotations`` [{id, image_id,
category_id, bbox [x, y, w, h] (top-left corner and size, pixels), iscrowd}], ``categories``
[{id, name}]; every category must be one of ``classes`` (matched by name). A YOLO label file:
one object per line, ``class cx cy w h`` with the box centre and size divided by the image's
width / height (so in [0, 1]); the class is an index into ``classes.txt`` when there is one (its
names matched to ``classes``), else into ``classes``. An image without a label file has no objects.

Boxes may stick out of the image by up to 1 px (rounding) and are clipped; more raises
:class:`~zoo.data.corrupt.CorruptFileError` naming the file (and the annotation id or line).
A class the ``classes`` list does not have raises a plain ``ValueError`` (the configuration does
not fit the data: ``skip_corrupt`` never skips that).
"""
from __future__ import annotations

import json
import math
import os
import shutil
from pathlib import Path
from typing import Any, Sequence

import torch
from PIL import Image

from .corrupt import CorruptFileError
from .images import IMAGE_SUFFIXES
from .synthetic_insects import INSECT_CLASSES

#: the annotation formats a detection split can be in
ANNOTATION_FORMATS = ("voc", "coco", "yolo")
BOX_TOLERANCE = 1.0  # pixels a box may stick out of the image before it is an error (then clipped)
CLASS_NAMES_FILE = "classes.txt"


# --------------------------------------------------------------------------------------
# layout


def voc_dir(root: str | os.PathLike, split: str) -> str:
    return os.path.join(os.fspath(root), split, "annotations", "xmls")


def image_dir(root: str | os.PathLike, split: str) -> str:
    return os.path.join(os.fspath(root), split, "images")


def labels_dir(root: str | os.PathLike, split: str) -> str:
    return os.path.join(os.fspath(root), split, "labels")


def coco_file(root: str | os.PathLike, split: str) -> str | None:
    """The COCO file of a split: ``root/{split}/annotations/instances_{split}.json``, else the only
    ``.json`` file there; None when there is none. ``ValueError`` when there are several and
    none is ``instances_{split}.json``."""
    ann = os.path.join(os.fspath(root), split, "annotations")
    if not os.path.isdir(ann):
        return None
    found = sorted(f for f in os.listdir(ann) if f.lower().endswith(".json") and os.path.isfile(os.path.join(ann, f)))
    if not found:
        return None
    if f"instances_{split}.json" in found:
        return os.path.join(ann, f"instances_{split}.json")
    if len(found) > 1:
        raise ValueError(f"{split} split: several COCO files in {ann!r} ({', '.join(found)}); name the one to "
                         f"read instances_{split}.json")
    return os.path.join(ann, found[0])


def split_formats(root: str | os.PathLike, split: str) -> list[str]:
    """The annotation formats present in ``root/{split}`` (VOC: ``annotations/xmls/``, COCO: a
    ``.json`` file in ``annotations/``, YOLO: ``labels/``), in :data:`ANNOTATION_FORMATS` order."""
    found = []
    if os.path.isdir(voc_dir(root, split)):
        found.append("voc")
    ann = os.path.join(os.fspath(root), split, "annotations")
    if os.path.isdir(ann) and any(f.lower().endswith(".json") for f in os.listdir(ann)):
        found.append("coco")
    if os.path.isdir(labels_dir(root, split)):
        found.append("yolo")
    return found


def check_annotations(annotations: Any) -> str:
    """``annotations`` when it is ``"auto"`` or one of :data:`ANNOTATION_FORMATS`; ``ValueError`` otherwise."""
    if annotations not in ("auto", *ANNOTATION_FORMATS):
        raise ValueError(f"annotations: expected 'auto' or one of {', '.join(ANNOTATION_FORMATS)}, got {annotations!r}")
    return annotations


def resolve_annotations(root: str | os.PathLike, split: str, annotations: str = "auto") -> str:
    """The format to read split ``split`` in: ``annotations`` itself, or with ``"auto"`` the one
    format found there (:func:`split_formats`); ``ValueError`` when there is none or several."""
    if check_annotations(annotations) != "auto":
        return annotations
    found = split_formats(root, split)
    if len(found) == 1:
        return found[0]
    where = os.path.join(os.fspath(root), split)
    if not found:
        raise ValueError(f"{split} split: no annotations in {where!r}; expected VOC ({split}/annotations/xmls/*.xml), "
                         f"COCO ({split}/annotations/*.json) or YOLO txt ({split}/labels/*.txt), each with "
                         f"{split}/images/")
    raise ValueError(f"{split} split: {where!r} holds annotations in several formats ({', '.join(found)}); "
                     "choose one with annotations=" + " | ".join(repr(f) for f in found))


def image_size(path: str | os.PathLike) -> tuple[int, int]:
    """``(width, height)`` from an image file's header (the pixels are not decoded); an unreadable
    file raises :class:`CorruptFileError` naming it."""
    path = os.fspath(path)
    try:
        with Image.open(path) as img:
            return img.size
    except Exception as err:  # noqa: BLE001 - as zoo.data.images.open_image: the file's fault
        raise CorruptFileError(path, f"image file {path!r} cannot be read as an image "
                                     f"({type(err).__name__}: {err})") from err


def images_by_stem(folder: str) -> dict[str, str]:
    """``{stem: path}`` of the image files directly in ``folder`` (one per stem: the first suffix of
    :data:`~zoo.data.images.IMAGE_SUFFIXES` wins); empty when ``folder`` does not exist."""
    images: dict[str, str] = {}
    if os.path.isdir(folder):
        rank = {suffix: i for i, suffix in enumerate(IMAGE_SUFFIXES)}
        for f in sorted(os.listdir(folder), key=lambda f: rank.get(os.path.splitext(f)[1].lower(), len(rank))):
            stem, ext = os.path.splitext(f)
            if ext.lower() in rank:
                images.setdefault(stem, os.path.join(folder, f))
    return images


def _clip_box(x1: float, y1: float, x2: float, y2: float, width: int, height: int, where: str, path: str,
              error_path: str | None = None) -> tuple[float, float, float, float]:
    """The box clipped to the image; :class:`CorruptFileError` when it is empty or sticks out by more
    than :data:`BOX_TOLERANCE` px. ``where`` starts the message (it names the file)."""
    error_path = path if error_path is None else error_path
    if not x2 > x1 or not y2 > y1:
        raise CorruptFileError(error_path, f"{where}: box {[x1, y1, x2, y2]} (xyxy px) is empty")
    tol = BOX_TOLERANCE
    if x1 < -tol or y1 < -tol or x2 > width + tol or y2 > height + tol:
        raise CorruptFileError(error_path, f"{where}: box {[x1, y1, x2, y2]} (xyxy px) lies outside the "
                                           f"{width} x {height} image")
    x1, y1, x2, y2 = max(x1, 0.0), max(y1, 0.0), min(x2, float(width)), min(y2, float(height))
    if x2 <= x1 or y2 <= y1:
        raise CorruptFileError(error_path, f"{where}: box is empty once clipped to the {width} x {height} image")
    return x1, y1, x2, y2


def _record(filename: str, size: tuple[int, int], boxes: list, labels: list, difficult: list) -> dict[str, Any]:
    return {
        "filename": filename,
        "size": (int(size[0]), int(size[1])),
        # (float64 arithmetic above, one rounding to float32 here: integer pixels come out exact)
        "boxes": torch.tensor(boxes, dtype=torch.float64).reshape(-1, 4).to(torch.float32),
        "labels": torch.tensor(labels, dtype=torch.int64),
        "difficult": torch.tensor(difficult, dtype=torch.bool),
    }


def _hashable(value: Any) -> bool:
    """Whether ``value`` can be a COCO id (a number or a string)."""
    return isinstance(value, (int, float, str)) and not isinstance(value, bool)


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


# --------------------------------------------------------------------------------------
# COCO JSON


class COCOFile:
    """A COCO annotation file checked as a whole (at construction) and read one image at a time.

    ``images``: its image entries ``{"id", "file_name", "width", "height"}`` sorted by file name
    (stem first, as VOC and YOLO splits are); :meth:`record` makes one image's raw record.
    The file's structure (JSON, the ``images`` / ``annotations`` / ``categories`` lists, their
    fields, unique ids, every annotation's image and category) raises :class:`CorruptFileError`
    naming the file; a category name not in ``classes`` raises ``ValueError``. A bad ``bbox`` or
    ``iscrowd`` is the image's problem: :meth:`record` raises for it (``skip_corrupt`` can then
    leave that image out), with the error's ``path`` set to ``error_path`` when given.
    """

    def __init__(self, path: str | os.PathLike, classes: Sequence[str] = INSECT_CLASSES) -> None:
        self.path = path = os.fspath(path)
        try:
            with open(path, encoding="utf-8") as f:
                data = json.load(f)
        except (OSError, UnicodeError, ValueError) as err:
            raise CorruptFileError(path, f"annotation {path!r}: not a readable JSON file: {err}") from err

        def fail(message: str) -> CorruptFileError:
            return CorruptFileError(path, f"annotation {path!r}: {message}")

        if not isinstance(data, dict):
            raise fail(f"expected a JSON object with images, annotations and categories, got {type(data).__name__}")

        def entries(key: str, required: bool) -> list[dict]:
            value = data.get(key)
            if value is None and not required:
                return []
            if not isinstance(value, list):
                raise fail(f"'{key}' must be a list, got {type(value).__name__ if key in data else 'nothing'}")
            for k, e in enumerate(value):
                if not isinstance(e, dict):
                    raise fail(f"{key}[{k}] is not an object: {e!r}")
            return value

        images, annotations = entries("images", True), entries("annotations", False)
        categories = entries("categories", bool(annotations))
        index = {name: i for i, name in enumerate(classes)}
        self.label_of: dict[Any, int] = {}
        for k, c in enumerate(categories):
            if not _hashable(c.get("id")) or not isinstance(c.get("name"), str):
                raise fail(f"categories[{k}] needs an 'id' and a 'name', got {c!r}")
            if c["id"] in self.label_of:
                raise fail(f"category id {c['id']!r} appears twice")
            if c["name"] not in index:
                raise ValueError(f"annotation {path!r}: category {c['name']!r} (id {c['id']!r}) is not one of the "
                                 f"classes: {', '.join(classes)}")
            self.label_of[c["id"]] = index[c["name"]]
        by_id: dict[Any, dict] = {}
        names: set[str] = set()
        for k, im in enumerate(images):
            missing = [key for key in ("id", "file_name", "width", "height") if key not in im]
            if missing:
                raise fail(f"images[{k}] has no {', '.join(missing)}")
            if not isinstance(im["file_name"], str) or not im["file_name"]:
                raise fail(f"images[{k}] file_name must be a non-empty string, got {im['file_name']!r}")
            w, h = im["width"], im["height"]
            if not (_finite(w) and _finite(h) and w >= 1 and h >= 1 and w == int(w) and h == int(h)):
                raise fail(f"image id {im['id']!r} ({im['file_name']}): width and height must be positive whole "
                           f"pixels, got {w!r} x {h!r}")
            if not _hashable(im["id"]):
                raise fail(f"images[{k}] id must be a number or a string, got {im['id']!r}")
            if im["id"] in by_id:
                raise fail(f"image id {im['id']!r} appears twice")
            if im["file_name"] in names:
                raise fail(f"file_name {im['file_name']!r} appears twice")
            names.add(im["file_name"])
            by_id[im["id"]] = {"id": im["id"], "file_name": im["file_name"], "width": int(w), "height": int(h)}
        self.annotations: dict[Any, list[dict]] = {i: [] for i in by_id}
        for k, a in enumerate(annotations):
            ann = f"annotation {a.get('id', f'#{k}')!r}"
            if not _hashable(a.get("image_id")) or a.get("image_id") not in by_id:
                raise fail(f"{ann} refers to image id {a.get('image_id')!r}, which 'images' does not list")
            if not _hashable(a.get("category_id")) or a.get("category_id") not in self.label_of:
                raise fail(f"{ann} refers to category id {a.get('category_id')!r}, which 'categories' does not list")
            self.annotations[a["image_id"]].append(a)
        self.images = sorted(by_id.values(), key=lambda im: (os.path.splitext(im["file_name"])[0], im["file_name"]))

    def __len__(self) -> int:
        return len(self.images)

    def record(self, image: dict, error_path: str | None = None) -> dict[str, Any]:
        """The raw record of one entry of :attr:`images` (``iscrowd`` as ``difficult``)."""
        width, height = image["width"], image["height"]
        boxes, labels, crowd = [], [], []
        for k, a in enumerate(self.annotations[image["id"]]):
            where = (f"annotation {self.path!r}: annotation {a.get('id', f'#{k}')!r} of image id {image['id']!r} "
                     f"({image['file_name']})")
            bbox = a.get("bbox")
            if not (isinstance(bbox, (list, tuple)) and len(bbox) == 4 and all(_finite(v) for v in bbox)):
                raise CorruptFileError(error_path or self.path,
                                       f"{where}: bbox must be 4 finite numbers [x, y, w, h], got {bbox!r}")
            x, y, w, h = (float(v) for v in bbox)
            boxes.append(_clip_box(x, y, x + w, y + h, width, height, where, self.path, error_path))
            is_crowd = a.get("iscrowd", 0)
            if is_crowd not in (0, 1) or not isinstance(is_crowd, (int, bool)):
                raise CorruptFileError(error_path or self.path, f"{where}: iscrowd must be 0 or 1, got {is_crowd!r}")
            labels.append(self.label_of[a["category_id"]])
            crowd.append(bool(is_crowd))
        return _record(image["file_name"], (width, height), boxes, labels, crowd)


def read_coco_json(path: str | os.PathLike, classes: Sequence[str] = INSECT_CLASSES) -> list[dict[str, Any]]:
    """Every image of a COCO annotation file as a raw record (see the module docstring), sorted by
    file name; ``filename`` is the image's ``file_name``. ``iscrowd`` objects come back as
    ``difficult``. Raises :class:`CorruptFileError` (a ``ValueError``) naming the file for
    anything malformed, ``ValueError`` for a category not in ``classes``."""
    coco = COCOFile(path, classes)
    return [coco.record(im) for im in coco.images]


# --------------------------------------------------------------------------------------
# YOLO txt


def read_class_names(path: str | os.PathLike) -> list[str]:
    """The class names in a ``classes.txt`` (one per line, blank lines ignored)."""
    path = os.fspath(path)
    try:
        with open(path, encoding="utf-8") as f:
            names = [line.strip() for line in f if line.strip()]
    except (OSError, UnicodeError) as err:
        raise CorruptFileError(path, f"class names {path!r}: not a readable text file: {err}") from err
    if not names:
        raise CorruptFileError(path, f"class names {path!r}: the file names no class")
    if len(set(names)) != len(names):
        raise CorruptFileError(path, f"class names {path!r}: names must be unique, got {names}")
    return names


def class_ids(classes: Sequence[str], names: Sequence[str] | None = None, where: str = "") -> list[int]:
    """YOLO class id -> index into ``classes``: the identity without ``names``, else each name's
    index in ``classes`` (``ValueError`` starting with ``where`` for a name it lacks)."""
    if names is None:
        return list(range(len(classes)))
    index = {name: i for i, name in enumerate(classes)}
    unknown = [n for n in names if n not in index]
    if unknown:
        raise ValueError(f"{where}: class names {unknown} (from {CLASS_NAMES_FILE}) are not among the classes: "
                         f"{', '.join(classes)}")
    return [index[n] for n in names]


def read_yolo_txt(path: str | os.PathLike, size: tuple[int, int], classes: Sequence[str] = INSECT_CLASSES,
                  names: Sequence[str] | None = None, filename: str | None = None) -> dict[str, Any]:
    """Parse one YOLO label file of an image of ``size`` (width, height) into a raw record.

    Lines are ``class cx cy w h`` (centre and size over the image's width / height); blank lines
    are ignored. ``class`` indexes ``names`` (the dataset's ``classes.txt``, each matched by name
    to ``classes``) when given, else ``classes``. Boxes come back in pixels: ``x1 = (cx - w / 2)
    * width`` etc., computed in float64. A line that is not 5 numbers, a class that is not a whole
    number >= 0, a size <= 0, or a box more than 1 px outside the image raises
    :class:`CorruptFileError` naming the file and the line; a class id past the end of the names,
    or a name of ``names`` not in ``classes``, raises ``ValueError``.
    """
    path = os.fspath(path)
    width, height = int(size[0]), int(size[1])
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except (OSError, UnicodeError) as err:
        raise CorruptFileError(path, f"label file {path!r}: not a readable text file: {err}") from err
    id_to_label = class_ids(classes, names, f"label file {path!r}")
    known = "classes" if names is None else f"names in {CLASS_NAMES_FILE}"
    boxes, labels = [], []
    for n, line in enumerate(lines, 1):
        fields = line.split()
        if not fields:
            continue
        where = f"label file {path!r} line {n}"
        if len(fields) != 5:
            raise CorruptFileError(path, f"{where}: expected 5 values 'class cx cy w h', got {len(fields)}: {line!r}")
        try:
            values = [float(v) for v in fields]
        except ValueError:
            raise CorruptFileError(path, f"{where}: not numbers: {line!r}") from None
        cls, cx, cy, w, h = values
        if not all(math.isfinite(v) for v in values):
            raise CorruptFileError(path, f"{where}: not finite numbers: {line!r}")
        if cls != int(cls) or cls < 0:
            raise CorruptFileError(path, f"{where}: class must be a whole number >= 0, got {fields[0]!r}")
        if int(cls) >= len(id_to_label):
            raise ValueError(f"{where}: class id {int(cls)} but there are only {len(id_to_label)} {known} "
                             f"({', '.join(names if names is not None else classes)})")
        if w <= 0 or h <= 0:
            raise CorruptFileError(path, f"{where}: box width and height must be > 0, got {fields[3]} x {fields[4]}")
        box = ((cx - w / 2) * width, (cy - h / 2) * height, (cx + w / 2) * width, (cy + h / 2) * height)
        boxes.append(_clip_box(*box, width, height, where, path))
        labels.append(id_to_label[int(cls)])
    return _record(filename if filename is not None else os.path.basename(path), (width, height), boxes, labels,
                   [False] * len(labels))


def yolo_class_names(root: str | os.PathLike, split: str) -> tuple[list[str] | None, str | None]:
    """``(names, path)`` of ``root/{split}/classes.txt``, else ``root/classes.txt``; ``(None, None)``
    when neither exists."""
    for path in (os.path.join(os.fspath(root), split, CLASS_NAMES_FILE), os.path.join(os.fspath(root), CLASS_NAMES_FILE)):
        if os.path.isfile(path):
            return read_class_names(path), path
    return None, None


# --------------------------------------------------------------------------------------
# writers


def _number(v: float) -> int | float:
    v = float(v)
    return int(v) if v.is_integer() else v


def _place_image(src: str, dst: Path) -> None:
    """``dst`` = the image ``src``: a hard link, else a copy; nothing when it already is that file."""
    if dst.exists():
        if os.path.samefile(src, dst):
            return
        dst.unlink()
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _source(root: str | os.PathLike, split: str, classes: Sequence[str], annotations: str):
    from .detection import detection_dataset  # (detection imports this module)

    return detection_dataset(root, split, classes=classes, annotations=annotations)


def write_coco(root: str | os.PathLike, split: str, out: str | os.PathLike,
               classes: Sequence[str] = INSECT_CLASSES, annotations: str = "auto") -> Path:
    """Write split ``split`` of the dataset at ``root`` (read as ``annotations``: any format) as COCO.

    Writes ``out/{split}/annotations/instances_{split}.json`` and puts the images in
    ``out/{split}/images/`` (hard links, else copies; left alone when ``out`` is ``root``, which
    then holds two formats: read it with ``annotations="coco"``). Image ids count from 1 in the
    split's order, category ``id`` = class index + 1 for every class, ``bbox`` = ``[x1, y1, x2 - x1,
    y2 - y1]``, ``area`` = its ``w * h``, ``iscrowd`` = the source's ``difficult``. Returns the file.
    """
    ds = _source(root, split, classes, annotations)
    out_split = Path(out) / split
    images, anns = [], []
    for k, rec in enumerate(ds.records, 1):
        rel = os.path.relpath(rec["image"], ds.image_dir)
        _place_image(rec["image"], out_split / "images" / rel)
        images.append({"id": k, "file_name": rel.replace(os.sep, "/"), "width": rec["size"][0],
                       "height": rec["size"][1]})
        for box, label, diff in zip(rec["boxes"].tolist(), rec["labels"].tolist(), rec["difficult"].tolist()):
            x1, y1, x2, y2 = box
            w, h = x2 - x1, y2 - y1  # (exact in float64 for float32 coordinates)
            anns.append({"id": len(anns) + 1, "image_id": k, "category_id": label + 1,
                         "bbox": [_number(x1), _number(y1), _number(w), _number(h)], "area": _number(w * h),
                         "iscrowd": int(diff)})
    categories = [{"id": i + 1, "name": name, "supercategory": "none"} for i, name in enumerate(ds.classes)]
    path = out_split / "annotations" / f"instances_{split}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"images": images, "annotations": anns, "categories": categories}, indent=1))
    return path


def write_yolo_txt(root: str | os.PathLike, split: str, out: str | os.PathLike,
                   classes: Sequence[str] = INSECT_CLASSES, annotations: str = "auto") -> Path:
    """Write split ``split`` of the dataset at ``root`` (read as ``annotations``: any format) as YOLO txt.

    Writes ``out/{split}/labels/<stem>.txt`` for every image (an empty file for an image without
    objects), ``out/{split}/classes.txt`` (the class names) and puts the images in
    ``out/{split}/images/`` (hard links, else copies; left alone when ``out`` is ``root``). Lines are
    ``class cx cy w h`` with Python's shortest round-trip float text, so reading them back gives the
    source boxes exactly. YOLO txt has no difficult flag: difficult objects are written as
    ordinary ones. Returns the labels folder.
    """
    ds = _source(root, split, classes, annotations)
    out_split = Path(out) / split
    labels = out_split / "labels"
    labels.mkdir(parents=True, exist_ok=True)
    seen: dict[str, str] = {}
    for rec in ds.records:
        name = os.path.basename(rec["image"])
        stem = os.path.splitext(name)[0]
        if stem in seen:
            raise ValueError(f"write_yolo_txt: images {seen[stem]!r} and {rec['image']!r} would share the label file "
                             f"{stem}.txt")
        seen[stem] = rec["image"]
        _place_image(rec["image"], out_split / "images" / name)
        width, height = rec["size"]
        lines = []
        for (x1, y1, x2, y2), label in zip(rec["boxes"].tolist(), rec["labels"].tolist()):
            cx, cy = (x1 + x2) / 2 / width, (y1 + y2) / 2 / height
            w, h = (x2 - x1) / width, (y2 - y1) / height
            lines.append(f"{label} {cx!r} {cy!r} {w!r} {h!r}\n")
        (labels / f"{stem}.txt").write_text("".join(lines))
    (out_split / CLASS_NAMES_FILE).write_text("".join(f"{name}\n" for name in ds.classes))
    return labels


__all__ = ["ANNOTATION_FORMATS", "COCOFile", "check_annotations", "read_class_names", "read_coco_json",
           "read_yolo_txt", "resolve_annotations", "split_formats", "write_coco", "write_yolo_txt"]
