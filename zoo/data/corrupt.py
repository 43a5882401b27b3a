"""Corrupt files, the same way in every datamodule: one error, one skip policy, one collate that
drops skipped items, and the counts that :class:`zoo.callbacks.SkippedItems` logs per epoch.

A reader that finds a file it cannot use raises :class:`CorruptFileError` (a ``ValueError``)
naming the file and what is wrong: an image that does not decode (truncated, random bytes, an
empty file), a VOC annotation that does not parse or says something impossible (no ``<size>``,
no ``<bndbox>``, a coordinate that is not a number, a box outside the image), a video that does
not open or decode. Every datamodule takes ``skip_corrupt``:

* ``False`` (default): the error propagates, at ``setup`` for what a datamodule scans there
  (VOC annotations, video probes: every bad file named in one error), else when the item is read.
* ``True``: the item is left out with a :class:`CorruptFileWarning` naming the file. Left out at
  ``setup``, it is listed in :attr:`CorruptItems.left_out`; left out when read, the dataset
  returns ``None`` for it, :class:`SkipCollate` drops it from its batch (a batch whose items all
  failed becomes ``None``, which Lightning's training loop and the zoo's tasks skip), and its
  count goes up.

Counting across DataLoader workers. Items are read in worker processes, so the counts live in
shared memory (:class:`CorruptItems`): one int32 per item, how many times that item was left
out, written only by the process that reads the item and before its batch is sent. The main
process therefore sees the count of every batch it has received: the sum is the number of reads
left out so far, and a prediction writer can tell which positions of a batch are missing
(:meth:`CorruptItems.was_skipped`). Items that never reach a batch are not counted: with
``limit_train_batches`` the count can include items of batches the workers fetched ahead.
"""
from __future__ import annotations

import os
import warnings
from typing import Any, Callable, Iterable, Sequence, TypeVar

import torch
from torch.utils.data import default_collate

T = TypeVar("T")
R = TypeVar("R")


class CorruptFileError(ValueError):
    """A file that cannot be used: unreadable, truncated, malformed, or inconsistent with its
    annotation. ``path`` is the file; the message names it and says what is wrong.

    (``CorruptFileError(message)`` alone also works, with ``path`` "": that is how a DataLoader
    re-raises an error from a worker process, message and traceback in one string.)"""

    def __init__(self, path: str | os.PathLike, message: str | None = None) -> None:
        if message is None:
            path, message = "", str(path)
        super().__init__(message)
        self.path = os.fspath(path)

    def __reduce__(self):  # (raised in a DataLoader worker: re-raised in the main process)
        return type(self), (self.path, str(self))


class CorruptFileWarning(UserWarning):
    """An item left out because ``skip_corrupt`` is on; the message names the file."""


def check_skip_corrupt(value: Any) -> bool:
    """``value`` when it is a bool; ``ValueError`` naming ``skip_corrupt`` otherwise."""
    if not isinstance(value, bool):
        raise ValueError(f"skip_corrupt: expected True or False, got {value!r}")
    return value


class CorruptItems:
    """What one dataset does with corrupt files, and how many it left out.

    ``skip``: False, :meth:`read` lets :class:`CorruptFileError` through; True, it warns and
    returns None. ``size``: the number of items (one shared-memory counter each, only with
    ``skip``). ``left_out``: ``{path: reason}`` of the files :meth:`scan` dropped before the
    dataset was made (they have no index and are never read again).
    """

    def __init__(self, skip: bool = False, size: int = 0) -> None:
        self.skip = check_skip_corrupt(skip)
        self.left_out: dict[str, str] = {}
        self._counts = torch.zeros(max(1, int(size)) if skip else 0, dtype=torch.int32)
        if skip:  # workers write, the main process reads
            self._counts.share_memory_()

    def resize(self, size: int) -> None:
        """Counters for ``size`` items, all 0 (for a dataset that learns its length after :meth:`scan`)."""
        if self.skip:
            self._counts = torch.zeros(max(1, int(size)), dtype=torch.int32).share_memory_()

    def scan(self, items: Sequence[T], read: Callable[[T], R], what: str) -> list[tuple[T, R]]:
        """``[(item, read(item))]`` for every item ``read`` accepts (at ``setup``).

        Without ``skip`` any :class:`CorruptFileError` raises: the file's own error when there is
        one, else one error naming every bad file. With ``skip`` the bad files go to
        :attr:`left_out` with one warning naming them all; ``ValueError`` when none is left.
        ``what`` names the items in messages (``"train annotation(s)"``).
        """
        kept: list[tuple[T, R]] = []
        bad: list[CorruptFileError] = []
        for item in items:
            try:
                kept.append((item, read(item)))
            except CorruptFileError as err:
                bad.append(err)
        if not bad:
            return kept
        listing = "; ".join(str(e) for e in bad)
        if not self.skip:
            if len(bad) == 1:
                raise bad[0]
            raise CorruptFileError(bad[0].path, f"{len(bad)} of {len(items)} {what} are corrupt "
                                                f"(skip_corrupt=True leaves them out): {listing}")
        warnings.warn(f"skip_corrupt: leaving out {len(bad)} of {len(items)} {what}: {listing}",
                      CorruptFileWarning, stacklevel=3)
        self.left_out.update((e.path, str(e)) for e in bad)
        if not kept:
            raise ValueError(f"skip_corrupt: none of the {len(items)} {what} can be read: {listing}")
        return kept

    def read(self, index: int, load: Callable[[], R]) -> R | None:
        """``load()``; with ``skip`` a :class:`CorruptFileError` becomes a warning, a count for
        item ``index`` and None (which :class:`SkipCollate` drops)."""
        if not self.skip:
            return load()
        try:
            return load()
        except CorruptFileError as err:
            self._counts[index] += 1
            warnings.warn(f"skip_corrupt: leaving out item {index}: {err}", CorruptFileWarning, stacklevel=3)
            return None

    @property
    def total(self) -> int:
        """Reads left out so far (every process, every epoch; :meth:`reset` restarts it)."""
        return int(self._counts.sum()) if self.skip else 0

    def was_skipped(self, index: int) -> bool:
        """Whether item ``index`` was left out since the last :meth:`reset`."""
        return self.skip and 0 <= index < len(self._counts) and bool(self._counts[index] > 0)

    def reset(self) -> None:
        """Every item's count back to 0 (in every process sharing them)."""
        self._counts.zero_()


def corrupt_items(dataset: Any) -> tuple[CorruptItems | None, Callable[[int], int]]:
    """``(the CorruptItems of dataset, index -> the index in the dataset that owns them)``,
    looking through wrappers that have a ``dataset`` (a ``Subset``, with its ``indices``, or
    :class:`zoo.data.resume.SeededDataset`). ``(None, identity)`` when there is none."""
    maps: list[Sequence[int]] = []
    ds = dataset
    for _ in range(8):
        if ds is None:
            break
        own = getattr(ds, "__dict__", {})  # (not getattr: SeededDataset forwards what it lacks)
        found = own.get("corrupt")
        if isinstance(found, CorruptItems):
            def owner_index(i: int, maps=tuple(maps)) -> int:
                for m in maps:
                    i = int(m[i])
                return i
            return found, owner_index
        indices, inner = own.get("indices"), own.get("dataset")
        if inner is None:
            break
        if indices is not None:
            maps.append(indices)
        ds = inner
    return None, lambda i: i


class SkipCollate:
    """``collate_fn`` (default: torch's) over the items that are not None: a batch without the
    items :meth:`CorruptItems.read` left out, or None when every item of it was."""

    def __init__(self, collate_fn: Callable[[list], Any] | None = None) -> None:
        self.collate_fn = collate_fn or default_collate

    def __call__(self, batch: Iterable[Any]) -> Any:
        items = [b for b in batch if b is not None]
        return self.collate_fn(items) if items else None

    def __repr__(self) -> str:
        return f"SkipCollate({getattr(self.collate_fn, '__name__', self.collate_fn)!r})"


__all__ = ["CorruptFileError", "CorruptFileWarning", "CorruptItems", "SkipCollate", "check_skip_corrupt",
           "corrupt_items"]
