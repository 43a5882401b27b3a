"""Steganalysis data: embedding with conseal, the stego cache, the pair constraint, bad input."""
from __future__ import annotations

import hashlib
import os

import numpy as np
import pytest
import torch
from PIL import Image

import zoo.data.steganalysis as st
from zoo.data import StegoDataModule, embed_covers, embed_image, read_pixels

conseal = pytest.importorskip("conseal")


def _photo_crop(size: int = 64, colour: bool = False, offset: int = 0) -> np.ndarray:
    """A textured natural-image crop (scikit-image's bundled photos)."""
    import skimage.data as sd

    im = sd.astronaut() if colour else sd.camera()
    return np.ascontiguousarray(im[100 + offset:100 + offset + size, 150:150 + size])


def _write_covers(root, n: int = 6, size: int = 48, colour: bool = False) -> list[str]:
    os.makedirs(root, exist_ok=True)
    paths = []
    for i in range(n):
        p = os.path.join(root, f"img{i}.png")
        Image.fromarray(_photo_crop(size, colour, offset=7 * i)).save(p)
        paths.append(p)
    return paths


def _digest(paths) -> dict[str, tuple[str, int]]:
    return {p: (hashlib.sha256(open(p, "rb").read()).hexdigest(), os.stat(p).st_mtime_ns) for p in paths}


@pytest.mark.parametrize("algorithm,payload", [("lsbm", 1.0), ("wow", 0.4), ("suniward", 0.4), ("hill", 0.4)])
def test_stego_differs_from_its_cover_by_at_most_one(algorithm, payload):
    cover = _photo_crop(64)
    stego = embed_image(cover, algorithm, payload, seed=3, name="x")
    assert stego.dtype == np.uint8 and stego.shape == cover.shape
    diff = stego.astype(np.int16) - cover.astype(np.int16)
    assert np.abs(diff).max() == 1  # something was embedded, and nothing changed by more than 1
    # the same seed and name give the same stego; another name another message
    assert np.array_equal(stego, embed_image(cover, algorithm, payload, seed=3, name="x"))
    assert not np.array_equal(stego, embed_image(cover, algorithm, payload, seed=3, name="y"))


def test_lsb_matching_at_one_bpp_changes_about_half_the_pixels():
    cover = _photo_crop(128)
    stego = embed_image(cover, "lsbm", 1.0, seed=0)
    assert 0.45 < np.mean(stego != cover) < 0.55


def test_colour_is_embedded_per_channel_with_its_own_seed():
    cover = _photo_crop(48, colour=True)
    stego = embed_image(cover, "hill", 0.4, seed=1, name="c")
    diff = stego.astype(np.int16) - cover
    assert stego.shape == cover.shape and np.abs(diff).max() == 1
    assert all(np.any(diff[..., c] != 0) for c in range(3))
    for c in range(3):  # each channel equals the single-channel simulator with that channel's seed
        ref = conseal.hill.simulate_single_channel(cover[..., c].copy(), 0.4, seed=st._channel_seed(1, "c", c))
        assert np.array_equal(stego[..., c], ref)
    assert not np.array_equal(diff[..., 0], diff[..., 1])


def test_conseal_is_given_uint8_arrays(monkeypatch, tmp_path):
    seen = []
    for mod in (conseal.wow, conseal.hill):
        original = mod.simulate_single_channel

        def spy(x0, alpha, *a, _orig=original, **kw):
            seen.append((x0.dtype, x0.ndim))
            return _orig(x0, alpha, *a, **kw)

        monkeypatch.setattr(mod, "simulate_single_channel", spy)
    original_lsb = conseal.lsb.simulate

    def spy_lsb(x0, alpha, *a, **kw):
        seen.append((x0.dtype, x0.ndim))
        return original_lsb(x0, alpha, *a, **kw)

    monkeypatch.setattr(conseal.lsb, "simulate", spy_lsb)
    covers = _write_covers(tmp_path / "covers", n=2)
    for algo in ("wow", "hill", "lsbm"):
        embed_covers(covers, tmp_path / algo, {"algorithm": algo, "payload": 0.5}, workers=0, progress=False)
    embed_image(_photo_crop(32, colour=True), "wow", 0.4)
    assert len(seen) == 2 * 3 + 3 and all(s == (np.dtype(np.uint8), 2) for s in seen)
    with pytest.raises(ValueError, match="cover: expected a uint8"):
        embed_image(_photo_crop(32).astype(np.float32), "wow", 0.4)


def test_parallel_cache_equals_a_serial_loop_and_never_touches_the_covers(tmp_path):
    covers = _write_covers(tmp_path / "covers", n=5)
    before = _digest(covers)
    embed = {"algorithm": "hill", "payload": 0.4, "seed": 2}
    par, n_par = embed_covers(covers, tmp_path / "par", embed, workers=2, progress=False)
    ser, n_ser = embed_covers(covers, tmp_path / "ser", embed, workers=0, progress=False)
    assert n_par == n_ser == 5
    for c, a, b in zip(covers, par, ser):
        assert os.path.basename(a) == os.path.basename(c)
        x0, xa, xb = read_pixels(c), read_pixels(a), read_pixels(b)
        assert np.array_equal(xa, xb)
        ref = conseal.hill.simulate_single_channel(x0, 0.4, seed=st._channel_seed(2, os.path.splitext(
            os.path.basename(c))[0], 0))
        assert np.array_equal(xa, ref)
    assert _digest(covers) == before


def test_a_cached_embedding_is_reused(tmp_path, monkeypatch):
    covers = _write_covers(tmp_path / "covers", n=3)
    embed = {"algorithm": "lsbm", "payload": 1.0, "seed": 0}
    stegos, n = embed_covers(covers, tmp_path / "cache", embed, workers=0, progress=False)
    assert n == 3
    stamps = _digest(stegos)

    def fail(*args, **kwargs):
        raise AssertionError("conseal was called for a cached image")

    monkeypatch.setattr(st, "_simulate", fail)
    again, n = embed_covers(covers, tmp_path / "cache", embed, workers=0, progress=False)
    assert n == 0 and again == stegos and _digest(stegos) == stamps
    monkeypatch.undo()
    # a cover changed after its stego was written is embedded again (only that one)
    t = os.stat(stegos[1]).st_mtime_ns + 10**9
    os.utime(covers[1], ns=(t, t))
    _, n = embed_covers(covers, tmp_path / "cache", embed, workers=0, progress=False)
    assert n == 1


def test_datamodule_cache_is_reused_across_runs(tmp_path):
    covers = _write_covers(tmp_path / "covers", n=4)
    kw = dict(cover_dir=str(tmp_path / "covers"), embed={"algorithm": "lsbm", "payload": 1.0},
              cache_dir=str(tmp_path / "cache"), batch_size=2, embed_workers=0)
    a = StegoDataModule(**kw)
    a.prepare_data()
    stamps = _digest(a.stego_files[0])
    b = StegoDataModule(**kw)
    b.prepare_data()
    assert b.stego_files == a.stego_files and _digest(b.stego_files[0]) == stamps
    assert len(covers) == 4


def _dihedral(x: torch.Tensor) -> list[torch.Tensor]:
    out = []
    for k in range(4):
        r = torch.rot90(x, k, dims=(-2, -1))
        out += [r, r.flip(-1)]
    return out


@pytest.mark.parametrize("num_workers", [0, 2])
def test_every_batch_is_whole_pairs_and_an_epoch_sees_each_training_pair_once(tmp_path, num_workers):
    covers = _write_covers(tmp_path / "covers", n=10, size=32)
    dm = StegoDataModule(cover_dir=str(tmp_path / "covers"), embed={"algorithm": "lsbm", "payload": 1.0},
                         cache_dir=str(tmp_path / "cache"), batch_size=4, val_fraction=0.3, num_workers=num_workers,
                         embed_workers=0, augment=True)
    dm.prepare_data()
    dm.setup("fit")
    train_files = dm.train_set.covers
    val_files = dm.val_set.covers
    assert not set(train_files) & set(val_files) and len(train_files) + len(val_files) == 10
    pairs = {c: (torch.from_numpy(read_pixels(c)).float(), torch.from_numpy(read_pixels(s)).float())
             for c, s in zip(dm.cover_files, dm.stego_files[0])}
    seen = []
    for x, y in dm.train_dataloader():
        assert x.shape[0] % 2 == 0 and x.shape[1:] == (1, 32, 32)
        assert y.tolist() == [0, 1] * (x.shape[0] // 2)
        for i in range(0, x.shape[0], 2):
            c, s = x[i, 0], x[i + 1, 0]
            assert 0 < (s - c).abs().max() <= 1
            # the pair is some training cover and ITS stego under one and the same rot90/flip
            match = [f for f, (c0, s0) in pairs.items()
                     if any(torch.equal(c, tc) and torch.equal(s, ts) for tc, ts in zip(_dihedral(c0), _dihedral(s0)))]
            assert len(match) == 1
            seen.append(match[0])
    assert sorted(seen) == sorted(train_files)


def test_crops_sit_at_the_same_place_in_both_images(tmp_path):
    _write_covers(tmp_path / "covers", n=4, size=48)
    dm = StegoDataModule(cover_dir=str(tmp_path / "covers"), embed={"algorithm": "lsbm", "payload": 1.0},
                         cache_dir=str(tmp_path / "cache"), batch_size=2, crop_size=16, augment=False, embed_workers=0)
    dm.setup("fit")
    for ds in (dm.train_set, dm.val_set):
        for i in range(len(ds)):
            imgs, labels = ds[i]
            assert imgs.shape == (2, 1, 16, 16) and labels.tolist() == [0, 1]
            full = torch.from_numpy(read_pixels(ds.covers[i])).float()
            hits = [(t, l) for t in range(33) for l in range(33) if torch.equal(full[t:t + 16, l:l + 16], imgs[0, 0])]
            assert hits
            full_s = torch.from_numpy(read_pixels(ds.stegos[0][i])).float()
            assert any(torch.equal(full_s[t:t + 16, l:l + 16], imgs[1, 0]) for t, l in hits)


def test_split_keeps_groups_together():
    files = [f"/d/a{i}__{t}.png" for i in range(10) for t in ("0", "m")] + ["/d/solo.png"]
    train, val = st.split_pairs(files, 0.3, seed=1)
    assert sorted(train + val) == list(range(len(files))) and train and val
    groups = lambda idx: {st.group_of(files[i]) for i in idx}  # noqa: E731
    assert not groups(train) & groups(val)


def test_cover_plus_k_algorithms_gives_groups_of_k_plus_one(tmp_path):
    _write_covers(tmp_path / "covers", n=4, size=32)
    dm = StegoDataModule(cover_dir=str(tmp_path / "covers"),
                         embed=[{"algorithm": "lsbm", "payload": 1.0}, {"algorithm": "hill", "payload": 0.4}],
                         cache_dir=str(tmp_path / "cache"), batch_size=6, embed_workers=0)
    assert dm.classes == ["cover", "lsbm-1bpp-seed0", "hill-0.4bpp-seed0"]
    dm.setup("fit")
    x, y = next(iter(dm.train_dataloader()))
    assert y.tolist()[:3] == [0, 1, 2] and x.shape[0] % 3 == 0
    with pytest.raises(ValueError, match="batch_size: expected a positive multiple of 3"):
        StegoDataModule(cover_dir=str(tmp_path / "covers"), batch_size=4,
                        embed=[{"algorithm": "lsbm", "payload": 1.0}, {"algorithm": "hill", "payload": 0.4}])


def test_stego_dir_is_matched_by_name(tmp_path):
    covers = _write_covers(tmp_path / "covers", n=3, size=32)
    stego_dir = tmp_path / "stego"
    embed_covers(covers, stego_dir, {"algorithm": "lsbm", "payload": 1.0}, workers=0, progress=False)
    dm = StegoDataModule(cover_dir=str(tmp_path / "covers"), stego_dir=str(stego_dir), batch_size=2)
    dm.prepare_data()
    assert [os.path.basename(s) for s in dm.stego_files[0]] == ["img0.png", "img1.png", "img2.png"]


# ----------------------------------------------------------------------------- bad input


def test_mismatched_cover_and_stego_names_are_named(tmp_path):
    covers = _write_covers(tmp_path / "covers", n=3, size=32)
    stego_dir = tmp_path / "stego"
    embed_covers(covers, stego_dir, {"algorithm": "lsbm", "payload": 1.0}, workers=0, progress=False)
    os.rename(stego_dir / "img1.png", stego_dir / "other.png")
    dm = StegoDataModule(cover_dir=str(tmp_path / "covers"), stego_dir=str(stego_dir), batch_size=2)
    with pytest.raises(ValueError, match=r"stego_dir: .*no stego image for cover\(s\) \['img1.png'\].*'other.png'"):
        dm.prepare_data()


def test_a_non_8bit_image_is_refused_naming_the_file(tmp_path):
    covers = _write_covers(tmp_path / "covers", n=2, size=32)
    deep = tmp_path / "covers" / "deep.png"
    Image.fromarray((np.arange(32 * 32, dtype=np.uint16).reshape(32, 32) * 50)).save(deep)
    assert Image.open(deep).mode.startswith("I")
    with pytest.raises(ValueError, match=r"deep.png' is not an 8-bit grey or RGB image"):
        embed_covers(covers + [str(deep)], tmp_path / "cache", {"algorithm": "lsbm", "payload": 1.0},
                     workers=0, progress=False)
    with pytest.raises(ValueError, match=r"deep.png' is not an 8-bit"):  # also from a worker process
        embed_covers(covers + [str(deep)], tmp_path / "cache2", {"algorithm": "lsbm", "payload": 1.0},
                     workers=2, progress=False)
    os.remove(deep)
    for c in covers:  # the covers were only read
        assert read_pixels(c).dtype == np.uint8


@pytest.mark.parametrize("embed,match", [
    ({"algorithm": "f5", "payload": 0.4}, "unknown algorithm 'f5'"),
    ({"algorithm": "wow", "payload": 0.0}, r"payload must be in \(0, 1\]"),
    ({"algorithm": "wow", "payload": 1.5}, r"payload must be in \(0, 1\]"),
    ({"algorithm": "hill", "payload": -0.1}, r"payload must be in \(0, 1\]"),
    ({"algorithm": "wow", "payload": 0.4, "sed": 1}, r"unknown key\(s\) \['sed'\]"),
])
def test_bad_embed_arguments_are_named(tmp_path, embed, match):
    _write_covers(tmp_path / "covers", n=2, size=32)
    with pytest.raises(ValueError, match="embed: " + match):
        StegoDataModule(cover_dir=str(tmp_path / "covers"), embed=embed)
    if set(embed) <= {"algorithm", "payload"}:
        with pytest.raises(ValueError, match=match):
            embed_image(_photo_crop(16), embed["algorithm"], embed["payload"])


def test_other_bad_arguments(tmp_path):
    _write_covers(tmp_path / "covers", n=2, size=32)
    good = {"algorithm": "lsbm", "payload": 1.0}
    with pytest.raises(ValueError, match="batch_size: expected a positive multiple of 2"):
        StegoDataModule(cover_dir=str(tmp_path / "covers"), embed=good, batch_size=5)
    with pytest.raises(ValueError, match="give one source"):
        StegoDataModule(cover_dir=str(tmp_path / "covers"), embed=good, stego_dir=str(tmp_path))
    with pytest.raises(ValueError, match="cover_dir: .* is not a directory"):
        StegoDataModule(cover_dir=str(tmp_path / "nope"), embed=good)
    with pytest.raises(ValueError, match="with cover_dir, give a stego_dir"):
        StegoDataModule(cover_dir=str(tmp_path / "covers"))
    dm = StegoDataModule(cover_dir=str(tmp_path / "covers"), embed=good, cache_dir=str(tmp_path / "c"),
                         channels=3, batch_size=2, embed_workers=0, val_fraction=0.5)
    dm.setup("fit")
    with pytest.raises(ValueError, match="is a grey image .* the model takes 3"):
        dm.train_set[0]


def test_default_covers_are_256_crops_and_their_mirrors(tmp_path):
    files = st.default_covers(tmp_path / "grey")
    assert len(files) >= 100 and len(files) % 2 == 0
    a, m = read_pixels(files[0]), read_pixels(files[1])
    assert a.shape == (256, 256) and a.dtype == np.uint8
    assert st.group_of(files[0]) == st.group_of(files[1]) and np.array_equal(a[:, ::-1], m)
    assert st.default_covers(tmp_path / "grey") == files  # written once
