"""Corrupt data in every datamodule (zoo.data.corrupt): by default a clear error naming the file;
with ``skip_corrupt`` a warning naming it, every good item yielded exactly once (the oracle: the
items written good), the skipped items counted (also across DataLoader workers) and logged per
epoch as ``data/skipped_<stage>``, and the prediction writers' rows still match their files."""
from __future__ import annotations

import csv
import io
import json
import os
import sys
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from zoo.data import (
    CorruptFileError,
    CorruptFileWarning,
    DetectionDataModule,
    ImageFolderDataModule,
    SkipCollate,
    StegoDataModule,
    VOCDetection,
)
from zoo.data.corrupt import CorruptItems, corrupt_items

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
IMAGEFOLDER = os.path.join(ROOT, "configs", "data", "imagefolder.yaml")


# ----------------------------------------------------------------------------- corrupt files


def _noise(size=(24, 24), seed=0) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (*size, 3), dtype=np.uint8))


def _encoded(fmt: str, size=(24, 24)) -> bytes:
    buf = io.BytesIO()
    _noise(size).save(buf, format=fmt)
    return buf.getvalue()


#: file name -> bytes of a corrupt image of each kind
CORRUPT_IMAGES = {
    "trunc.jpg": _encoded("JPEG")[: len(_encoded("JPEG")) * 6 // 10],  # cut inside the scan data
    "trunc.png": _encoded("PNG")[: len(_encoded("PNG")) * 6 // 10],
    "noise.png": np.random.default_rng(1).bytes(3000),  # random bytes with an image suffix
    "empty.jpg": b"",
}


def _solid(path, value: int, size=(16, 16)) -> None:
    Image.new("RGB", size, (value, 255 - value, (3 * value) % 256)).save(path)


def _mean_value(x: torch.Tensor, mean, std) -> int:
    """The first channel of a normalised solid image, back on the 0..255 scale."""
    return round(float(x[0].mean() * std[0] + mean[0]) * 255)


def _collect(loader) -> tuple[list, int, list[str]]:
    """(the batches that are not None, how many were None, the warnings' messages)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        batches = list(loader)
    return [b for b in batches if b is not None], sum(b is None for b in batches), [str(w.message) for w in caught]


# ----------------------------------------------------------------------------- shared mechanism


def test_skip_collate_drops_none_and_a_batch_of_none_is_none():
    collate = SkipCollate()
    x, y = collate([None, (torch.ones(2), 1), None, (torch.zeros(2), 0)])
    assert x.shape == (2, 2) and y.tolist() == [1, 0]
    assert collate([None, None]) is None


def test_corrupt_items_counts_per_item_and_looks_through_subsets():
    record = CorruptItems(skip=True, size=3)

    def bad():
        raise CorruptFileError("/x/a.png", "image file '/x/a.png' cannot be read as an image")

    with pytest.warns(CorruptFileWarning, match=r"leaving out item 2: image file '/x/a.png'"):
        assert record.read(2, bad) is None
    assert record.read(0, lambda: "ok") == "ok"
    assert record.total == 1 and record.was_skipped(2) and not record.was_skipped(0)
    with pytest.raises(CorruptFileError, match="a.png"):
        CorruptItems(skip=False, size=3).read(0, bad)
    with pytest.raises(ValueError, match="skip_corrupt: expected True or False"):
        CorruptItems(skip="yes")

    class Owner(torch.utils.data.Dataset):
        def __init__(self):
            self.corrupt = record

    sub = torch.utils.data.Subset(torch.utils.data.Subset(Owner(), [2, 1, 0]), [1, 0])
    found, owner = corrupt_items(sub)
    assert found is record and owner(1) == 2 and owner(0) == 1
    assert corrupt_items(torch.utils.data.TensorDataset(torch.zeros(2)))[0] is None


# ----------------------------------------------------------------------------- classification


def _tree(root, values: dict[str, list[int]], corrupt: dict[str, dict[str, bytes]] | None = None) -> dict[str, int]:
    """An ImageFolder tree of solid images ``{class: [value, ...]}`` plus corrupt files; returns
    ``{path: value}`` of the good images."""
    good = {}
    for cls, vals in values.items():
        os.makedirs(root / cls, exist_ok=True)
        for v in vals:
            path = root / cls / f"img{v:03d}.png"
            _solid(path, v)
            good[str(path)] = v
    for cls, files in (corrupt or {}).items():
        os.makedirs(root / cls, exist_ok=True)
        for name, data in files.items():
            (root / cls / name).write_bytes(data)
    return good


@pytest.mark.parametrize("name,workers", [(name, 0) for name in sorted(CORRUPT_IMAGES)] + [("trunc.jpg", 1)])
def test_imagefolder_corrupt_image_raises_naming_the_file(tmp_path, name, workers):
    _tree(tmp_path / "train", {"a": [10, 20], "b": [30]}, {"b": {name: CORRUPT_IMAGES[name]}})
    dm = ImageFolderDataModule(str(tmp_path / "train"), val_dir=str(tmp_path / "train"), image_size=16,
                               augment=False, batch_size=4, num_workers=workers)
    dm.setup("fit")
    # (from a worker process the DataLoader re-raises it with the worker's traceback in the message)
    with pytest.raises(CorruptFileError, match=rf"{name}' cannot be read as an image") as err:
        list(dm.val_dataloader())
    assert isinstance(err.value, ValueError)
    if workers == 0:
        assert err.value.path == str(tmp_path / "train" / "b" / name)


@pytest.mark.parametrize("workers", [0, 2])
def test_imagefolder_skip_corrupt_yields_every_good_image_once_and_counts(tmp_path, workers):
    # the corrupt files sort together in class "b": with batch_size 2 one val batch is all corrupt
    good = _tree(tmp_path / "t", {"a": [10, 20, 30], "b": [40, 50]}, {"b": CORRUPT_IMAGES})
    dm = ImageFolderDataModule(str(tmp_path / "t"), val_dir=str(tmp_path / "t"), image_size=16, augment=False,
                               batch_size=2, num_workers=workers, skip_corrupt=True)
    dm.setup("fit")
    for loader, ds in ((dm.val_dataloader(), dm.val_set), (dm.train_dataloader(), dm.train_set)):
        batches, n_none, messages = _collect(loader)
        seen = sorted(_mean_value(x, dm.mean, dm.std) for xs, _ in batches for x in xs)
        assert seen == sorted(good.values())  # every good image exactly once, nothing else
        if ds is dm.val_set:
            assert n_none == 2  # [noise.png, trunc.jpg] and [trunc.png]: all corrupt, counted all the same
        assert ds.corrupt.total == len(CORRUPT_IMAGES)  # (written by the workers, read here)
        if workers == 0:
            for name in CORRUPT_IMAGES:
                assert any(f"{name}' cannot be read" in m for m in messages), name
        ds.corrupt.reset()


def test_cli_fit_logs_the_skipped_counts_and_predict_writes_only_good_rows(tmp_path, monkeypatch):
    from zoo.cli import ZooCLI

    monkeypatch.setattr(sys, "argv", ["zoo"])
    # train: 8 items in batches of 4, so every training batch keeps >= 2 images (BatchNorm needs 2)
    _tree(tmp_path / "train", {"a": [10, 20, 30], "b": [40, 50, 60]}, {"b": {"trunc.jpg": CORRUPT_IMAGES["trunc.jpg"],
                                                                             "empty.jpg": b""}})
    # val in order: a/img07x (4) | a/w..z (4 corrupt: a batch of None) | b/img080
    bad_val = {"w_noise.png": CORRUPT_IMAGES["noise.png"], "x_trunc.png": CORRUPT_IMAGES["trunc.png"],
               "y_trunc.jpg": CORRUPT_IMAGES["trunc.jpg"], "z_empty.jpg": b""}
    _tree(tmp_path / "val", {"a": [70, 71, 72, 73], "b": [80]}, {"a": bad_val})
    common = ["--config", IMAGEFOLDER, "--model.init_args.arch=resnet18", f"--data.train_dir={tmp_path / 'train'}",
              "--data.image_size=32", "--data.batch_size=4", "--data.skip_corrupt=true",
              f"--trainer.default_root_dir={tmp_path / 'runs'}", "--trainer.enable_progress_bar=false",
              "--trainer.enable_model_summary=false", "--trainer.accelerator=cpu"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cli = ZooCLI(["fit", *common, f"--data.val_dir={tmp_path / 'val'}", "--trainer.max_epochs=1"])
    metrics = cli.trainer.callback_metrics
    assert cli.datamodule.hparams.num_workers == 2  # the recipe's: counted across worker processes
    assert float(metrics["data/skipped_train"]) == 2 and float(metrics["data/skipped_val"]) == len(bad_val)
    # predict: the writer's rows are the good files, each with its own name (bad.png sorts first:
    # without the skipped index the rows would shift by one)
    pred = tmp_path / "pred"
    good = _tree(pred, {".": [90, 100, 110]})
    (pred / "bad.png").write_bytes(CORRUPT_IMAGES["trunc.png"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ZooCLI(["predict", *common, f"--data.predict_dir={pred}", "--data.num_workers=0"])
    with open(tmp_path / "runs" / "predict" / "predictions.csv") as f:
        rows = list(csv.DictReader(f))
    assert sorted(os.path.normpath(r["file"]) for r in rows) == sorted(os.path.normpath(p) for p in good)


# ----------------------------------------------------------------------------- detection


GOOD_XML = ("<annotation><filename>{stem}.png</filename><size><width>32</width><height>32</height></size>"
            "<object><name>Boerner</name><bndbox><xmin>4</xmin><ymin>5</ymin><xmax>20</xmax><ymax>22</ymax>"
            "</bndbox></object></annotation>")

#: annotation stem -> (XML text, what the error says)
CORRUPT_XML = {
    "unparsable": ("<annotation><size><width>32</width>", "not a readable XML file"),
    "nosize": ("<annotation><object><name>Boerner</name><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>5</xmax>"
               "<ymax>5</ymax></bndbox></object></annotation>", "no <size> element"),
    "nobox": ("<annotation><size><width>32</width><height>32</height></size><object><name>Boerner</name>"
              "</object></annotation>", "has no <bndbox>"),
    "nonnumeric": (GOOD_XML.replace("<xmin>4</xmin>", "<xmin>four</xmin>"), "<xmin> is not a number: 'four'"),
    "outside": (GOOD_XML.replace("<xmax>20</xmax>", "<xmax>90</xmax>"), "lies outside the 32 x 32 image"),
}


def _voc(root, split: str, good: list[str], bad_xml: dict | None = None, bad_images: dict | None = None) -> None:
    """VOC layout: ``good`` stems (solid 32x32 PNGs, value = index), annotations that are corrupt, and
    good annotations whose image is corrupt (``{stem: (suffix, bytes)}``)."""
    xml_dir, img_dir = root / split / "annotations" / "xmls", root / split / "images"
    xml_dir.mkdir(parents=True), img_dir.mkdir(parents=True)
    for i, stem in enumerate(good):
        (xml_dir / f"{stem}.xml").write_text(GOOD_XML.format(stem=stem))
        _solid(img_dir / f"{stem}.png", 20 * i + 10, (32, 32))
    for stem, (text, _) in (bad_xml or {}).items():
        (xml_dir / f"{stem}.xml").write_text(text)
        _solid(img_dir / f"{stem}.png", 200, (32, 32))
    for stem, (suffix, data) in (bad_images or {}).items():
        (xml_dir / f"{stem}.xml").write_text(GOOD_XML.format(stem=stem))
        (img_dir / f"{stem}{suffix}").write_bytes(data)


@pytest.mark.parametrize("stem", sorted(CORRUPT_XML))
def test_detection_corrupt_annotation_raises_naming_the_file(tmp_path, stem):
    _voc(tmp_path, "train", ["g0"], {stem: CORRUPT_XML[stem]})
    with pytest.raises(CorruptFileError, match=rf"annotation '.*{stem}.xml'.*{CORRUPT_XML[stem][1]}"):
        VOCDetection(tmp_path, "train")


def test_detection_every_corrupt_annotation_named_in_one_error_and_corrupt_images_when_read(tmp_path):
    _voc(tmp_path, "train", ["g0"], CORRUPT_XML)
    with pytest.raises(CorruptFileError, match=r"5 of 6 train annotation\(s\) are corrupt") as err:
        VOCDetection(tmp_path, "train")
    assert all(f"{stem}.xml'" in str(err.value) for stem in CORRUPT_XML)
    images = {"trunc": (".jpg", CORRUPT_IMAGES["trunc.jpg"]), "noise": (".png", CORRUPT_IMAGES["noise.png"]),
              "empty": (".jpeg", b"")}
    _voc(tmp_path, "val", ["g0"], bad_images=images)
    ds = VOCDetection(tmp_path, "val")
    for i, rec in enumerate(ds.records):
        stem = os.path.basename(rec["xml"])[:-4]
        if stem in images:
            with pytest.raises(CorruptFileError, match=rf"{stem}{images[stem][0]}' cannot be read as an image"):
                ds[i]


def test_detection_skip_corrupt_yields_every_good_image_once_and_counts(tmp_path):
    good = [f"g{i}" for i in range(4)]
    images = {"trunc": (".jpg", CORRUPT_IMAGES["trunc.jpg"]), "empty": (".png", b"")}
    _voc(tmp_path, "train", good, CORRUPT_XML, images)
    _voc(tmp_path, "val", ["v0"])
    dm = DetectionDataModule(root=str(tmp_path), img_size=32, batch_size=2, augment=False, skip_corrupt=True)
    with pytest.warns(CorruptFileWarning, match=r"leaving out 5 of 11 train annotation\(s\)") as caught:
        dm.setup("fit")
    assert all(any(f"{stem}.xml'" in str(w.message) for w in caught) for stem in CORRUPT_XML)
    batches, _, messages = _collect(dm.train_dataloader())
    seen = sorted(os.path.basename(m["path"])[:-4] for _, _, metas in batches for m in metas)
    assert seen == good
    assert any("trunc.jpg' cannot be read" in m for m in messages) and any("empty.png'" in m for m in messages)
    record = dm.train_set.corrupt
    assert record.total + len(record.left_out) == len(CORRUPT_XML) + len(images)


# ----------------------------------------------------------------------------- steganalysis


def _stego(root, n: int, bad: dict[str, tuple[str, bytes]]) -> dict[int, int]:
    """``n`` grey cover/stego pairs (stego = cover + 1), each in its own split group; ``bad``:
    ``{stem: ("cover" | "stego", bytes)}`` replaces one file. Returns ``{cover value: stem index}``."""
    (root / "covers").mkdir(parents=True), (root / "stegos").mkdir()
    good = {}
    for i in range(n):
        stem, v = f"p{i}", 10 + 20 * i
        Image.fromarray(np.full((16, 16), v, np.uint8)).save(root / "covers" / f"{stem}.png")
        Image.fromarray(np.full((16, 16), v + 1, np.uint8)).save(root / "stegos" / f"{stem}.png")
        if stem in bad:
            (root / f"{bad[stem][0]}s" / f"{stem}.png").write_bytes(bad[stem][1])
        else:
            good[v] = i
    return good


def test_steganalysis_corrupt_pair_raises_naming_the_file_or_is_skipped(tmp_path):
    bad = {"p1": ("cover", CORRUPT_IMAGES["trunc.png"]), "p3": ("stego", CORRUPT_IMAGES["noise.png"]),
           "p4": ("cover", b"")}
    good = _stego(tmp_path, 7, bad)
    kwargs = dict(cover_dir=str(tmp_path / "covers"), stego_dir=str(tmp_path / "stegos"), batch_size=4,
                  val_fraction=0.3, channels=1)
    dm = StegoDataModule(**kwargs)
    dm.setup("fit")
    with pytest.raises(CorruptFileError, match=r"(p1|p3|p4)\.png' cannot be read as an image"):
        for ds in (dm.train_set, dm.val_set):
            for i in range(len(ds)):
                ds[i]
    dm = StegoDataModule(**kwargs, skip_corrupt=True)
    dm.setup("fit")
    seen, messages, skipped = [], [], 0
    for loader, ds in ((dm.train_dataloader(), dm.train_set), (dm.val_dataloader(), dm.val_set)):
        batches, _, msgs = _collect(loader)
        messages += msgs
        for x, y in batches:
            covers, stegos = x[y == 0], x[y == 1]
            assert torch.equal(stegos - covers, torch.ones_like(covers))  # pairs stay together
            seen += [int(c.mean()) for c in covers]
        skipped += ds.corrupt.total
    assert sorted(seen) == sorted(good)  # every good pair once
    assert skipped == len(bad)
    for stem, (kind, _) in bad.items():
        assert any(f"{kind}s/{stem}.png' cannot be read" in m for m in messages), stem


# ----------------------------------------------------------------------------- video


def test_video_corrupt_mp4_raises_naming_it_or_is_skipped_and_counted(tmp_path):
    pytest.importorskip("av")
    from zoo.data import VideoDataModule, write_mp4

    root = tmp_path / "dfdc"
    root.mkdir()
    meta, colours = {}, {}
    for i in range(4):
        name, colour = f"v{i}.mp4", (40 + 50 * i, 200 - 40 * i, 90)
        write_mp4(root / name, np.broadcast_to(np.asarray(colour, np.uint8), (6, 16, 16, 3)).copy(), fps=10, gop=3)
        meta[name] = {"label": "REAL" if i % 2 else "FAKE", "split": "val" if i == 0 else "train"}
        colours[name] = colour
    moving = np.random.default_rng(0).integers(0, 256, (30, 16, 16, 3), dtype=np.uint8)
    for name, faststart, cut in (("cut_index.mp4", False, 0.6), ("cut_inside.mp4", True, 0.5)):
        data = open(write_mp4(tmp_path / "src.mp4", moving, fps=10, gop=5, faststart=faststart), "rb").read()
        (root / name).write_bytes(data[: int(len(data) * cut)])
    (root / "noise.mp4").write_bytes(np.random.default_rng(2).bytes(4000))
    bad = ["cut_index.mp4", "cut_inside.mp4", "noise.mp4"]
    meta.update({n: {"label": "FAKE", "split": "train"} for n in bad})
    (root / "metadata.json").write_text(json.dumps(meta))
    kwargs = dict(root=str(root), frames=3, size=8, batch_size=2, cache_dir=None, augment=False)
    with pytest.raises(CorruptFileError, match=r"2 of 6 train video\(s\) are corrupt.*(cut_index|noise).mp4'"):
        VideoDataModule(**kwargs).setup("fit")
    dm = VideoDataModule(**kwargs, skip_corrupt=True)
    with pytest.warns(CorruptFileWarning, match=r"leaving out 2 of 6 train video\(s\)"):
        dm.setup("fit")
    batches, _, messages = _collect(dm.train_dataloader())
    assert any("cut_inside.mp4'" in m for m in messages)
    m, s = torch.tensor(dm.mean).view(3, 1, 1), torch.tensor(dm.std).view(3, 1, 1)
    seen = []
    for x, _ in batches:
        for clip in x:
            rgb = ((clip * s + m) * 255).mean(dim=(0, 2, 3))
            seen.append(min(colours, key=lambda n: float((rgb - torch.tensor(colours[n])).abs().max())))
            assert float((rgb - torch.tensor(colours[seen[-1]])).abs().max()) < 6
    assert sorted(seen) == ["v1.mp4", "v2.mp4", "v3.mp4"]
    record = dm.train_set.corrupt
    assert record.total + len(record.left_out) == len(bad)
    assert sorted(os.path.basename(p) for p in dm.skipped) == ["cut_index.mp4", "noise.mp4"]
    # bad_files is the deprecated spelling of skip_corrupt
    with pytest.warns(DeprecationWarning, match="use skip_corrupt=True"):
        assert VideoDataModule(**kwargs, bad_files="skip").hparams.skip_corrupt is True
    with pytest.raises(ValueError, match="bad_files='raise' contradicts skip_corrupt=True"):
        VideoDataModule(**kwargs, bad_files="raise", skip_corrupt=True)
