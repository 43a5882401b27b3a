"""LightningDataModules, datasets and transforms, one file per task."""
from .classification import DigitsDataModule, ImageFolderDataModule, load_digits_images, read_image

__all__ = ["DigitsDataModule", "ImageFolderDataModule", "load_digits_images", "read_image"]
