"""The generated deepfake default: DFDC layout on disk, decodable clips, swaps confined to the face."""
from __future__ import annotations

import json

import av
import cv2
import numpy as np
import pytest

from zoo.data.synthetic_faces import (
    METADATA_NAME,
    face_box,
    render_clip,
    render_pair,
    sample_scene,
    sample_swap,
    swap_mask,
    synthetic_deepfakes,
)

SMALL = dict(n_originals=4, frames=8, size=64, fps=8, val_fraction=0.25, seed=3)


def _decode(path) -> np.ndarray:
    """All frames of an mp4 with PyAV: uint8 [T, H, W, 3]."""
    with av.open(str(path)) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])


@pytest.fixture(scope="module")
def small_set(tmp_path_factory):
    return synthetic_deepfakes(tmp_path_factory.mktemp("dfdc"), **SMALL)


def _pair(seed: int, size: int = 64, frames: int = 8, fps: int = 8):
    rng = np.random.default_rng([seed, 0])
    scene = sample_scene(rng, size, frames, fps)
    return scene, sample_swap(rng, scene)


# ------------------------------------------------------------------------------------------
# the files


def test_folder_holds_exactly_the_listed_decodable_clips(small_set):
    meta = json.loads((small_set / METADATA_NAME).read_text())
    assert sorted(p.name for p in small_set.glob("*.mp4")) == sorted(meta)
    assert len(meta) == 2 * SMALL["n_originals"]
    for name in meta:
        frames = _decode(small_set / name)
        assert frames.shape == (SMALL["frames"], SMALL["size"], SMALL["size"], 3)
        assert frames.std() > 5  # a picture, not a blank frame
        with av.open(str(small_set / name)) as container:
            stream = container.streams.video[0]
            assert stream.codec_context.name == "h264"
            assert stream.average_rate == SMALL["fps"]


def test_labels_balanced_and_fakes_share_their_originals_split(small_set):
    meta = json.loads((small_set / METADATA_NAME).read_text())
    labels = [v["label"] for v in meta.values()]
    assert labels.count("REAL") == labels.count("FAKE") == SMALL["n_originals"]
    originals = set()
    for name, entry in meta.items():
        assert set(entry) == {"label", "split", "original"}
        assert entry["split"] in ("train", "val")
        if entry["label"] == "REAL":
            assert entry["original"] is None
        else:
            orig = entry["original"]
            assert meta[orig]["label"] == "REAL" and meta[orig]["split"] == entry["split"]
            assert (small_set / orig).is_file()
            originals.add(orig)
    assert len(originals) == SMALL["n_originals"]  # one fake per original
    n_val = sum(1 for v in meta.values() if v["split"] == "val" and v["label"] == "REAL")
    assert n_val == round(SMALL["val_fraction"] * SMALL["n_originals"]) == 1


def test_names_do_not_reveal_the_label(small_set):
    meta = json.loads((small_set / METADATA_NAME).read_text())
    for name in meta:
        low = name.lower()
        assert "real" not in low and "fake" not in low and "orig" not in low
    # nor does the order: fakes are not all the odd (or the later) numbers
    fake_numbers = sorted(int(n[5:9]) for n, v in meta.items() if v["label"] == "FAKE")
    assert fake_numbers != list(range(1, 2 * SMALL["n_originals"], 2))
    assert fake_numbers != list(range(SMALL["n_originals"], 2 * SMALL["n_originals"]))


def test_fake_clip_on_disk_differs_from_its_original_around_the_face(small_set):
    meta = json.loads((small_set / METADATA_NAME).read_text())
    for name, entry in meta.items():
        if entry["label"] != "FAKE":
            continue
        fake, real = _decode(small_set / name).astype(np.int16), _decode(small_set / entry["original"]).astype(np.int16)
        diff = np.abs(fake - real)  # [T, H, W, 3]
        # the image border (background, far from the face) is equal up to codec noise (a mean of 1-2 levels
        # here; another background would differ by tens), while the face changed
        border = np.ones(diff.shape[1:3], bool)
        border[8:-8, 8:-8] = False
        assert diff[:, border].mean() <= 3
        assert diff.max() > 20


def test_second_call_writes_nothing_and_other_arguments_regenerate(tmp_path):
    args = dict(SMALL, n_originals=2, frames=4)
    root = synthetic_deepfakes(tmp_path, **args)
    stamp = {p.name: p.stat().st_mtime_ns for p in root.iterdir()}
    assert synthetic_deepfakes(tmp_path, **args) == root
    assert {p.name: p.stat().st_mtime_ns for p in root.iterdir()} == stamp
    # an interrupted run (no metadata.json) counts as incomplete and is redone
    (root / METADATA_NAME).unlink()
    synthetic_deepfakes(tmp_path, **args)
    assert (root / METADATA_NAME).is_file()
    # other arguments: regenerated, stale clips gone
    synthetic_deepfakes(tmp_path, **dict(args, frames=6, n_originals=3))
    meta = json.loads((root / METADATA_NAME).read_text())
    assert len(meta) == 6 and sorted(p.name for p in root.glob("*.mp4")) == sorted(meta)
    assert _decode(root / next(iter(meta))).shape[0] == 6


def test_refuses_to_overwrite_a_foreign_dataset(tmp_path):
    (tmp_path / METADATA_NAME).write_text(json.dumps({"a.mp4": {"label": "REAL", "split": "train"}}))
    with pytest.raises(ValueError, match="root"):
        synthetic_deepfakes(tmp_path, **SMALL)
    assert json.loads((tmp_path / METADATA_NAME).read_text()) == {"a.mp4": {"label": "REAL", "split": "train"}}


@pytest.mark.parametrize("kwargs, name", [
    (dict(n_originals=0), "n_originals"),
    (dict(n_originals=1), "n_originals"),  # no room for both splits
    (dict(frames=1), "frames"),
    (dict(size=63), "size"),
    (dict(size=16), "size"),
    (dict(fps=0), "fps"),
    (dict(val_fraction=1.0), "val_fraction"),
    (dict(val_fraction=-0.1), "val_fraction"),
    (dict(seed=-1), "seed"),
])
def test_bad_arguments_are_named(tmp_path, kwargs, name):
    with pytest.raises(ValueError, match=name):
        synthetic_deepfakes(tmp_path, **dict(SMALL, **kwargs))
    assert not (tmp_path / METADATA_NAME).exists()


# ------------------------------------------------------------------------------------------
# the rendered arrays


def test_same_seed_same_arrays_and_different_seed_different():
    a = render_pair(*_pair(5))
    b = render_pair(*_pair(5))
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    c = render_pair(*_pair(6))
    assert not np.array_equal(a[0], c[0])


def test_fake_equals_original_outside_the_mask_and_differs_inside():
    for seed in range(6):
        scene, swap = _pair(seed)
        real, fake, mask = render_pair(scene, swap)
        assert real.shape == fake.shape == (8, 64, 64, 3) and real.dtype == fake.dtype == np.uint8
        assert mask.shape == (8, 64, 64) and 0 <= mask.min() and mask.max() <= 1
        np.testing.assert_array_equal(mask, swap_mask(scene, swap))
        np.testing.assert_array_equal(real, render_clip(scene))
        np.testing.assert_array_equal(fake, render_clip(scene, swap))
        diff = np.abs(real.astype(np.int16) - fake).max(-1)
        assert (diff[mask == 0] == 0).all()
        assert diff[mask > 0.5].mean() > 3
        # independent of the mask: the changed pixels lie inside the head's box and cover little of the frame
        boxes = face_box(scene, margin=0.15)
        for t in range(8):
            x0, y0, x1, y1 = boxes[t]
            outside = np.ones((64, 64), bool)
            outside[y0:y1, x0:x1] = False
            assert not diff[t][outside].any()
            assert (diff[t] > 0).mean() < 0.3


def test_rendered_original_looks_like_a_face_on_a_background():
    # oracle: a cheek (half-way out, below the eyes, above the mouth) has the identity's skin tone
    for seed in range(4):
        scene, _ = _pair(seed, size=128, frames=4)
        clip = render_clip(scene)
        th, s = np.radians(scene.roll[0]), scene.scale[0]
        for side in (-1, 1):
            u, v = side * 0.55 * scene.a * s, 0.3 * scene.b * s
            x = int(round(scene.cx[0] + u * np.cos(th) - v * np.sin(th)))
            y = int(round(scene.cy[0] + u * np.sin(th) + v * np.cos(th)))
            cheek = clip[0, y - 1:y + 2, x - 1:x + 2].reshape(-1, 3).astype(float).mean(0)
            assert np.abs(cheek - scene.skin * scene.gain[0]).max() < 12, (seed, side)
    # the head moves: the frames are not identical beyond the noise
    assert np.abs(clip[0].astype(float) - clip[-1]).mean() > 1


def test_fakes_jitter_more_inside_the_face_than_their_originals():
    # the temporal cue: change from frame to frame inside the face box, on frames smoothed as a downscaled
    # view would see them (so that the sensor noise does not swamp it), averaged over a few pairs.
    # First differences: all motion; second differences: what smooth head motion does not explain.
    d1, d2 = [], []
    for seed in range(8):
        scene, swap = _pair(seed, size=128, frames=12, fps=16)
        real, fake, _ = render_pair(scene, swap)
        boxes = face_box(scene, margin=0.0)
        (x0, y0), (x1, y1) = boxes[:, :2].min(0), boxes[:, 2:].max(0)  # the union over the clip

        def motion(c):
            c = np.stack([cv2.GaussianBlur(f, (0, 0), 1.0) for f in c[:, y0:y1, x0:x1].astype(np.float32)])
            return np.abs(np.diff(c, axis=0)).mean(), np.abs(np.diff(c, 2, axis=0)).mean()
        (f1, f2), (r1, r2) = motion(fake), motion(real)
        d1.append(f1 / r1)
        d2.append(f2 / r2)
    assert np.mean(d1) > 1.1
    assert np.mean(d2) > 1.2


def test_sample_scene_bad_arguments_are_named():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="size"):
        sample_scene(rng, size=31)
    with pytest.raises(ValueError, match="fps"):
        sample_scene(rng, fps=0)
