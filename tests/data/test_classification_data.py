"""Classification datamodules: the digits default and ImageFolder trees."""
from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.datasets import load_digits

from zoo.data import DigitsDataModule, ImageFolderDataModule


def _unnormalize(x, mean, std):
    return x * torch.tensor(std).view(-1, 1, 1) + torch.tensor(mean).view(-1, 1, 1)


def test_digits_split_is_deterministic_disjoint_and_complete():
    a, b = DigitsDataModule(augment=False), DigitsDataModule(augment=False)
    a.setup("fit"), b.setup("fit")
    n = len(load_digits().target)
    assert n == 1797
    assert len(a.train_set) + len(a.val_set) == n
    assert len(a.val_set) == round(0.2 * n)
    xa, ya = next(iter(a.val_dataloader()))
    xb, yb = next(iter(b.val_dataloader()))
    torch.testing.assert_close(xa, xb)
    assert torch.equal(ya, yb)
    assert xa.shape == (64, 3, 32, 32)
    other = DigitsDataModule(augment=False, seed=1)
    other.setup("fit")
    assert not torch.equal(next(iter(other.val_dataloader()))[1], ya)


def test_digits_images_are_the_sklearn_scans():
    dm = DigitsDataModule(image_size=8, channels=1, augment=False, val_fraction=0.5)
    dm.setup("fit")
    digits = load_digits()
    # each val image, un-normalised, is one of sklearn's scans / 16 with its label
    lookup = {digits.images[i].astype(np.float32).tobytes(): int(digits.target[i]) for i in range(len(digits.target))}
    for i in range(20):
        x, y = dm.val_set[i]
        raw = (_unnormalize(x, dm.mean, dm.std)[0] * 16).round().numpy().astype(np.float32)
        assert lookup[raw.tobytes()] == int(y)


def test_norm_comes_from_the_model_spec():
    dm = DigitsDataModule(arch="resnet18")
    assert dm.mean == (0.485, 0.456, 0.406) and dm.std == (0.229, 0.224, 0.225)
    grey = DigitsDataModule(arch="resnet18", channels=1)
    assert grey.mean == pytest.approx(((0.485 + 0.456 + 0.406) / 3,))
    assert DigitsDataModule(mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25), arch="resnet18").std == (0.25,) * 3
    with pytest.raises(ValueError, match="std"):
        DigitsDataModule(mean=(0.5, 0.5, 0.5), std=(0.0, 1.0, 1.0))
    with pytest.raises(KeyError):
        DigitsDataModule(arch="not_a_model")


def test_digits_augmentation_keeps_shapes_and_changes_pixels():
    dm = DigitsDataModule(augment=True)
    dm.setup("fit")
    torch.manual_seed(0)
    x1, _ = dm.train_set[0]
    x2, _ = dm.train_set[0]
    assert x1.shape == (3, 32, 32)
    assert not torch.equal(x1, x2)


def _write_tree(root, classes=("cat", "dog"), n=5, size=(20, 16)):
    colours = {}
    for ci, cls in enumerate(classes):
        os.makedirs(root / cls, exist_ok=True)
        for i in range(n):
            rgb = (40 * ci + 10 * i, 200 - 30 * i, 90 + ci)
            Image.new("RGB", size, rgb).save(root / cls / f"{i}.png")
            colours[(cls, i)] = rgb
    return colours


def test_imagefolder_split_and_pixel_values(tmp_path):
    colours = _write_tree(tmp_path / "train")
    dm = ImageFolderDataModule(str(tmp_path / "train"), val_fraction=0.2, image_size=12, batch_size=4,
                               num_workers=0, augment=False, arch="resnet50")
    dm.setup("fit")
    assert dm.classes == ["cat", "dog"]
    assert len(dm.train_set) == 8 and len(dm.val_set) == 2
    x, y = dm.val_set[0]
    assert x.shape == (3, 12, 12)
    # a solid colour image normalises to (c / 255 - mean) / std: a closed form
    idx = dm.val_set.indices[0]
    path, label = dm.val_set.dataset.samples[idx]
    rgb = colours[(dm.classes[label], int(os.path.basename(path)[0]))]
    want = (torch.tensor(rgb) / 255.0 - torch.tensor(dm.mean)) / torch.tensor(dm.std)
    torch.testing.assert_close(x.mean((1, 2)), want, atol=1e-5, rtol=0)
    xb, yb = next(iter(dm.train_dataloader()))
    assert xb.shape == (4, 3, 12, 12) and yb.dtype == torch.int64


def test_imagefolder_train_val_dirs_and_predict(tmp_path):
    _write_tree(tmp_path / "train")
    _write_tree(tmp_path / "val", n=2)
    os.makedirs(tmp_path / "pred")
    Image.new("RGB", (8, 8), (1, 2, 3)).save(tmp_path / "pred" / "a.jpg")
    dm = ImageFolderDataModule(str(tmp_path / "train"), val_dir=str(tmp_path / "val"),
                               predict_dir=str(tmp_path / "pred"), image_size=8, num_workers=0)
    dm.setup("fit")
    assert len(dm.train_set) == 10 and len(dm.val_set) == 4
    x, i = next(iter(dm.predict_dataloader()))
    assert x.shape == (1, 3, 8, 8) and i.tolist() == [0]

    _write_tree(tmp_path / "val2", classes=("cat", "emu"), n=1)
    bad = ImageFolderDataModule(str(tmp_path / "train"), val_dir=str(tmp_path / "val2"), num_workers=0)
    with pytest.raises(ValueError, match="val_dir: classes"):
        bad.setup("fit")


@pytest.mark.parametrize("num_workers", [0, 1])
def test_unreadable_image_names_the_file(tmp_path, num_workers):
    _write_tree(tmp_path / "train", n=2)
    broken = tmp_path / "train" / "dog" / "broken.png"
    broken.write_bytes(b"this is not a png")
    dm = ImageFolderDataModule(str(tmp_path / "train"), val_fraction=0.5, num_workers=num_workers, batch_size=8)
    dm.setup("fit")
    with pytest.raises(ValueError, match=r"broken\.png.*cannot be read as an image"):
        for loader in (dm.train_dataloader(), dm.val_dataloader()):
            for _ in loader:
                pass


def test_imagefolder_bad_paths(tmp_path):
    with pytest.raises(ValueError, match="train_dir"):
        ImageFolderDataModule(str(tmp_path / "nope"), num_workers=0).setup("fit")
    os.makedirs(tmp_path / "empty")
    with pytest.raises(ValueError, match="train_dir.*not an ImageFolder"):
        ImageFolderDataModule(str(tmp_path / "empty"), num_workers=0).setup("fit")
    with pytest.raises(ValueError, match="val_fraction"):
        _write_tree(tmp_path / "t")
        ImageFolderDataModule(str(tmp_path / "t"), val_fraction=1.5, num_workers=0).setup("fit")
