"""Detection data: VOC XML reading, the generated insects default, transforms, batches, anchors."""
from __future__ import annotations

import os
import xml.etree.ElementTree as ET

import numpy as np
import pytest
import torch
from PIL import Image

import zoo.data.detection as det
from zoo.data import (
    INSECT_CLASSES,
    DetectionDataModule,
    VOCDetection,
    detection_collate,
    kmeans_anchors,
    read_voc_xml,
    synthetic_insects,
    train_transforms,
)
from zoo.data.detection import MultiScaleCollate, ensure_synthetic, eval_transforms, multiscale_sizes
from zoo.data.synthetic_insects import render_scene

# ------------------------------------------------------------------------------------------
# helpers


def _xml(path, width, height, objects, filename="x.jpeg"):
    """A VOC file; ``objects`` = [(name, (x1, y1, x2, y2), difficult)]."""
    obj = "".join(
        f"<object><name>{n}</name><difficult>{int(d)}</difficult><bndbox><xmin>{b[0]}</xmin><ymin>{b[1]}</ymin>"
        f"<xmax>{b[2]}</xmax><ymax>{b[3]}</ymax></bndbox></object>"
        for n, b, d in objects
    )
    path.write_text(f"<annotation><filename>{filename}</filename><size><width>{width}</width>"
                    f"<height>{height}</height><depth>3</depth></size>{obj}</annotation>")


def _dataset(root, split, stem, width, height, objects, image=True, ext=".png", colour=(200, 190, 180)):
    xml_dir, img_dir = root / split / "annotations" / "xmls", root / split / "images"
    xml_dir.mkdir(parents=True, exist_ok=True)
    img_dir.mkdir(parents=True, exist_ok=True)
    _xml(xml_dir / f"{stem}.xml", width, height, objects, filename=stem + ext)
    if image:
        Image.new("RGB", (width, height), colour).save(img_dir / f"{stem}{ext}")
    return xml_dir / f"{stem}.xml", img_dir / f"{stem}{ext}"


def _tray_colour(img: np.ndarray) -> np.ndarray:
    return np.median(img.reshape(-1, 3), axis=0)


def _insect_pixels(img: np.ndarray, threshold: float) -> np.ndarray:
    """Pixels far from the tray colour (the tray, its gradient, noise and frame stay within ~50)."""
    return np.abs(img.astype(np.float32) - _tray_colour(img)).max(-1) > threshold


# ------------------------------------------------------------------------------------------
# the generated default


def test_render_scene_boxes_are_tight_around_the_insects():
    # oracle: the pixels that differ from the tray, found independently of the renderer
    for seed in range(8):
        img, boxes, labels = render_scene(160, np.random.default_rng(seed))
        assert len(boxes) >= 1 and ((labels >= 0) & (labels < 7)).all()
        insect = _insect_pixels(img, 65)
        covered = np.zeros_like(insect)
        for x1, y1, x2, y2 in boxes:
            assert 0 <= x1 < x2 <= 160 and 0 <= y1 < y2 <= 160
            covered[y1:y2, x1:x2] = True
            inside = insect[y1:y2, x1:x2]
            # every side of the box touches an insect pixel: the box is tight
            assert inside[0].any() and inside[-1].any() and inside[:, 0].any() and inside[:, -1].any()
        assert not (insect & ~covered).any(), "insect pixels outside every box"


def test_synthetic_round_trip_through_the_voc_reader(tmp_path):
    root = synthetic_insects(tmp_path / "ins", n_train=6, n_val=2, size=160, seed=3)
    assert sorted(os.listdir(root / "train" / "images")) == [f"{i:05d}.jpeg" for i in range(6)]
    train, val = VOCDetection(root, "train"), VOCDetection(root, "val")
    assert len(train) == 6 and len(val) == 2
    labels = torch.cat([r["labels"] for r in train.records])
    assert len(labels) >= 12 and len(labels.unique()) >= 4  # 1-15 insects per image of 7 classes
    for i in range(len(train)):
        image, target, meta = train[i]
        assert image.shape == (3, 160, 160) and image.dtype == torch.float32
        assert meta["orig_size"] == (160, 160) and meta["path"].endswith(f"{i:05d}.jpeg")
        b = target["boxes"]
        assert (b[:, :2] >= 0).all() and (b[:, 2:] <= 160).all() and (b[:, 2:] > b[:, :2]).all()
        assert (target["iscrowd"] == 0).all() and target["labels"].dtype == torch.int64
        # after JPEG: every box side still touches a clearly non-tray pixel
        insect = _insect_pixels((image.permute(1, 2, 0).numpy() * 255).round(), 45)
        for x1, y1, x2, y2 in b.long().tolist():
            inside = insect[y1:y2, x1:x2]
            assert inside[0].any() and inside[-1].any() and inside[:, 0].any() and inside[:, -1].any()
    # the XML is the VOC layout the reader expects, written with integer coordinates
    xml = ET.parse(root / "train" / "annotations" / "xmls" / "00000.xml").getroot()
    assert xml.findtext("filename") == "00000.jpeg" and xml.findtext("size/width") == "160"
    assert xml.find("object/difficult").text == "0" and xml.find("object/name").text in INSECT_CLASSES
    # deterministic given the seed
    again = synthetic_insects(tmp_path / "again", n_train=2, n_val=1, size=160, seed=3)
    for rel in ("annotations/xmls/00000.xml", "annotations/xmls/00001.xml", "images/00000.jpeg", "images/00001.jpeg"):
        assert (root / "train" / rel).read_bytes() == (again / "train" / rel).read_bytes()


def test_denser_training_scenes_leave_val_unchanged(tmp_path):
    plain = synthetic_insects(tmp_path / "plain", n_train=4, n_val=2, size=128, seed=5)
    dense = synthetic_insects(tmp_path / "dense", n_train=4, n_val=2, size=128, seed=5, train_insects=[12, 14])
    for rel in ("images/00000.jpeg", "images/00001.jpeg", "annotations/xmls/00001.xml"):
        assert (plain / "val" / rel).read_bytes() == (dense / "val" / rel).read_bytes()
    counts = [len(r["labels"]) for r in VOCDetection(dense, "train").records]
    # at most 14 per scene; an insect with no free place in 20 tries is left out, so allow a few fewer
    assert max(counts) <= 14 and min(counts) >= 6 and sum(counts) > sum(
        len(r["labels"]) for r in VOCDetection(plain, "train").records)
    for bad in ([0, 3], [5, 4], [3]):
        with pytest.raises(ValueError, match="train_insects"):
            synthetic_insects(tmp_path / "bad", n_train=1, n_val=1, size=64, train_insects=bad)


# ------------------------------------------------------------------------------------------
# augmentation keeps boxes around their objects

_COLOURS = ((230, 20, 20), (20, 200, 30), (30, 40, 230), (240, 220, 10))


def _rectangles_scene():
    """A 120 x 90 plain image with 4 solid rectangles (one near the edge) and their exact boxes."""
    img = np.full((90, 120, 3), 170, np.uint8)
    boxes = [(5, 4, 40, 24), (60, 10, 75, 70), (20, 50, 55, 80), (95, 60, 120, 90)]
    for (x1, y1, x2, y2), c in zip(boxes, _COLOURS):
        img[y1:y2, x1:x2] = c
    target = {"boxes": torch.tensor(boxes, dtype=torch.float32), "labels": torch.arange(4),
              "iscrowd": torch.zeros(4, dtype=torch.int64)}
    return Image.fromarray(img), target


@pytest.mark.parametrize("degrees, as_tensor", [((15.0, 15.0), False), ((-15.0, -15.0), False), (12.0, True)])
def test_train_augmentation_boxes_stay_inside_and_enclose_their_objects(degrees, as_tensor):
    image, target = _rectangles_scene()
    if as_tensor:  # the uint8 tensor kernels, not PIL's
        image = torch.from_numpy(np.array(image)).permute(2, 0, 1).contiguous()
    tf = train_transforms(96, degrees=degrees, translate=0.2, scale=(0.6, 1.5), hflip=0.5, vflip=0.5, jitter=0.0)
    tol = 1.5
    kept = dropped = 0
    for seed in range(25):
        torch.manual_seed(seed)
        out, t, geo = tf(image, {k: v.clone() for k, v in target.items()})
        assert out.shape == (3, 96, 96) and out.dtype == torch.float32
        assert 0.0 <= out.min() and out.max() <= 1.0
        assert geo == {"scale": 0.8, "pad": (0, 12)}  # 120 x 90 -> 96 x 72, padded top and bottom
        b = t["boxes"]
        assert (b >= 0).all() and (b[:, [0, 2]] <= 96).all() and (b[:, [1, 3]] <= 96).all()
        assert ((b[:, 2:] - b[:, :2]) >= 2).all()  # sanitized
        assert t["labels"].shape == t["iscrowd"].shape == (len(b),)
        pix = (out.permute(1, 2, 0).numpy() * 255).astype(np.float32)
        for label, colour in enumerate(_COLOURS):
            ys, xs = np.nonzero(np.abs(pix - np.asarray(colour)).max(-1) < 50)
            rows = (t["labels"] == label).nonzero().flatten()
            if len(rows) == 0:  # dropped: only when (almost) nothing of it is left in view
                assert len(xs) < 20, f"seed {seed}: object {label} visible ({len(xs)} px) but its box was dropped"
                dropped += 1
                continue
            kept += 1
            x1, y1, x2, y2 = b[rows[0]].tolist()
            if len(xs) == 0:
                continue
            # every pixel of the object (pixel [c, c + 1)) lies inside its box ...
            assert xs.min() >= x1 - tol and xs.max() + 1 <= x2 + tol, (seed, label, (x1, x2), (xs.min(), xs.max()))
            assert ys.min() >= y1 - tol and ys.max() + 1 <= y2 + tol, (seed, label, (y1, y2), (ys.min(), ys.max()))
            # ... and, unless clipped at the image border (a rotated corner out of view leaves
            # slack), the box is the enclosing box of the rotated rectangle, not bigger
            if len(xs) > 30 and min(x1, y1) > 0.5 and max(x2, y2) < 95.5:
                assert xs.min() - x1 <= 3.5 and x2 - (xs.max() + 1) <= 3.5, (seed, label)
                assert ys.min() - y1 <= 3.5 and y2 - (ys.max() + 1) <= 3.5, (seed, label)
    assert kept > 60  # most objects stay in view


@pytest.mark.parametrize("as_tensor", [False, True])
def test_rotation_fills_with_the_letterbox_gray(as_tensor):
    image = Image.new("RGB", (64, 64), (250, 250, 250))
    if as_tensor:
        image = torch.full((3, 64, 64), 250, dtype=torch.uint8)
    target = {"boxes": torch.tensor([[10.0, 10, 20, 20]]), "labels": torch.tensor([1]),
              "iscrowd": torch.tensor([0])}
    out, _, _ = train_transforms(64, degrees=(45.0, 45.0), translate=0.0, scale=(1.0, 1.0), hflip=0.0, vflip=0.0,
                                 jitter=0.0)(image, target)
    for y, x in ((0, 0), (0, 63), (63, 0), (63, 63)):  # the corners come from outside the source
        torch.testing.assert_close(out[:, y, x] * 255, torch.full((3,), 114.0), atol=1, rtol=0)
    torch.testing.assert_close(out[:, 32, 32] * 255, torch.full((3,), 250.0), atol=1, rtol=0)


def test_eval_transforms_letterbox_and_map_back():
    image, target = _rectangles_scene()
    out, t, geo = eval_transforms(64)(image, target)
    assert out.shape == (3, 64, 64)
    scale, (left, top) = geo["scale"], geo["pad"]
    assert scale == pytest.approx(64 / 120) and (left, top) == (0, 8)
    # orig = (net - pad) / scale recovers the annotation
    back = (t["boxes"] - torch.tensor([left, top, left, top])) / scale
    torch.testing.assert_close(back, target["boxes"], atol=1.0, rtol=0)
    # gray padding, the rectangles' colours where their boxes say
    assert torch.allclose(out[:, :top - 1], torch.tensor(114 / 255), atol=1 / 255)
    x1, y1, x2, y2 = t["boxes"][1].round().long().tolist()
    centre = out[:, (y1 + y2) // 2, (x1 + x2) // 2] * 255
    torch.testing.assert_close(centre, torch.tensor(_COLOURS[1], dtype=torch.float32), atol=3, rtol=0)


def test_large_jpeg_decoded_at_reduced_scale_keeps_boxes_and_meta_right(tmp_path):
    img = np.full((192, 256, 3), 200, np.uint8)
    img[40:100, 60:180] = (20, 40, 220)
    xml_path, _ = _dataset(tmp_path, "val", "big", 256, 192, [("Boerner", (60, 40, 180, 100), False)], image=False)
    Image.fromarray(img).save(tmp_path / "val" / "images" / "big.jpeg", quality=95)
    small, size = det.open_image(str(tmp_path / "val" / "images" / "big.jpeg"), 64)
    assert size == (256, 192) and small.size == (128, 96)  # decoded at 1/2
    out, t, meta = VOCDetection(tmp_path, "val", transforms=eval_transforms(64))[0]
    assert meta["orig_size"] == (192, 256) and meta["scale"] == pytest.approx(0.25) and meta["pad"] == (0, 8)
    pad = torch.tensor([0.0, 8.0, 0.0, 8.0])
    torch.testing.assert_close((t["boxes"] - pad) / meta["scale"], torch.tensor([[60.0, 40, 180, 100]]),
                               atol=2.0, rtol=0)
    x1, y1, x2, y2 = t["boxes"][0].tolist()
    ys, xs = np.nonzero(np.abs(out.permute(1, 2, 0).numpy() * 255 - (20, 40, 220)).max(-1) < 40)
    assert abs(xs.min() - x1) <= 1 and abs(xs.max() + 1 - x2) <= 1
    assert abs(ys.min() - y1) <= 1 and abs(ys.max() + 1 - y2) <= 1


# ------------------------------------------------------------------------------------------
# bad annotations name the file


def test_good_annotation_is_read(tmp_path):
    _xml(tmp_path / "a.xml", 50, 40, [("Linnaeus", (1, 2, 50, 41), False), ("linnaeus", (0, 0, 5, 5), True)])
    r = read_voc_xml(tmp_path / "a.xml", INSECT_CLASSES)
    assert r["filename"] == "x.jpeg" and r["size"] == (50, 40)
    torch.testing.assert_close(r["boxes"], torch.tensor([[1.0, 2, 50, 40], [0, 0, 5, 5]]))  # 1 px over: clipped
    assert r["labels"].tolist() == [2, 6] and r["difficult"].tolist() == [False, True]
    assert r["boxes"].dtype == torch.float32 and r["labels"].dtype == torch.int64 and r["difficult"].dtype == torch.bool


@pytest.mark.parametrize(
    "case, objects, match",
    [
        ("outside", [("Boerner", (10, 10, 60, 30), False)], "outside"),
        ("negative", [("Boerner", (-3, 10, 20, 30), False)], "outside"),
        ("empty", [("Boerner", (20, 10, 20, 30), False)], "empty"),
        ("unknown", [("Beetle", (1, 1, 10, 10), False)], r"unknown class 'Beetle'.*Boerner, Leconte"),
    ],
)
def test_bad_boxes_and_classes_name_the_file(tmp_path, case, objects, match):
    xml_path, _ = _dataset(tmp_path, "train", case, 50, 40, objects)
    with pytest.raises(ValueError, match=match) as err:
        read_voc_xml(xml_path, INSECT_CLASSES)
    assert str(xml_path) in str(err.value)
    with pytest.raises(ValueError) as err:  # the dataset fails at construction
        VOCDetection(tmp_path, "train")
    assert str(xml_path) in str(err.value)


def test_malformed_xml_and_missing_fields_name_the_file(tmp_path):
    bad = tmp_path / "bad.xml"
    bad.write_text("<annotation><size><width>10</width>")
    with pytest.raises(ValueError, match="bad.xml") as err:
        read_voc_xml(bad)
    assert str(bad) in str(err.value)
    nosize = tmp_path / "nosize.xml"
    nosize.write_text("<annotation><object><name>Boerner</name></object></annotation>")
    with pytest.raises(ValueError, match=r"nosize\.xml.*size"):
        read_voc_xml(nosize)
    nobox = tmp_path / "nobox.xml"
    nobox.write_text("<annotation><size><width>9</width><height>9</height></size>"
                     "<object><name>Boerner</name><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>5</xmax>"
                     "</bndbox></object></annotation>")
    with pytest.raises(ValueError, match=r"nobox\.xml.*ymax"):
        read_voc_xml(nobox)


def test_missing_image_names_xml_and_expected_image(tmp_path):
    _dataset(tmp_path, "train", "a", 50, 40, [("Boerner", (1, 1, 10, 10), False)])
    xml_path, _ = _dataset(tmp_path, "train", "b", 50, 40, [("Boerner", (1, 1, 10, 10), False)], image=False)
    with pytest.raises(FileNotFoundError) as err:
        VOCDetection(tmp_path, "train")
    msg = str(err.value)
    assert str(xml_path) in msg and str(tmp_path / "train" / "images" / "b.jpeg") in msg


def test_image_size_differing_from_the_xml_names_both(tmp_path):
    xml_path, img_path = _dataset(tmp_path, "val", "a", 50, 40, [("Boerner", (1, 1, 10, 10), False)])
    Image.new("RGB", (40, 50)).save(img_path)
    ds = VOCDetection(tmp_path, "val")
    with pytest.raises(ValueError) as err:
        ds[0]
    assert str(xml_path) in str(err.value) and str(img_path) in str(err.value)


# ------------------------------------------------------------------------------------------
# difficult objects, the datamodule on a user's folder, predict


def _difficult_root(tmp_path):
    objects = [("armandi", (10, 10, 40, 30), False), ("coleoptera", (50, 20, 70, 50), True)]
    for split in ("train", "val"):
        _dataset(tmp_path, split, "a", 80, 60, objects, ext=".jpg")
    return tmp_path


def test_difficult_objects_are_not_trained_on_but_ignored_in_eval(tmp_path):
    root = _difficult_root(tmp_path)
    dm = DetectionDataModule(root=str(root), img_size=64, batch_size=1, augment=False)
    dm.setup("fit")
    _, train_t, _ = next(iter(dm.train_dataloader()))
    assert train_t[0]["labels"].tolist() == [4] and train_t[0]["iscrowd"].tolist() == [0]
    _, val_t, val_m = next(iter(dm.val_dataloader()))
    assert val_t[0]["labels"].tolist() == [4, 5] and val_t[0]["iscrowd"].tolist() == [0, 1]
    # val boxes map back to the annotation: orig = (net - pad) / scale
    m = val_m[0]
    assert m["orig_size"] == (60, 80) and m["scale"] == pytest.approx(0.8) and m["pad"] == (0, 8)
    pad = torch.tensor([m["pad"][0], m["pad"][1]] * 2, dtype=torch.float32)
    torch.testing.assert_close((val_t[0]["boxes"] - pad) / m["scale"],
                               torch.tensor([[10.0, 10, 40, 30], [50, 20, 70, 50]]), atol=0.7, rtol=0)
    used = DetectionDataModule(root=str(root), img_size=64, batch_size=1, augment=False, use_difficult=True)
    used.setup("fit")
    assert used.train_set[0][1]["labels"].tolist() == [4, 5] and used.train_set[0][1]["iscrowd"].tolist() == [0, 0]
    assert used.val_set[0][1]["iscrowd"].tolist() == [0, 0]
    # test falls back to val when there is no annotated test split
    dm.setup("test")
    assert dm.test_set is dm.val_set


def test_predict_dir_gives_empty_targets_and_metas(tmp_path):
    pred = tmp_path / "pred"
    pred.mkdir()
    Image.new("RGB", (60, 30), (10, 20, 30)).save(pred / "b.png")
    Image.new("RGB", (30, 60), (10, 20, 30)).save(pred / "a.jpeg")
    (pred / "notes.txt").write_text("not an image")
    dm = DetectionDataModule(root=str(_difficult_root(tmp_path / "data")), img_size=32, batch_size=4,
                             predict_dir=str(pred))
    dm.setup("predict")
    images, targets, metas = next(iter(dm.predict_dataloader()))
    assert images.shape == (2, 3, 32, 32)
    assert [os.path.basename(m["path"]) for m in metas] == ["a.jpeg", "b.png"]
    assert [m["orig_size"] for m in metas] == [(60, 30), (30, 60)]
    assert metas[0]["pad"] == (8, 0) and metas[1]["pad"] == (0, 8)
    assert all(t["boxes"].shape == (0, 4) and t["labels"].shape == t["iscrowd"].shape == (0,) for t in targets)


# ------------------------------------------------------------------------------------------
# batches


def _item(n_boxes, size=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(n_boxes, 2, generator=g) * size / 2
    boxes = torch.cat([xy, xy + 4 + torch.rand(n_boxes, 2, generator=g) * size / 2], 1)
    target = {"boxes": boxes, "labels": torch.randint(7, (n_boxes,), generator=g),
              "iscrowd": torch.zeros(n_boxes, dtype=torch.int64)}
    meta = {"path": f"{seed}.jpeg", "orig_size": (size * 2, size), "scale": 0.5, "pad": (16, 0)}
    return torch.full((3, size, size), 0.25), target, meta


def test_collate_any_number_of_boxes():
    batch = [_item(0, seed=0), _item(1, seed=1), _item(5, seed=2)]
    images, targets, metas = detection_collate(batch)
    assert images.shape == (3, 3, 64, 64) and images.dtype == torch.float32
    assert [t["boxes"].shape[0] for t in targets] == [0, 1, 5]
    assert [m["path"] for m in metas] == ["0.jpeg", "1.jpeg", "2.jpeg"]


def test_multiscale_batches_are_multiples_of_32_and_boxes_follow():
    sizes = multiscale_sizes(50, 130)
    assert sizes == [64, 96, 128]
    collate = MultiScaleCollate(sizes)
    batch = [_item(0, 128, 0), _item(3, 128, 1)]
    seen = set()
    torch.manual_seed(0)
    for _ in range(20):
        images, targets, metas = collate(batch)
        s = images.shape[-1]
        assert images.shape == (2, 3, s, s) and s in sizes
        seen.add(s)
        f = s / 128
        torch.testing.assert_close(targets[1]["boxes"], batch[1][1]["boxes"] * f)
        assert targets[0]["boxes"].shape == (0, 4)
        assert metas[1]["scale"] == pytest.approx(0.5 * f) and metas[1]["pad"][0] == pytest.approx(16 * f)
        torch.testing.assert_close(images, torch.full_like(images, 0.25))
    assert seen == set(sizes)
    with pytest.raises(ValueError, match="multiscale"):
        multiscale_sizes(65, 90)


# ------------------------------------------------------------------------------------------
# anchors


def test_kmeans_anchors_recovers_known_shapes_sorted_by_area():
    g = torch.Generator().manual_seed(0)
    centres = torch.tensor([[90.0, 120.0], [12.0, 20.0], [40.0, 30.0]])
    wh = torch.cat([c * torch.exp(0.05 * torch.randn(300, 2, generator=g)) for c in centres])
    wh = wh[torch.randperm(len(wh), generator=g)]
    anchors = kmeans_anchors(wh, k=3)
    assert anchors.shape == (3, 2) and anchors.dtype == torch.float32
    expected = centres[centres.prod(1).argsort()]
    torch.testing.assert_close(anchors, expected, rtol=0.06, atol=0)
    # xyxy boxes work too
    xyxy = torch.cat([torch.zeros_like(wh), wh], 1) + 5
    torch.testing.assert_close(kmeans_anchors(xyxy, k=3), anchors)
    with pytest.raises(ValueError):
        kmeans_anchors(torch.zeros(0, 2), k=3)


def test_kmeans_anchors_from_a_dataset_uses_letterboxed_trained_boxes(tmp_path):
    root = _difficult_root(tmp_path)
    ds = VOCDetection(root, "train")
    # the non-difficult box is 30 x 20 in an 80 x 60 image: x 416 / 80 in the network input
    torch.testing.assert_close(kmeans_anchors(ds, k=1, img_size=416), torch.tensor([[30 * 5.2, 20 * 5.2]]))
    with pytest.raises(ValueError):
        kmeans_anchors(ds, k=2)  # only one trainable box


# ------------------------------------------------------------------------------------------
# the datamodule's embedded default


def test_datamodule_generates_once_and_gives_contract_batches(tmp_path, monkeypatch):
    calls = []
    real = det.synthetic_insects

    def counting(*args, **kwargs):
        calls.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(det, "synthetic_insects", counting)
    kwargs = dict(synthetic={"n_train": 6, "n_val": 3, "size": 128, "seed": 1}, data_dir=str(tmp_path),
                  img_size=128, batch_size=4, multiscale=[96, 160])
    dm = DetectionDataModule(**kwargs)
    assert dm.num_classes == 7 and dm.classes == list(INSECT_CLASSES)
    dm.setup("fit")
    root = dm.data_root
    assert os.path.dirname(root) == str(tmp_path) and os.path.basename(root).startswith("synthetic_insects_")
    marker = os.path.join(root, det.COMPLETE_MARKER)
    mtime = os.stat(marker).st_mtime_ns
    assert len(calls) == 1 and len(dm.train_set) == 6 and len(dm.val_set) == 3
    again = DetectionDataModule(**kwargs)
    again.prepare_data()
    again.setup("fit")
    assert len(calls) == 1 and os.stat(marker).st_mtime_ns == mtime and again.data_root == root
    assert [p for p in os.listdir(tmp_path) if p.startswith(".")] == []  # no temp dir left behind
    # other kwargs, other folder
    assert DetectionDataModule(**{**kwargs, "synthetic": {"n_train": 7}}).data_root != root

    torch.manual_seed(0)
    images, targets, metas = next(iter(dm.train_dataloader()))
    s = images.shape[-1]
    assert images.shape == (4, 3, s, s) and s in (96, 128, 160) and images.dtype == torch.float32
    assert 0.0 <= images.min() and images.max() <= 1.0
    for t in targets:
        assert t["boxes"].dtype == torch.float32 and t["boxes"].shape[1] == 4
        assert t["labels"].dtype == torch.int64 and t["iscrowd"].dtype == torch.int64
        assert (t["boxes"] >= 0).all() and (t["boxes"] <= s).all()
    assert set(metas[0]) == {"path", "orig_size", "scale", "pad"} and metas[0]["orig_size"] == (128, 128)

    images, targets, metas = next(iter(dm.val_dataloader()))
    assert images.shape == (3, 3, 128, 128)
    xml = det.read_voc_xml(os.path.join(root, "val", "annotations", "xmls", "00000.xml"))
    torch.testing.assert_close(targets[0]["boxes"], xml["boxes"])  # 128 px images at img_size 128: identity
    assert targets[0]["labels"].tolist() == xml["labels"].tolist() and metas[0]["scale"] == 1.0


def test_interrupted_generation_is_redone(tmp_path):
    synthetic = {"n_train": 1, "n_val": 1, "size": 64}
    root, _ = det.synthetic_root(tmp_path, synthetic)
    (root / "train" / "images").mkdir(parents=True)  # a half-written leftover without the marker
    assert ensure_synthetic(tmp_path, synthetic) == root
    assert (root / det.COMPLETE_MARKER).is_file() and len(VOCDetection(root, "val")) == 1


def test_augment_dict_overrides_the_training_augmentations(tmp_path):
    kwargs = dict(synthetic={"n_train": 2, "n_val": 1, "size": 96, "seed": 2}, data_dir=str(tmp_path), img_size=64)
    off = {"degrees": 0, "translate": 0, "scale": [1, 1], "hflip": 0, "vflip": 0, "jitter": 0}
    dm = DetectionDataModule(**kwargs, augment=off)
    dm.setup("fit")
    plain = VOCDetection(dm.data_root, "train", transforms=eval_transforms(64))
    for i in range(2):  # every augmentation off: the training sample is the plain letterboxed one
        (img, tgt, _), (ref, ref_tgt, _) = dm.train_set[i], plain[i]
        torch.testing.assert_close(img, ref)
        torch.testing.assert_close(tgt["boxes"], ref_tgt["boxes"])
    flips = DetectionDataModule(**kwargs, augment={"degrees": 0, "scale": [1, 1], "jitter": 0, "translate": 0,
                                                   "hflip": 1.0, "vflip": 0})
    flips.setup("fit")
    torch.testing.assert_close(flips.train_set[0][0], plain[0][0].flip(-1))  # always mirrored


def test_datamodule_rejects_bad_arguments():
    with pytest.raises(ValueError, match="augment"):
        DetectionDataModule(augment={"rotate": 5})
    with pytest.raises(ValueError, match="img_size"):
        DetectionDataModule(img_size=100)
    with pytest.raises(ValueError, match="multiscale"):
        DetectionDataModule(multiscale=[320])
    with pytest.raises(ValueError, match="synthetic"):
        DetectionDataModule(synthetic={"n_images": 3})
    with pytest.raises(ValueError, match="classes"):
        DetectionDataModule(classes=["a", "a"])
