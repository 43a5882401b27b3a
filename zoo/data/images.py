"""Reading image files, for every datamodule: one suffix list, one reader, one folder lister."""
from __future__ import annotations

import os

from PIL import Image

from .corrupt import CorruptFileError

#: image file suffixes the datamodules read, in order of preference when one stem has several
IMAGE_SUFFIXES = (".jpeg", ".jpg", ".png", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp")


def is_image_file(path: str | os.PathLike) -> bool:
    """Whether ``path`` ends in one of :data:`IMAGE_SUFFIXES` (any case)."""
    return os.fspath(path).lower().endswith(IMAGE_SUFFIXES)


def open_image(path: str | os.PathLike, min_size: int | None = None) -> tuple[Image.Image, tuple[int, int]]:
    """``(RGB image, (width, height) stored in the file)``; an unreadable file (missing, empty,
    truncated, not an image) raises :class:`~zoo.data.corrupt.CorruptFileError` (a ``ValueError``)
    naming it.

    With ``min_size`` a JPEG is decoded at a reduced scale (1/2, 1/4 or 1/8, in the DCT
    domain: several times faster) as long as both sides stay >= ``min_size``.
    """
    path = os.fspath(path)
    try:
        with open(path, "rb") as f:
            img = Image.open(f)
            size = img.size
            if min_size is not None and img.format == "JPEG":
                img.draft("RGB", (min_size, min_size))
            return img.convert("RGB"), size
    except Exception as err:  # noqa: BLE001 - whatever a damaged file makes PIL raise (OSError,
        # SyntaxError "broken PNG file", EOFError, struct.error, ...) is reported as the file's fault
        raise CorruptFileError(path, f"image file {path!r} cannot be read as an image "
                                     f"({type(err).__name__}: {err})") from err


def read_image(path: str | os.PathLike) -> Image.Image:
    """The RGB image in ``path`` (the loader of ImageFolder datasets); see :func:`open_image`."""
    return open_image(path)[0]


def list_images(root: str | os.PathLike, arg: str = "predict_dir") -> list[str]:
    """The image files directly in folder ``root``, sorted; ``ValueError`` naming ``arg`` when
    ``root`` is not a folder or holds no image."""
    root = os.fspath(root)
    if not os.path.isdir(root):
        raise ValueError(f"{arg}: {root!r} is not a directory")
    files = sorted(os.path.join(root, f) for f in os.listdir(root) if is_image_file(f))
    if not files:
        raise ValueError(f"{arg}: no image files ({', '.join(IMAGE_SUFFIXES)}) in {root!r}")
    return files
