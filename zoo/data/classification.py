"""Classification data: an ImageFolder datamodule and the embedded digits default."""
from __future__ import annotations

import os
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset, Subset, TensorDataset
from torchvision import datasets
from torchvision.transforms import v2

from ..registry import IMAGENET_MEAN, IMAGENET_STD, get_spec
from .base import SplitDataModule
from .corrupt import CorruptItems, SkipCollate, check_skip_corrupt
from .images import is_image_file, list_images, read_image


def resolve_norm(
    arch: str | None, mean: Sequence[float] | None, std: Sequence[float] | None, channels: int
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean/std: explicit values win, then the model spec of ``arch``, then ImageNet's.

    A spec's 3-channel statistics are averaged down when ``channels`` is 1.
    """
    if arch is not None:
        spec = get_spec(arch)
        mean = spec.mean if mean is None else mean
        std = spec.std if std is None else std
    mean = tuple(IMAGENET_MEAN if mean is None else mean)
    std = tuple(IMAGENET_STD if std is None else std)
    if len(mean) != len(std):
        raise ValueError(f"mean/std: lengths differ ({len(mean)} vs {len(std)})")
    if len(mean) != channels:
        if channels == 1:
            mean, std = (sum(mean) / len(mean),), (sum(std) / len(std),)
        else:
            raise ValueError(f"mean: expected {channels} values (one per channel), got {len(mean)}")
    if any(s <= 0 for s in std):
        raise ValueError(f"std: every value must be > 0, got {std}")
    return mean, std


def _split(n: int, val_fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Deterministic random split of ``range(n)`` into (train, val) indices."""
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction: expected a value in (0, 1), got {val_fraction}")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
    n_val = max(1, round(n * val_fraction))
    if n_val >= n:
        raise ValueError(f"val_fraction: {val_fraction} of {n} samples leaves nothing to train on")
    return sorted(perm[n_val:]), sorted(perm[:n_val])


class ImageFiles(Dataset):
    """A flat folder of image files (for prediction): item = ``(image, index)``; ``files`` lists them.
    A corrupt file raises naming it, or with ``skip_corrupt`` gives None (see :mod:`zoo.data.corrupt`)."""

    def __init__(self, root: str, transform: Callable | None = None, skip_corrupt: bool = False) -> None:
        self.files = list_images(root, "predict_dir")
        self.transform = transform
        self.corrupt = CorruptItems(skip_corrupt, len(self.files))

    def __len__(self) -> int:
        return len(self.files)

    def _item(self, i: int):
        img = read_image(self.files[i])
        return (self.transform(img) if self.transform else img), i

    def __getitem__(self, i: int):
        return self.corrupt.read(i, lambda: self._item(i))


class CheckedImageFolder(datasets.ImageFolder):
    """torchvision's ImageFolder read with :func:`zoo.data.images.read_image`: a corrupt image
    raises :class:`~zoo.data.corrupt.CorruptFileError` naming it, or with ``skip_corrupt`` the
    item is None (left out of its batch by the datamodule's collate) and counted in ``corrupt``."""

    def __init__(self, root: str, transform: Callable | None = None, skip_corrupt: bool = False) -> None:
        super().__init__(root, transform=transform, loader=read_image, is_valid_file=is_image_file)
        self.corrupt = CorruptItems(skip_corrupt, len(self.samples))

    def __getitem__(self, i: int):
        return self.corrupt.read(i, lambda: super(CheckedImageFolder, self).__getitem__(i))


def _folder_classes(root: str, arg: str) -> list[str]:
    """The class names of an ImageFolder tree: its sub-folders, sorted."""
    if not os.path.isdir(root):
        raise ValueError(f"{arg}: {root!r} is not a directory")
    classes = sorted(e.name for e in os.scandir(root) if e.is_dir())
    if not classes:
        raise ValueError(f"{arg}: {root!r} is not an ImageFolder tree (one sub-folder per class)")
    return classes


def _folder(root: str, arg: str, transform: Callable, skip_corrupt: bool = False) -> CheckedImageFolder:
    _folder_classes(root, arg)
    try:
        return CheckedImageFolder(root, transform, skip_corrupt)
    except FileNotFoundError as err:
        raise ValueError(f"{arg}: {root!r} is not an ImageFolder tree (one sub-folder per class): {err}") from err


class ImageFolderDataModule(SplitDataModule):
    """An ImageFolder tree (``root/<class>/<image>``) as train/val(/predict) loaders.

    Either ``train_dir`` and ``val_dir``, or ``train_dir`` alone and a deterministic
    ``val_fraction`` split of it. Images become ``[3, image_size, image_size]``
    float tensors normalised with ``mean``/``std``, or the model spec's of ``arch``
    (the CLI links the model's). Training adds RandomResizedCrop + horizontal flip when
    ``augment``. ``classes`` (the sub-folder names of ``train_dir``) is known from the
    start; the CLI passes it to the model.

    A corrupt image (truncated, not an image, empty) raises ``ValueError`` naming it when it is
    read; with ``skip_corrupt`` it is left out of its batch with a warning and counted
    (``data/skipped_<stage>`` per epoch, :class:`zoo.callbacks.SkippedItems`).
    """

    #: torch's default collate over the items that are not None (skip_corrupt)
    collate_fn = SkipCollate()

    def __init__(
        self,
        train_dir: str,
        val_dir: str | None = None,
        val_fraction: float = 0.1,
        test_dir: str | None = None,
        predict_dir: str | None = None,
        image_size: int = 224,
        batch_size: int = 32,
        num_workers: int = 2,
        arch: str | None = None,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        augment: bool = True,
        seed: int = 0,
        skip_corrupt: bool = False,
    ) -> None:
        super().__init__()
        check_skip_corrupt(skip_corrupt)
        if image_size < 1:
            raise ValueError(f"image_size: expected >= 1, got {image_size}")
        if batch_size < 1:
            raise ValueError(f"batch_size: expected >= 1, got {batch_size}")
        self.save_hyperparameters()
        self.mean, self.std = resolve_norm(arch, mean, std, 3)
        self.classes: list[str] = _folder_classes(train_dir, "train_dir")

    def _transforms(self, train: bool) -> v2.Compose:
        size = self.hparams.image_size
        if train and self.hparams.augment:
            geom = [v2.RandomResizedCrop(size, antialias=True), v2.RandomHorizontalFlip()]
        else:
            geom = [v2.Resize(int(round(size / 0.875)), antialias=True), v2.CenterCrop(size)]
        return v2.Compose(
            [v2.ToImage(), *geom, v2.ToDtype(torch.float32, scale=True), v2.Normalize(self.mean, self.std)]
        )

    def setup(self, stage: str | None = None) -> None:
        hp = self.hparams
        skip = hp.skip_corrupt
        train = _folder(hp.train_dir, "train_dir", self._transforms(True), skip)
        if hp.val_dir is not None:
            val = _folder(hp.val_dir, "val_dir", self._transforms(False), skip)
            if val.classes != train.classes:
                raise ValueError(f"val_dir: classes {val.classes} differ from train_dir's {train.classes}")
            self.train_set, self.val_set = train, val
        else:
            train_idx, val_idx = _split(len(train), hp.val_fraction, hp.seed)
            val = _folder(hp.train_dir, "train_dir", self._transforms(False), skip)
            self.train_set, self.val_set = Subset(train, train_idx), Subset(val, val_idx)
        self.test_set = (_folder(hp.test_dir, "test_dir", self._transforms(False), skip) if hp.test_dir
                         else self.val_set)
        self.predict_set = (ImageFiles(hp.predict_dir, self._transforms(False), skip) if hp.predict_dir
                            else self.val_set)


def load_digits_images(image_size: int = 32, channels: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    """scikit-learn's bundled 8x8 digits (1,797 real scans) as ``[N, channels, S, S]`` in [0, 1] + labels."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = torch.as_tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
    if image_size != 8:
        x = F.interpolate(x, size=(image_size, image_size), mode="bilinear", align_corners=False)
    x = x.clamp_(0.0, 1.0).expand(-1, channels, -1, -1).contiguous()
    y = torch.as_tensor(digits.target, dtype=torch.int64)
    return x, y


class _Transformed(Dataset):
    def __init__(self, base: Dataset, transform: Callable) -> None:
        self.base, self.transform = base, transform

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i: int):
        x, y = self.base[i]
        return self.transform(x), y


class DigitsDataModule(SplitDataModule):
    """The embedded default: scikit-learn's digits, upscaled to ``image_size``.

    1,797 images of 10 classes, split deterministically (``seed``) into train and
    ``val_fraction`` val; the val split also serves test and predict. Grey images
    are repeated to ``channels`` channels and normalised with ``mean``/``std``, or
    the model spec's of ``arch`` (the CLI links the model's). Training adds small random
    shifts when ``augment``. ``classes`` are the digits ``"0"`` to ``"9"``. ``skip_corrupt`` is
    accepted like every datamodule's and changes nothing: the digits are in memory, never corrupt.
    """

    num_classes = 10
    classes = [str(d) for d in range(10)]

    def __init__(
        self,
        image_size: int = 32,
        channels: int = 3,
        val_fraction: float = 0.2,
        batch_size: int = 64,
        num_workers: int = 0,
        arch: str | None = None,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        augment: bool = True,
        seed: int = 0,
        skip_corrupt: bool = False,
    ) -> None:
        super().__init__()
        check_skip_corrupt(skip_corrupt)
        if image_size < 8:
            raise ValueError(f"image_size: expected >= 8 (the digits are 8x8), got {image_size}")
        if channels not in (1, 3):
            raise ValueError(f"channels: expected 1 or 3, got {channels}")
        if batch_size < 1:
            raise ValueError(f"batch_size: expected >= 1, got {batch_size}")
        self.save_hyperparameters()
        self.mean, self.std = resolve_norm(arch, mean, std, channels)

    def setup(self, stage: str | None = None) -> None:
        hp = self.hparams
        x, y = load_digits_images(hp.image_size, hp.channels)
        train_idx, val_idx = _split(len(y), hp.val_fraction, hp.seed)
        norm = v2.Normalize(list(self.mean), list(self.std))
        train_tf = norm
        if hp.augment:  # on [0, 1] images, so the fill (0) is the digits' background
            shift = 1.0 / 8.0  # up to one source pixel
            train_tf = v2.Compose([v2.RandomAffine(degrees=8, translate=(shift, shift), scale=(0.9, 1.1)), norm])
        self.train_set = _Transformed(TensorDataset(x[train_idx], y[train_idx]), train_tf)
        self.val_set = _Transformed(TensorDataset(x[val_idx], y[val_idx]), norm)
        self.test_set = self.predict_set = self.val_set
