"""Detection annotations in COCO JSON and YOLO txt (same targets as VOC), and the 4-image mosaic."""
from __future__ import annotations

import json
import os
import xml.etree.ElementTree as ET

import numpy as np
import pytest
import torch
from PIL import Image

from zoo.data import (
    INSECT_CLASSES,
    COCODetection,
    DetectionDataModule,
    VOCDetection,
    YOLODetection,
    read_coco_json,
    read_yolo_txt,
    synthetic_insects,
    write_coco,
    write_yolo_txt,
)
from zoo.data.corrupt import CorruptFileError, CorruptFileWarning
from zoo.data.detection import detection_dataset, eval_transforms, train_transforms
from zoo.data.resume import SeededDataset

# ------------------------------------------------------------------------------------------
# helpers


def _voc(root, split, stem, size, objects, image=None):
    """A hand-written VOC annotation + PNG; ``objects`` = [(name, (x1, y1, x2, y2), difficult)]."""
    xml_dir, img_dir = root / split / "annotations" / "xmls", root / split / "images"
    xml_dir.mkdir(parents=True, exist_ok=True), img_dir.mkdir(parents=True, exist_ok=True)
    obj = "".join(f"<object><name>{n}</name><difficult>{int(d)}</difficult><bndbox><xmin>{b[0]}</xmin>"
                  f"<ymin>{b[1]}</ymin><xmax>{b[2]}</xmax><ymax>{b[3]}</ymax></bndbox></object>"
                  for n, b, d in objects)
    (xml_dir / f"{stem}.xml").write_text(f"<annotation><filename>{stem}.png</filename><size><width>{size[0]}"
                                         f"</width><height>{size[1]}</height></size>{obj}</annotation>")
    if image is None:
        image = np.random.default_rng(len(stem)).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(image).save(img_dir / f"{stem}.png")


def _same_items(a, b, n_seeds=1):
    """Every item of datasets ``a`` and ``b`` equal (images, targets, metas but the path's folder),
    each read under the same torch seeds."""
    assert len(a) == len(b)
    for i in range(len(a)):
        for seed in range(n_seeds):
            torch.manual_seed(seed)
            ia, ta, ma = a[i]
            torch.manual_seed(seed)
            ib, tb, mb = b[i]
            assert torch.equal(ia, ib), i
            assert ta.keys() == tb.keys() and all(torch.equal(ta[k], tb[k]) and ta[k].dtype == tb[k].dtype
                                                  for k in ta), (i, ta, tb)
            assert os.path.basename(ma.pop("path")) == os.path.basename(mb.pop("path")) and ma == mb


def _targets(ds):
    return [{k: v.tolist() for k, v in ds.target(i).items()} for i in range(len(ds))]


# ------------------------------------------------------------------------------------------
# the same images in three formats


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """A VOC set (generated insects + hand-made images: a fractional box, a difficult object,
    no object, a non-square image) and its COCO and YOLO conversions."""
    tmp = tmp_path_factory.mktemp("formats")
    src = synthetic_insects(tmp / "voc", n_train=3, n_val=1, size=64, seed=4)
    _voc(src, "train", "h0", (80, 48), [("armandi", (2.5, 3, 30.25, 47), False), ("Leconte", (40, 0, 80, 20), True)])
    _voc(src, "train", "h1", (40, 72), [])
    _voc(src, "train", "h2", (40, 72), [("linnaeus", (0, 0, 40, 72), False)])
    for split in ("train", "val"):
        write_coco(src, split, tmp / "coco")
        write_yolo_txt(src, split, tmp / "yolo")
    return tmp


def test_written_files_say_what_the_voc_files_say(converted):
    # oracle: the VOC XML and the written files parsed here with the standard library
    xml_dir = converted / "voc" / "train" / "annotations" / "xmls"
    truth = {}
    for f in sorted(os.listdir(xml_dir)):
        root = ET.parse(xml_dir / f).getroot()
        size = (int(root.findtext("size/width")), int(root.findtext("size/height")))
        objs = [(o.findtext("name"), [float(o.findtext(f"bndbox/{t}")) for t in ("xmin", "ymin", "xmax", "ymax")],
                 int(o.findtext("difficult"))) for o in root.iter("object")]
        truth[f[:-4]] = (size, objs)
    assert len(truth) == 6 and truth["h0"][1][1][2] == 1
    coco = json.loads((converted / "coco" / "train" / "annotations" / "instances_train.json").read_text())
    cats = {c["id"]: c["name"] for c in coco["categories"]}
    assert sorted(cats.values()) == sorted(INSECT_CLASSES)
    by_image = {im["id"]: [] for im in coco["images"]}
    for a in coco["annotations"]:
        by_image[a["image_id"]].append(a)
    assert sorted(os.path.splitext(im["file_name"])[0] for im in coco["images"]) == sorted(truth)
    for im in coco["images"]:
        size, objs = truth[os.path.splitext(im["file_name"])[0]]
        assert (im["width"], im["height"]) == size
        assert (converted / "coco" / "train" / "images" / im["file_name"]).is_file()
        got = [(cats[a["category_id"]], a["bbox"], a["iscrowd"]) for a in by_image[im["id"]]]
        want = [(n, [b[0], b[1], b[2] - b[0], b[3] - b[1]], d) for n, b, d in objs]
        assert got == want
    names = (converted / "yolo" / "train" / "classes.txt").read_text().split()
    assert names == list(INSECT_CLASSES)
    for stem, (size, objs) in truth.items():
        assert (converted / "yolo" / "train" / "images" / f"{stem}{'.png' if stem[0] == 'h' else '.jpeg'}").is_file()
        lines = (converted / "yolo" / "train" / "labels" / f"{stem}.txt").read_text().splitlines()
        assert len(lines) == len(objs)
        w, h = size
        for line, (name, (x1, y1, x2, y2), _) in zip(lines, objs):
            cls, cx, cy, bw, bh = line.split()
            assert names[int(cls)] == name
            np.testing.assert_allclose([float(cx), float(cy), float(bw), float(bh)],
                                       [(x1 + x2) / 2 / w, (y1 + y2) / 2 / h, (x2 - x1) / w, (y2 - y1) / h],
                                       rtol=1e-15, atol=1e-15)


@pytest.mark.parametrize("use_difficult", [False, True])
def test_the_three_formats_load_to_identical_items(converted, use_difficult):
    kw = dict(use_difficult=use_difficult, transforms=eval_transforms(64))
    voc = VOCDetection(converted / "voc", "train", **kw)
    coco = detection_dataset(converted / "coco", "train", **kw)
    assert isinstance(coco, COCODetection)
    # the raw targets in original pixels: float32 xyxy, int64 labels, the same iscrowd
    assert _targets(coco) == _targets(voc)
    assert _targets(voc)[3]["boxes"] == [[2.5, 3.0, 30.25, 47.0], [40.0, 0.0, 80.0, 20.0]]
    assert _targets(voc)[3]["iscrowd"] == [0, int(not use_difficult)]
    _same_items(voc, coco)
    # training transforms: same random draws, same items (and difficult objects dropped alike)
    train = dict(use_difficult=use_difficult, drop_difficult=True, transforms=train_transforms(64))
    _same_items(VOCDetection(converted / "voc", "train", **train),
                COCODetection(converted / "coco", "train", **train), n_seeds=2)
    yolo = detection_dataset(converted / "yolo", "train", **kw)
    assert isinstance(yolo, YOLODetection)
    if use_difficult:  # YOLO txt has no difficult flag: it matches VOC read with use_difficult
        assert _targets(yolo) == _targets(voc)
        _same_items(voc, yolo)
    else:
        assert _targets(yolo)[3]["iscrowd"] == [0, 0]
    assert [r["size"] for r in yolo.records] == [r["size"] for r in voc.records]


def test_datamodule_detects_the_format_of_each_split(converted, tmp_path):
    batches = {}
    for fmt in ("voc", "coco", "yolo"):
        dm = DetectionDataModule(root=str(converted / fmt), img_size=64, batch_size=6, augment=False,
                                 use_difficult=True)
        dm.setup("fit")
        assert dm.train_set.format == fmt and dm.val_set.format == fmt and len(dm.train_set) == 6
        dm.setup("test")
        assert dm.test_set is dm.val_set  # no test split
        batches[fmt] = next(iter(dm.val_dataloader()))
    for fmt in ("coco", "yolo"):
        torch.testing.assert_close(batches[fmt][0], batches["voc"][0], atol=0, rtol=0)
        assert [t["boxes"].tolist() for t in batches[fmt][1]] == [t["boxes"].tolist() for t in batches["voc"][1]]
    # a split in two formats must be told which one to read
    both = converted / "voc"
    write_yolo_txt(both, "val", both)
    try:
        dm = DetectionDataModule(root=str(both), img_size=64)
        with pytest.raises(ValueError, match=r"val split: .* several formats \(voc, yolo\).*annotations="):
            dm.setup("validate")
        for fmt in ("voc", "yolo"):
            dm = DetectionDataModule(root=str(both), img_size=64, annotations=fmt)
            dm.setup("validate")
            assert dm.val_set.format == fmt
    finally:
        for f in ("labels", "classes.txt"):
            p = both / "val" / f
            if p.is_dir():
                for c in p.iterdir():
                    c.unlink()
                p.rmdir()
            elif p.exists():
                p.unlink()
    (tmp_path / "train" / "images").mkdir(parents=True)
    with pytest.raises(ValueError, match="train split: no annotations"):
        DetectionDataModule(root=str(tmp_path), img_size=64).setup("fit")
    with pytest.raises(ValueError, match="annotations"):
        DetectionDataModule(annotations="json")


# ------------------------------------------------------------------------------------------
# hand-written COCO and YOLO files (not through the writers)

# three 64 x 32 images: a (two objects), b (none), c (one crowd); powers of two make the YOLO
# numbers exact
_BOXES = {"a": ([[8.0, 4.0, 24.0, 20.0], [32.0, 0.0, 64.0, 32.0]], [6, 0], [False, False]),
          "b": ([], [], []), "c": ([[0.0, 16.0, 16.0, 32.0]], [0], [True])}

_COCO = {
    "images": [{"id": 30, "file_name": "c.png", "width": 64, "height": 32},
               {"id": 10, "file_name": "a.png", "width": 64, "height": 32},
               {"id": 20, "file_name": "b.png", "width": 64, "height": 32}],
    "annotations": [{"id": 1, "image_id": 10, "category_id": 7, "bbox": [8, 4, 16, 16], "iscrowd": 0},
                    {"id": 2, "image_id": 30, "category_id": 3, "bbox": [0, 16, 16, 16], "iscrowd": 1},
                    {"id": 3, "image_id": 10, "category_id": 3, "bbox": [32.0, 0.0, 32.0, 32.0], "iscrowd": 0}],
    "categories": [{"id": 7, "name": "linnaeus"}, {"id": 3, "name": "Boerner"}],
}


def _hand_root(tmp_path, fmt):
    split = tmp_path / fmt / "train"
    (split / "images").mkdir(parents=True)
    for k, stem in enumerate("abc"):
        Image.new("RGB", (64, 32), (40 * k, 90, 200)).save(split / "images" / f"{stem}.png")
    if fmt == "coco":
        (split / "annotations").mkdir()
        (split / "annotations" / "instances_train.json").write_text(json.dumps(_COCO))
    else:
        (split / "labels").mkdir()
        (split / "classes.txt").write_text("linnaeus\nBoerner\n")
        (split / "labels" / "a.txt").write_text("0 0.25 0.375 0.25 0.5\n\n1 0.75 0.5 0.5 1.0\n")
        (split / "labels" / "c.txt").write_text("1 0.125 0.75 0.25 0.5\n")  # (b.png: no label file)
    return tmp_path / fmt


@pytest.mark.parametrize("fmt", ["coco", "yolo"])
def test_hand_written_files_give_the_known_boxes(tmp_path, fmt):
    ds = detection_dataset(_hand_root(tmp_path, fmt), "train")
    assert [r["filename"] for r in ds.records] == ["a.png", "b.png", "c.png"]
    for rec, stem in zip(ds.records, "abc"):
        boxes, labels, difficult = _BOXES[stem]
        assert rec["boxes"].dtype == torch.float32 and rec["labels"].dtype == torch.int64
        assert rec["boxes"].reshape(-1).tolist() == sum(boxes, [])
        assert rec["labels"].tolist() == labels
        assert rec["difficult"].tolist() == (difficult if fmt == "coco" else [False] * len(labels))
        assert rec["size"] == (64, 32)
    # the same through VOC (hand-written XML): identical eval items
    for stem in "abc":
        boxes, labels, difficult = _BOXES[stem]
        _voc(tmp_path / "voc", "train", stem, (64, 32),
             [(INSECT_CLASSES[lab], [int(v) for v in b], d if fmt == "coco" else False)
              for b, lab, d in zip(boxes, labels, difficult)],
             image=np.array(Image.open(tmp_path / fmt / "train" / "images" / f"{stem}.png")))
    _same_items(VOCDetection(tmp_path / "voc", "train", transforms=eval_transforms(32)),
                detection_dataset(tmp_path / fmt, "train", transforms=eval_transforms(32)))
    # the readers alone
    if fmt == "coco":
        recs = read_coco_json(tmp_path / fmt / "train" / "annotations" / "instances_train.json")
        assert [r["labels"].tolist() for r in recs] == [[6, 0], [], [0]]
    else:
        rec = read_yolo_txt(tmp_path / fmt / "train" / "labels" / "a.txt", (64, 32))  # ids index INSECT_CLASSES
        assert rec["labels"].tolist() == [0, 1] and rec["boxes"].tolist() == _BOXES["a"][0]


# ------------------------------------------------------------------------------------------
# bad COCO / YOLO input names the file


def _edit_coco(root, edit):
    data = json.loads(json.dumps(_COCO))
    edit(data)
    path = root / "train" / "annotations" / "instances_train.json"
    path.write_text(json.dumps(data))
    return path


@pytest.mark.parametrize("case, edit, error, match", [
    ("syntax", None, CorruptFileError, "not a readable JSON file"),
    ("no images", lambda d: d.pop("images"), CorruptFileError, "'images' must be a list"),
    ("size", lambda d: d["images"][0].update(width=0), CorruptFileError, "positive whole pixels"),
    ("dup id", lambda d: d["images"][1].update(id=30), CorruptFileError, "image id 30 appears twice"),
    ("image id", lambda d: d["annotations"][0].update(image_id=99), CorruptFileError, "image id 99, which"),
    ("category id", lambda d: d["annotations"][0].update(category_id=5), CorruptFileError, "category id 5, which"),
    ("unknown class", lambda d: d["categories"].append({"id": 9, "name": "Beetle"}), ValueError,
     r"category 'Beetle' \(id 9\) is not one of the classes"),
    ("bbox", lambda d: d["annotations"][0].update(bbox=[8, 4, -1, 16]), CorruptFileError,
     r"annotation 1 of image id 10 \(a.png\): box .* is empty"),
    ("outside", lambda d: d["annotations"][2].update(bbox=[40, 0, 32, 32]), CorruptFileError,
     "annotation 3 of image id 10 .* outside the 64 x 32 image"),
    ("short bbox", lambda d: d["annotations"][1].update(bbox=[0, 16, 16]), CorruptFileError,
     "bbox must be 4 finite numbers"),
    ("iscrowd", lambda d: d["annotations"][1].update(iscrowd=2), CorruptFileError, "iscrowd must be 0 or 1"),
])
def test_bad_coco_names_the_file(tmp_path, case, edit, error, match):
    root = _hand_root(tmp_path, "coco")
    if edit is None:
        path = root / "train" / "annotations" / "instances_train.json"
        path.write_text(json.dumps(_COCO)[:-5])
    else:
        path = _edit_coco(root, edit)
    with pytest.raises(error, match=match) as err:
        COCODetection(root, "train")
    assert f"annotation {str(path)!r}" in str(err.value)
    if error is ValueError:
        assert not isinstance(err.value, CorruptFileError)  # the classes do not fit: never skipped


def test_coco_bad_box_leaves_its_image_out_with_skip_corrupt_and_missing_image_raises(tmp_path):
    root = _hand_root(tmp_path, "coco")
    path = _edit_coco(root, lambda d: d["annotations"][1].update(bbox=[0, 16, 0, 16]))
    with pytest.warns(CorruptFileWarning, match=r"leaving out 1 of 3 .*instances_train.json.*image id 30 \(c.png\)"):
        ds = COCODetection(root, "train", skip_corrupt=True)
    assert [r["filename"] for r in ds.records] == ["a.png", "b.png"]
    assert list(ds.corrupt.left_out) == [str(root / "train" / "images" / "c.png")]
    (root / "train" / "images" / "b.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"image id 20: no image file .*b.png") as err:
        COCODetection(root, "train", skip_corrupt=True)
    assert str(path) in str(err.value)


@pytest.mark.parametrize("line, error, match", [
    ("0 0.5 0.5 0.25", CorruptFileError, r"line 2: expected 5 values 'class cx cy w h', got 4"),
    ("0 0.5 half 0.25 0.25", CorruptFileError, "line 2: not numbers"),
    ("0 0.5 nan 0.25 0.25", CorruptFileError, "line 2: not finite"),
    ("1.5 0.5 0.5 0.25 0.25", CorruptFileError, "line 2: class must be a whole number"),
    ("-1 0.5 0.5 0.25 0.25", CorruptFileError, "line 2: class must be a whole number"),
    ("0 0.5 0.5 0 0.25", CorruptFileError, "line 2: box width and height must be > 0"),
    ("0 0.9 0.5 0.5 0.25", CorruptFileError, r"line 2: box .* outside the 64 x 32 image"),
    ("2 0.5 0.5 0.25 0.25", ValueError, r"line 2: class id 2 but there are only 2 names in classes.txt"),
])
def test_bad_yolo_line_names_the_file_and_line(tmp_path, line, error, match):
    root = _hand_root(tmp_path, "yolo")
    path = root / "train" / "labels" / "c.txt"
    path.write_text(f"1 0.125 0.75 0.25 0.5\n{line}\n")
    with pytest.raises(error, match=match) as err:
        YOLODetection(root, "train")
    assert f"label file {str(path)!r} line 2" in str(err.value)
    if error is CorruptFileError:  # skip_corrupt leaves the image out, as a bad VOC file
        with pytest.warns(CorruptFileWarning, match="c.txt"):
            ds = YOLODetection(root, "train", skip_corrupt=True)
        assert [r["filename"] for r in ds.records] == ["a.png", "b.png"]
    else:
        assert not isinstance(err.value, CorruptFileError)


def test_yolo_layout_errors(tmp_path):
    root = _hand_root(tmp_path, "yolo")
    (root / "train" / "classes.txt").write_text("linnaeus\nBeetle\n")
    with pytest.raises(ValueError, match=r"classes.txt.*\['Beetle'\].* not among the classes"):
        YOLODetection(root, "train")
    (root / "train" / "classes.txt").unlink()
    assert YOLODetection(root, "train").records[0]["labels"].tolist() == [0, 1]  # ids index the classes
    (root / "train" / "labels" / "d.txt").write_text("0 0.5 0.5 0.1 0.1\n")
    with pytest.raises(FileNotFoundError, match=r"d.txt': no image for it, expected .*d.jpeg"):
        YOLODetection(root, "train")


# ------------------------------------------------------------------------------------------
# mosaic

# colours far (> 40 on some channel) from every blend of another one with the white background
# (checked below), so a pixel of one colour's region is never a resampled edge of another
_PALETTE = [(0, 0, 0), (0, 0, 192), (0, 96, 0), (0, 96, 192), (0, 192, 96), (0, 255, 255), (96, 0, 96),
            (96, 96, 0), (96, 255, 0), (192, 0, 0), (192, 0, 255), (192, 192, 0), (255, 0, 96), (255, 96, 0),
            (255, 192, 0)]
_BG = (255, 255, 255)
# per image: (width, height), rectangles (x1, y1, x2, y2), each its own colour / class (in order)
_SCENES = [((80, 60), [(4, 4, 30, 24), (40, 30, 76, 56), (50, 2, 60, 20)]),
           ((64, 64), [(0, 0, 20, 20), (30, 26, 62, 40), (8, 44, 24, 64)]),
           ((48, 96), [(6, 6, 40, 30), (10, 50, 20, 90)]),
           ((100, 50), [(10, 10, 40, 40), (60, 5, 95, 25), (70, 32, 98, 48)]),
           ((70, 70), [(20, 20, 50, 50), (2, 56, 66, 68), (54, 2, 68, 16)])]
S = 64


def test_palette_is_separable():
    t = np.linspace(0, 1, 201)[:, None]
    for i, c in enumerate(_PALETTE):
        for j, d in enumerate(_PALETTE):
            blend = np.asarray(d, float) + t * (np.asarray(_BG, float) - d)
            assert i == j or np.abs(blend - c).max(1).min() > 40, (c, d)
        assert np.abs(np.asarray(c) - 114).max() > 90 and np.abs(np.asarray(c) - 255).max() > 90


@pytest.fixture(scope="module")
def rect_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("mosaic")
    k = 0
    for n, ((w, h), rects) in enumerate(_SCENES):
        img = np.full((h, w, 3), _BG, np.uint8)
        objects = []
        for r in rects:
            img[r[1]:r[3], r[0]:r[2]] = _PALETTE[k]
            objects.append((f"c{k}", r, False))
            k += 1
        _voc(root, "train", f"s{n}", (w, h), objects, image=img)
        if n == 0:
            _voc(root, "val", f"s{n}", (w, h), objects, image=img)
    return root


def _classes():
    return [f"c{k}" for k in range(sum(len(r) for _, r in _SCENES))]


def _full_area():
    """Each colour's area at the mosaic's tile scale (long side S)."""
    out = []
    for (w, h), rects in _SCENES:
        nw, nh = round(w * S / max(w, h)), round(h * S / max(w, h))
        out += [(x2 - x1) * nw / w * (y2 - y1) * nh / h for x1, y1, x2, y2 in rects]
    return out


@pytest.mark.parametrize("augment", ["none", "flips", "affine"])
def test_mosaic_boxes_enclose_exactly_their_coloured_rectangles(rect_root, augment):
    tf = {"none": train_transforms(S, augment=False),
          "flips": train_transforms(S, degrees=0, translate=0, scale=(1, 1), hflip=0.5, vflip=0.5, jitter=0),
          "affine": train_transforms(S, degrees=10, translate=0.1, scale=(0.8, 1.2), hflip=0.5, vflip=0, jitter=0),
          }[augment]
    ds = VOCDetection(rect_root, "train", _classes(), tf, drop_difficult=True, mosaic=1.0)
    full = _full_area()
    tol = 1.5
    boxes_seen = dropped_seen = 0
    for seed in range(12):
        torch.manual_seed(seed)
        i = seed % len(ds)
        image, t, meta = ds[i]
        assert image.shape == (3, S, S) and meta["orig_size"] == (S, S) and meta["path"] == ds.records[i]["image"]
        paths = meta["mosaic"]
        assert len(paths) == 4 and len(set(paths)) == 4 and paths[0] == ds.records[i]["image"]
        in_tiles = {k for p in paths for k in ds.records[[r["image"] for r in ds.records].index(p)]["labels"].tolist()}
        b, labels = t["boxes"], t["labels"].tolist()
        assert (b >= 0).all() and (b <= S).all() and len(set(labels)) == len(labels) and set(labels) <= in_tiles
        pix = image.permute(1, 2, 0).numpy() * 255
        for k in range(len(_PALETTE)):
            ys, xs = np.nonzero(np.abs(pix - np.asarray(_PALETTE[k])).max(-1) < 20)
            if k in labels:
                assert k in in_tiles
                x1, y1, x2, y2 = b[labels.index(k)].tolist()
                if not len(xs):  # the affine map pushed all but a resampled sliver out of view
                    assert augment == "affine" and (min(x1, y1) < 0.5 or max(x2, y2) > S - 0.5), (seed, k)
                    continue
                # every pixel [c, c + 1) of the colour inside its box ...
                assert xs.min() >= x1 - tol and xs.max() + 1 <= x2 + tol, (seed, k, (x1, x2), (xs.min(), xs.max()))
                assert ys.min() >= y1 - tol and ys.max() + 1 <= y2 + tol, (seed, k, (y1, y2), (ys.min(), ys.max()))
                if augment != "affine":  # ... and the box no bigger than them
                    assert x1 >= xs.min() - tol and x2 <= xs.max() + 1 + tol, (seed, k)
                    assert y1 >= ys.min() - tol and y2 <= ys.max() + 1 + tol, (seed, k)
                    # kept: not tiny (>= 2 px a side, >= 20% of the rectangle in view)
                    assert min(x2 - x1, y2 - y1) >= 2 and (x2 - x1) * (y2 - y1) >= 0.2 * full[k] - 1e-3, (seed, k)
                    boxes_seen += 1
            elif len(xs):  # visible without a box: only when dropped for being tiny
                assert k in in_tiles
                vw, vh = xs.max() + 1 - xs.min(), ys.max() + 1 - ys.min()
                if augment != "affine":
                    assert min(vw, vh) < 2 + tol or vw * vh < 0.2 * full[k] + tol * (vw + vh), (seed, k, vw, vh)
                    dropped_seen += 1
                else:  # (the affine map may push a rectangle out of view: little of it left)
                    assert min(vw, vh) < 8 or vw * vh < 0.5 * full[k], (seed, k, vw, vh)
    if augment != "affine":
        assert boxes_seen > 30 and dropped_seen > 0


def test_mosaic_is_reproducible_per_seed_and_off_draws_nothing(rect_root):
    ds = VOCDetection(rect_root, "train", _classes(), train_transforms(S, augment=False), mosaic=0.5)
    seeded = SeededDataset(ds)
    state = torch.get_rng_state()
    a, b = seeded[(2, 123, 0)], seeded[(2, 123, 0)]
    assert torch.equal(torch.get_rng_state(), state)  # the global stream is left as it was
    assert torch.equal(a[1][0], b[1][0]) and torch.equal(a[1][1]["boxes"], b[1][1]["boxes"])
    kinds = {"mosaic" in seeded[(2, s, 0)][1][2] for s in range(12)}
    assert kinds == {True, False}  # p = 0.5: both happen
    plain = VOCDetection(rect_root, "train", _classes(), eval_transforms(S))
    plain[0]
    assert torch.equal(torch.get_rng_state(), state)  # mosaic 0: no random draw at all
    with pytest.raises(ValueError, match="mosaic"):
        VOCDetection(rect_root, "train", _classes(), mosaic=1.5)
    with pytest.raises(ValueError, match="mosaic_size"):
        VOCDetection(rect_root, "train", _classes(), mosaic=0.5)  # no transforms, no size


def test_datamodule_mosaic_option(rect_root):
    dm = DetectionDataModule(root=str(rect_root), classes=_classes(), img_size=64, batch_size=3,
                             augment={"mosaic": 1.0, "degrees": 0, "translate": 0, "scale": [1, 1], "jitter": 0})
    dm.setup("fit")
    assert dm.train_set.mosaic == 1.0 and dm.train_set.mosaic_size == 64
    images, targets, metas = next(iter(dm.train_dataloader()))
    assert images.shape == (3, 3, 64, 64) and all(len(m["mosaic"]) == 4 for m in metas)
    default = DetectionDataModule(root=str(rect_root), classes=_classes(), img_size=64)
    default.setup("fit")
    assert default.train_set.mosaic == 0.0
    with pytest.raises(ValueError, match="augment: mosaic"):
        DetectionDataModule(augment={"mosaic": 2})
