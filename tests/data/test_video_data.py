"""Video data (DFDC layout): seek decoding against sequential decoding, frame sampling, bad files,
the clip cache, face crops and the datamodule."""
from __future__ import annotations

import json
import math
import os
import warnings
from fractions import Fraction

import numpy as np
import pytest
import torch

av = pytest.importorskip("av")
cv2 = pytest.importorskip("cv2")

import zoo.data.video as vd  # noqa: E402
from zoo.data import (  # noqa: E402
    VideoClips,
    VideoDataModule,
    face_box,
    load_clip,
    probe_video,
    read_frames,
    read_metadata,
    sample_indices,
    split_entries,
    write_mp4,
)
from zoo.data.video import VideoEntry, largest_face  # noqa: E402


# ----------------------------------------------------------------------------- helpers


def _moving(t: int = 64, h: int = 32, w: int = 48, seed: int = 0) -> np.ndarray:
    """A clip whose content changes every frame: sliding gradients plus a random tint per frame."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:h, :w]
    out = np.empty((t, h, w, 3), np.uint8)
    for i in range(t):
        out[i, ..., 0] = (xx * 5 + i * 9) % 256
        out[i, ..., 1] = (yy * 7 + i * 4) % 256
        out[i, ..., 2] = rng.integers(0, 256)
    return out


def _flat(colour, t: int = 10, h: int = 32, w: int = 48) -> np.ndarray:
    return np.broadcast_to(np.asarray(colour, np.uint8), (t, h, w, 3)).copy()


def _decode_all(path) -> np.ndarray:
    """Every frame of the first video stream, decoded by PyAV directly (the reference)."""
    with av.open(str(path)) as c:
        return np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)])


def _keyframes(path) -> list[int]:
    """Frame indices of the keyframe packets (pts order = presentation order)."""
    with av.open(str(path)) as c:
        pk = [(p.pts, p.is_keyframe) for p in c.demux(video=0) if p.size]
    pts = sorted(p for p, _ in pk)
    return sorted(pts.index(p) for p, k in pk if k)


def _truncate(src, dst, fraction: float) -> str:
    data = open(src, "rb").read()
    with open(dst, "wb") as f:
        f.write(data[: int(len(data) * fraction)])
    return str(dst)


def _colour(i: int) -> tuple[int, int, int]:
    """A distinct flat colour per file index (channels far apart, so yuv420 keeps them apart)."""
    return (30 + 40 * (i % 5), 40 + 50 * ((i // 5) % 4), 200 - 30 * (i % 6))


def _dfdc(root, n_real: int = 4, frames: int = 8, split: bool = False, extra: dict | None = None) -> dict:
    """A DFDC folder: ``n_real`` real videos, one fake of each (its ``original``), each a flat colour."""
    os.makedirs(root, exist_ok=True)
    meta, i = {}, 0
    for r in range(n_real):
        real = f"real{r}.mp4"
        for name, label, original in ((real, "REAL", None), (f"fake{r}.mp4", "FAKE", real)):
            write_mp4(os.path.join(root, name), _flat(_colour(i), frames), fps=10, gop=4)
            meta[name] = {"label": label, "original": original, "colour": _colour(i)}
            if split:
                meta[name]["split"] = "val" if r == 0 else "train"
            i += 1
    meta.update(extra or {})
    with open(os.path.join(root, "metadata.json"), "w") as f:
        json.dump(meta, f)
    return meta


def _pixels(x: torch.Tensor, mean, std) -> torch.Tensor:
    """Normalised clips ``[..., 3, S, S]`` back to 0..255."""
    m = torch.tensor(mean).view(3, 1, 1)
    s = torch.tensor(std).view(3, 1, 1)
    return (x * s + m) * 255.0


# ----------------------------------------------------------------------------- sampling


def test_sample_indices_is_the_rounded_linspace():
    for n in range(1, 70):
        for t in range(1, 25):
            idx = sample_indices(n, t)
            # the closed form, exactly: round(k (n-1) / (t-1)) with ties up
            ref = [0] if t == 1 else [math.floor(Fraction(k * (n - 1), t - 1) + Fraction(1, 2)) for k in range(t)]
            assert idx == ref
            lin = np.linspace(0, n - 1, t)
            no_tie = np.abs(lin - np.floor(lin) - 0.5) > 1e-9
            assert np.array_equal(np.asarray(idx)[no_tie], np.round(lin)[no_tie].astype(int))
            assert len(idx) == t and idx[0] == 0 and (t == 1 or idx[-1] == n - 1)
            gaps = np.diff(idx)
            assert (gaps >= 0).all()
            if n >= t and t > 2:
                assert gaps.max() - gaps.min() <= 1 and gaps.min() >= 1


def test_a_short_video_repeats_its_frames_in_order(tmp_path):
    levels = [(20, 60, 200), (120, 30, 90), (230, 180, 10)]
    p = write_mp4(tmp_path / "short.mp4", np.stack([_flat(c, 1)[0] for c in levels]), fps=10)
    assert sample_indices(3, 7) == [0, 0, 1, 1, 1, 2, 2]  # linspace(0, 2, 7) = 0, .33, .67, 1, 1.33, 1.67, 2
    for seek in (True, False):
        frames = read_frames(p, sample_indices(3, 7), seek=seek)
        assert frames.shape == (7, 32, 48, 3)
        means = frames.reshape(7, -1, 3).mean(1)
        expect = np.array([levels[i] for i in [0, 0, 1, 1, 1, 2, 2]], np.float64)
        assert np.abs(means - expect).max() < 4  # the written colours, through yuv420 and back
    clip = load_clip(p, frames=5, size=8)
    assert clip.shape == (5, 3, 8, 8) and clip.dtype == torch.uint8
    assert torch.equal(clip[1], clip[2]) and torch.equal(clip[3], clip[4])  # 0, 1, 1, 2, 2


# ----------------------------------------------------------------------------- seeking


class _CountingSeeks:
    def __init__(self, container, log):
        self._c, self._log = container, log

    def seek(self, *args, **kwargs):
        self._log.append(args)
        return self._c.seek(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self._c, name)


@pytest.fixture
def gop_clip(tmp_path):
    path = write_mp4(tmp_path / "gop.mp4", _moving(64), fps=25, gop=8)
    assert _keyframes(path) == list(range(0, 64, 8))  # 8 GOPs of 8 frames
    return path


@pytest.mark.parametrize("indices", [
    [0], [63], [7, 8, 9], [5, 5, 4, 63, 0, 63], sample_indices(64, 10), sample_indices(64, 20),
    list(range(64)), [62, 1, 33, 34, 17],
])
def test_seeking_gives_exactly_the_frames_of_sequential_decoding(gop_clip, indices, monkeypatch):
    reference = _decode_all(gop_clip)
    assert len(reference) == 64
    assert all(not np.array_equal(reference[i], reference[i + 1]) for i in range(63))
    sequential = read_frames(gop_clip, indices, seek=False)

    def no_fallback(*a, **k):
        raise AssertionError("the seek path fell back to sequential decoding")

    monkeypatch.setattr(vd, "_decode_sequential", no_fallback)
    seeked = read_frames(gop_clip, indices, seek=True)
    assert seeked.dtype == np.uint8 and seeked.shape == (len(indices), 32, 48, 3)
    assert np.array_equal(seeked, sequential)
    assert np.array_equal(seeked, reference[indices])


@pytest.mark.parametrize("indices,seeks", [
    ([1, 2, 3], 1),  # one GOP: one seek, then decode on
    ([1, 17, 33], 3),  # a keyframe before each target: seek each time
    ([3, 9], 2),  # the next target lies past the next keyframe (8)
    ([6, 7, 8, 9], 1),  # the next keyframe is the very next frame: decoding on costs the same
    (list(range(64)), 1),
])
def test_decoding_goes_on_within_a_gop_instead_of_seeking(gop_clip, indices, seeks, monkeypatch):
    log = []
    opened = vd._open
    monkeypatch.setattr(vd, "_open", lambda p: (lambda c, s: (_CountingSeeks(c, log), s))(*opened(p)))
    frames = read_frames(gop_clip, indices)
    assert len(log) == seeks
    assert np.array_equal(frames, _decode_all(gop_clip)[indices])


def test_timestamps_off_the_frame_grid_fall_back_to_sequential_decoding(gop_clip, tmp_path, monkeypatch):
    # a 5-frame hole in the timestamps from the keyframe at frame 32 on (a dropped stretch, as in
    # variable-frame-rate captures): frame i >= 32 no longer sits at pts i / fps
    gap = tmp_path / "gap.mp4"
    with av.open(str(gop_clip)) as src, av.open(str(gap), "w") as dst:
        s = src.streams.video[0]
        out = dst.add_stream_from_template(s)
        step = int(1 / (s.average_rate * s.time_base))
        shift = 0
        for pk in src.demux(s):
            if pk.dts is None:
                continue
            if pk.is_keyframe and pk.pts == 32 * step:
                shift = 5 * step
            pk.pts, pk.dts = pk.pts + shift, pk.dts + shift
            pk.stream = out
            dst.mux(pk)
    reference = _decode_all(gap)
    assert np.array_equal(reference, _decode_all(gop_clip))  # the same pictures, other timestamps
    calls = []
    real = vd._decode_sequential
    monkeypatch.setattr(vd, "_decode_sequential", lambda *a: calls.append(1) or real(*a))
    indices = [40, 3, 50, 63]
    assert np.array_equal(read_frames(gap, indices), reference[indices])
    assert calls == [1]  # the seek path saw the timestamps and handed over


def test_probe_reports_the_stream(gop_clip):
    info = probe_video(gop_clip)
    assert (info.num_frames, info.fps, info.width, info.height) == (64, 25.0, 48, 32)


def test_an_index_beyond_the_end_and_bad_indices_are_named(gop_clip):
    for seek in (True, False):
        with pytest.raises(ValueError, match=r"gop.mp4' has no frame\(s\) \[64\]: it ended after 64"):
            read_frames(gop_clip, [3, 64], seek=seek)
    for bad in ([], [-1], [1.0], ["a"], None):
        with pytest.raises(ValueError, match="indices: "):
            read_frames(gop_clip, bad)


# ----------------------------------------------------------------------------- bad files


@pytest.fixture
def bad_videos(tmp_path):
    """Files that must fail, each with the reason that must be reported."""
    d = tmp_path / "bad"
    d.mkdir()
    good = write_mp4(d / "good.mp4", _moving(40), fps=25, gop=10)
    out = {}
    (d / "noise.mp4").write_bytes(np.random.default_rng(0).bytes(6000))
    out["noise.mp4"] = "cannot be opened"
    out["cut.mp4"] = "cannot be opened"  # the index (moov) sits at the end and is gone
    _truncate(good, d / "cut.mp4", 0.6)
    with av.open(str(d / "audio.mp4"), "w") as c:
        s = c.add_stream("aac", rate=16000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
        frame.sample_rate = 16000
        for pk in [*s.encode(frame), *s.encode()]:
            c.mux(pk)
    out["audio.mp4"] = "has no video stream"
    with av.open(str(d / "empty.mp4"), "w", format="matroska") as c:  # a video stream without frames
        v = c.add_stream("mpeg4", rate=25)
        v.width, v.height, v.pix_fmt = 32, 32, "yuv420p"
        s = c.add_stream("aac", rate=16000)
        for pk in [*s.encode(frame), *s.encode()]:
            c.mux(pk)
    out["empty.mp4"] = "0 frames"
    return d, out


def test_bad_files_are_named_with_the_reason(bad_videos):
    d, reasons = bad_videos
    for name, reason in reasons.items():
        with pytest.raises(ValueError, match=rf"{name}' .*{reason}"):
            probe_video(d / name)
        with pytest.raises(ValueError, match=rf"{name}'"):
            read_frames(d / name, [0])
    with pytest.raises(ValueError, match=r"nope.mp4' does not exist"):
        probe_video(d / "nope.mp4")


def test_a_file_truncated_inside_probes_fine_but_fails_to_decode(tmp_path):
    # with the index in front (faststart) a cut file still opens and lists all its frames
    src = write_mp4(tmp_path / "src.mp4", _moving(40, seed=3), fps=25, gop=10, faststart=True)
    cut = _truncate(src, tmp_path / "cut_inside.mp4", 0.6)
    assert probe_video(cut).num_frames == 40
    for seek in (True, False):
        with pytest.raises(ValueError, match=r"cut_inside.mp4' .*(cannot be decoded|ended after)"):
            read_frames(cut, sample_indices(40, 8), seek=seek)
    assert read_frames(cut, [0, 5]).shape == (2, 32, 48, 3)  # its first GOPs are intact


# ----------------------------------------------------------------------------- metadata


def test_metadata_listing_missing_files_names_them(tmp_path):
    _dfdc(tmp_path, n_real=1, extra={"gone.mp4": {"label": "FAKE"}, "lost.mp4": {"label": "REAL"}})
    with pytest.raises(ValueError, match=r"metadata.json: .*lists 2 file\(s\) that do not exist .*"
                                         r"\['gone.mp4', 'lost.mp4'\]"):
        read_metadata(tmp_path)
    dm = VideoDataModule(root=str(tmp_path), cache_dir=None)
    with pytest.raises(ValueError, match="gone.mp4"):
        dm.setup("fit")


@pytest.mark.parametrize("content,match", [
    (None, "metadata.json: .* does not exist"),
    ("{not json", "metadata.json: .* is not valid JSON"),
    ('["a.mp4"]', "metadata.json: .* must be a non-empty object"),
    ('{"a.mp4": {"label": "fake"}}', "metadata.json: entry 'a.mp4' .* label 'fake'"),
    ('{"a.mp4": {"label": "FAKE", "split": "test"}}', "metadata.json: entry 'a.mp4' .* split 'test'"),
    ('{"a.mp4": {"label": "FAKE", "original": 3}}', "metadata.json: entry 'a.mp4' .* original 3"),
])
def test_bad_metadata_is_named(tmp_path, content, match):
    write_mp4(tmp_path / "a.mp4", _flat((1, 2, 3), 2))
    if content is not None:
        (tmp_path / "metadata.json").write_text(content)
    with pytest.raises(ValueError, match=match):
        read_metadata(tmp_path)


def test_a_fake_and_its_original_share_a_split():
    entries = []
    for r in range(30):
        entries.append(VideoEntry(f"r{r}.mp4", "", 0.0, None, None))
        entries += [VideoEntry(f"f{r}_{k}.mp4", "", 1.0, None, f"r{r}.mp4") for k in range(r % 3)]
    for seed in range(5):
        train, val = split_entries(entries, 0.3, seed)
        assert sorted(train + val) == list(range(len(entries))) and train and val
        side = {entries[i].name: "train" for i in train} | {entries[i].name: "val" for i in val}
        for e in entries:
            if e.original is not None:
                assert side[e.name] == side[e.original]
        assert 6 <= sum(1 for i in val if entries[i].original is None) <= 12  # ~30% of 30 groups
    # an explicit split wins, and pulls the rest of its group along
    pinned = [VideoEntry("r0.mp4", "", 0.0, "val", None)] + entries[1:]
    train, val = split_entries(pinned, 0.3, 0)
    val_names = {pinned[i].name for i in val}
    assert "r0.mp4" in val_names
    # every entry marked "train" (DFDC's training parts): split as if unmarked
    marked = [VideoEntry(e.name, e.path, e.label, "train", e.original) for e in entries]
    assert split_entries(marked, 0.3, 4) == split_entries(entries, 0.3, 4)
    with pytest.raises(ValueError, match="val_fraction"):
        split_entries(entries[:1], 0.3, 0)


# ----------------------------------------------------------------------------- faces


def test_face_box_finds_the_astronauts_face():
    import skimage.data as sd

    im = sd.astronaut()  # 512 x 512; her face spans about x 180-270, y 60-170
    frames = np.stack([im, im, np.random.default_rng(0).integers(0, 256, im.shape, dtype=np.uint8)])
    top, left, h, w = face_box(frames)
    assert h == w and 100 <= h <= 180
    cy, cx = top + h / 2, left + w / 2
    assert 195 <= cx <= 255 and 85 <= cy <= 145
    assert 0 <= top and 0 <= left and top + h <= 512 and left + w <= 512
    # the margin: 1.3 x the detected face; the noise frame (no face) does not enter the median
    det = largest_face(im)
    assert det is not None and h == round(1.3 * max(det[2], det[3]))
    assert face_box(frames[:2]) == (top, left, h, w)


def test_no_face_gives_the_whole_frame():
    rng = np.random.default_rng(1)
    assert face_box(rng.integers(0, 256, (3, 96, 128, 3), dtype=np.uint8)) == (0, 0, 96, 128)
    assert face_box(_flat((90, 120, 150), 2, 64, 80)) == (0, 0, 64, 80)


def test_face_crop_of_a_video(tmp_path):
    import skimage.data as sd

    im = cv2.resize(sd.astronaut(), (256, 256), interpolation=cv2.INTER_AREA)
    p = write_mp4(tmp_path / "astro.mp4", np.stack([im] * 3), fps=10)
    frames = _decode_all(p)
    top, left, h, w = face_box(frames)
    assert 95 <= left + w / 2 <= 130 and 40 <= top + h / 2 <= 75 and h == w < 128
    crop = load_clip(p, frames=2, size=32, face_crop=True)
    whole = load_clip(p, frames=2, size=32, face_crop=False)
    assert crop.shape == whole.shape == (2, 3, 32, 32) and not torch.equal(crop, whole)
    # the crop is the face region of the frame, resized (OpenCV's area resize as the reference)
    ref = cv2.resize(frames[0, top:top + h, left:left + w], (32, 32), interpolation=cv2.INTER_AREA)
    diff = np.abs(crop[0].permute(1, 2, 0).numpy().astype(int) - ref.astype(int))
    assert diff.mean() < 6


# ----------------------------------------------------------------------------- dataset and cache


def test_clip_cache_is_reused(tmp_path, monkeypatch):
    p = write_mp4(tmp_path / "v.mp4", _moving(20), fps=10, gop=5)
    cache = tmp_path / "cache"
    first = VideoClips([p], [1.0], frames=4, size=16, cache_dir=cache)[0]
    files = list(cache.iterdir())
    assert len(files) == 1 and files[0].suffix == ".pt"
    stored = torch.load(files[0], weights_only=True)
    assert stored.dtype == torch.uint8 and stored.shape == (4, 3, 16, 16)
    assert torch.equal(stored, load_clip(p, 4, 16))

    def boom(*a, **k):
        raise AssertionError("decoded although the clip is cached")

    monkeypatch.setattr(vd, "read_frames", boom)
    monkeypatch.setattr(vd, "probe_video", boom)
    again = VideoClips([p], [1.0], frames=4, size=16, cache_dir=cache)[0]
    assert torch.equal(again[0], first[0]) and again[1].item() == 1.0
    with pytest.raises(AssertionError, match="decoded although"):  # another T is another entry
        VideoClips([p], [1.0], frames=5, size=16, cache_dir=cache)[0]
    monkeypatch.undo()
    t = os.stat(p).st_mtime_ns + 10**9  # a changed file is decoded again
    os.utime(p, ns=(t, t))
    calls = []
    real = vd.read_frames
    monkeypatch.setattr(vd, "read_frames", lambda *a, **k: calls.append(1) or real(*a, **k))
    VideoClips([p], [1.0], frames=4, size=16, cache_dir=cache)[0]
    assert calls == [1] and len(list(cache.iterdir())) == 2
    assert not [f for f in cache.iterdir() if ".tmp-" in f.name]


def test_items_are_normalised_and_the_flip_covers_the_whole_clip(tmp_path):
    clip = _moving(12)
    clip[:, :, :10] = 255  # a bright left edge: flipped clips have it on the right
    p = write_mp4(tmp_path / "v.mp4", clip, fps=10)
    mean, std = (0.4, 0.5, 0.6), (0.2, 0.25, 0.3)
    plain, y = VideoClips([p], None, frames=6, size=24, mean=mean, std=std)[0]
    assert plain.dtype == torch.float32 and plain.shape == (6, 3, 24, 24) and y.item() == -1.0 and y.ndim == 0
    pixels = _pixels(plain, mean, std)
    assert torch.allclose(pixels, load_clip(p, 6, 24).float(), atol=1e-3)
    torch.manual_seed(0)
    ds = VideoClips([p], [0.0], frames=6, size=24, mean=mean, std=std, train=True)
    kinds = []
    for _ in range(12):
        x, _ = ds[0]
        if torch.equal(x, plain):
            kinds.append("plain")
        else:
            assert torch.equal(x, plain.flip(-1))  # every frame flipped alike
            kinds.append("flip")
    assert set(kinds) == {"plain", "flip"}


def test_random_crop_is_one_window_for_the_whole_clip(tmp_path, monkeypatch):
    # a horizontal ramp 0..230 (same in every frame): a crop resized back is a steeper ramp over a
    # sub-range, of width between crop_scale and 1 of the full range, the same in every frame
    ramp = torch.linspace(0, 230, 32).round().to(torch.uint8)
    clip = ramp.view(1, 1, 1, 32).expand(6, 3, 32, 32).clone()
    ds = VideoClips(["unused.mp4"], [1.0], frames=6, size=32, mean=(0.0,) * 3, std=(1.0,) * 3, train=True,
                    crop_scale=0.7)
    monkeypatch.setattr(ds, "clip", lambda i: clip)
    torch.manual_seed(0)
    widths = []
    for _ in range(20):
        x, _ = ds[0]
        x = x * 255.0
        assert torch.allclose(x, x[:1].expand_as(x))  # every frame (and channel, row) alike
        row = x[0, 0, 0]
        lo, hi = row.min().item(), row.max().item()
        assert -1e-3 <= lo and hi <= 230 + 1e-3
        widths.append(hi - lo)
    assert min(widths) >= 0.7 * 230 * (31 / 32) - 8 and max(widths) <= 230 + 1e-3
    assert min(widths) < 0.95 * 230  # some crops are real crops
    with pytest.raises(ValueError, match="crop_scale"):
        VideoClips(["unused.mp4"], crop_scale=0.0)


# ----------------------------------------------------------------------------- datamodule


def test_datamodule_batches_labels_and_splits(tmp_path):
    meta = _dfdc(tmp_path / "dfdc", n_real=5)
    pred = tmp_path / "pred"
    pred.mkdir()
    for name in ("b.mp4", "a.mp4"):
        write_mp4(pred / name, _flat((10, 20, 30), 4), fps=10)
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.3, 0.4)
    dm = VideoDataModule(root=str(tmp_path / "dfdc"), frames=3, size=16, batch_size=3, val_fraction=0.4,
                         cache_dir=str(tmp_path / "cache"), mean=mean, std=std, predict_dir=str(pred))
    assert dm.classes == ["REAL", "FAKE"] and dm.hparams.frames == 3
    dm.setup("fit")
    train, val = dm.train_set.files, dm.val_set.files
    assert sorted(train + val) == sorted(meta) and not set(train) & set(val)
    for files in (train, val):  # every fake sits with its original
        assert all(meta[f]["original"] in files for f in files if meta[f]["original"])
    assert len(val) == 4  # round(5 groups * 0.4) = 2 groups of 2 videos
    seen = []
    for loader, files in ((dm.val_dataloader(), val), (dm.train_dataloader(), train)):
        for x, y in loader:
            assert x.dtype == torch.float32 and x.shape[1:] == (3, 3, 16, 16) and 1 <= x.shape[0] <= 3
            assert y.dtype == torch.float32 and y.shape == (x.shape[0],)
            pixels = _pixels(x, mean, std).mean(dim=(1, 3, 4))  # [B, 3] mean colour
            for colour, label in zip(pixels, y):
                name = min(meta, key=lambda f: float((colour - torch.tensor(meta[f]["colour"])).abs().max()))
                assert float((colour - torch.tensor(meta[name]["colour"])).abs().max()) < 4
                assert name in files and label.item() == (1.0 if meta[name]["label"] == "FAKE" else 0.0)
                seen.append(name)
    assert sorted(seen) == sorted(meta)
    assert dm.test_set is dm.val_set
    dm.setup("predict")
    assert dm.predict_set.files == ["a.mp4", "b.mp4"]
    x, y = next(iter(dm.predict_dataloader()))
    assert x.shape == (2, 3, 3, 16, 16) and y.tolist() == [-1.0, -1.0]


def test_explicit_splits_are_kept(tmp_path):
    meta = _dfdc(tmp_path, n_real=3, split=True)
    dm = VideoDataModule(root=str(tmp_path), frames=2, size=8, cache_dir=None)
    dm.setup("fit")
    assert sorted(dm.val_set.files) == ["fake0.mp4", "real0.mp4"]
    assert sorted(dm.train_set.files) == sorted(set(meta) - {"fake0.mp4", "real0.mp4"})


def _with_bad_files(root) -> dict:
    meta = _dfdc(root, n_real=3, split=True)
    good = os.path.join(root, "real1.mp4")
    (root / "noise.mp4").write_bytes(np.random.default_rng(5).bytes(5000))
    _truncate(good, root / "cut.mp4", 0.6)
    src = write_mp4(root / "src.mp4", _moving(30), fps=10, gop=5, faststart=True)
    _truncate(src, root / "inside.mp4", 0.5)
    os.remove(src)
    extra = {n: {"label": "FAKE", "split": "train", "original": None} for n in ("noise.mp4", "cut.mp4", "inside.mp4")}
    meta.update(extra)
    with open(root / "metadata.json", "w") as f:
        json.dump(meta, f)
    return meta


def test_bad_files_raise_before_training_naming_every_one(tmp_path):
    _with_bad_files(tmp_path)
    dm = VideoDataModule(root=str(tmp_path), frames=4, size=8, cache_dir=None)
    with pytest.raises(ValueError, match=r"2 of 7 train video\(s\) are corrupt \(skip_corrupt=True leaves them out\)"
                                         r": .*(noise.mp4' .*cut.mp4' |cut.mp4' .*noise.mp4' )"):
        dm.setup("fit")
    # a file that passes the probe but is cut inside: the error names it when it is read
    meta = json.loads((tmp_path / "metadata.json").read_text())
    for name in ("noise.mp4", "cut.mp4"):
        del meta[name]
    (tmp_path / "metadata.json").write_text(json.dumps(meta))
    dm = VideoDataModule(root=str(tmp_path), frames=4, size=8, cache_dir=None, batch_size=2)
    dm.setup("fit")
    with pytest.raises(ValueError, match=r"inside.mp4'"):
        for _ in dm.train_dataloader():
            pass


def test_skip_mode_trains_on_every_good_clip_once(tmp_path):
    meta = _with_bad_files(tmp_path)
    dm = VideoDataModule(root=str(tmp_path), frames=4, size=8, batch_size=3, cache_dir=str(tmp_path / "cache"),
                         bad_files="skip", augment=False)
    with pytest.warns(UserWarning, match=r"leaving out 2 of 7 train video\(s\).*(noise|cut).mp4.*(noise|cut).mp4"):
        dm.setup("fit")
    assert "inside.mp4" in dm.train_set.files  # it probes fine
    assert sorted(os.path.basename(f) for f in dm.skipped) == ["cut.mp4", "noise.mp4"]
    good = sorted(set(dm.train_set.files) - {"inside.mp4"})
    assert good == sorted(f for f in meta if f.startswith(("real", "fake")) and f not in ("real0.mp4", "fake0.mp4"))
    for epoch in range(2):  # the second epoch reads the cache for the good clips
        seen = []
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            for batch in dm.train_dataloader():
                x, y = batch
                assert x.shape[1:] == (4, 3, 8, 8) and y.shape == (x.shape[0],)
                pixels = _pixels(x, dm.mean, dm.std).mean(dim=(1, 3, 4))
                for colour in pixels:
                    name = min(good, key=lambda f: float((colour - torch.tensor(meta[f]["colour"])).abs().max()))
                    assert float((colour - torch.tensor(meta[name]["colour"])).abs().max()) < 4
                    seen.append(name)
        assert sorted(seen) == good  # every good clip once, nothing else lost
        assert [str(w.message) for w in caught if "inside.mp4" in str(w.message)]


def test_drop_failed_collate():
    a = (torch.zeros(2, 3, 4, 4), torch.tensor(1.0))
    x, y = vd.drop_failed_collate([None, a, None, a])
    assert x.shape == (2, 2, 3, 4, 4) and y.tolist() == [1.0, 1.0]
    assert vd.drop_failed_collate([None, None]) is None


@pytest.mark.parametrize("kwargs,match", [
    ({"frames": 0}, "frames: expected an int >= 1"),
    ({"frames": 2.5}, "frames: expected an int >= 1"),
    ({"size": 0}, "size: expected an int >= 1"),
    ({"batch_size": 0}, "batch_size: expected an int >= 1"),
    ({"num_workers": -1}, "num_workers: expected an int >= 0"),
    ({"val_fraction": 1.0}, r"val_fraction: expected a value in \(0, 1\)"),
    ({"face_crop": "yes"}, "face_crop: expected True or False"),
    ({"augment": 1}, "augment: expected True or False"),
    ({"bad_files": "ignore"}, "bad_files: expected 'raise' or 'skip'"),
    ({"predict_dir": "/no/such/dir"}, "predict_dir: '/no/such/dir' is not a directory"),
    ({"root": "/no/such/dir"}, "root: '/no/such/dir' is not a directory"),
    ({"mean": [0.5, 0.5]}, "mean"),
    ({"std": [0.5, 0.0, 0.5]}, "std: every value must be > 0"),
    ({"seed": -1}, "seed: expected an int >= 0"),
    ({"cache_dir": ""}, "cache_dir: expected a folder path or None"),
])
def test_bad_arguments_are_named(tmp_path, kwargs, match):
    _dfdc(tmp_path, n_real=1)
    kw = {"root": str(tmp_path), **kwargs}
    with pytest.raises(ValueError, match=match):
        VideoDataModule(**kw)


def test_bad_clip_arguments_are_named(tmp_path):
    with pytest.raises(ValueError, match="num_frames: expected an int >= 1"):
        sample_indices(0, 4)
    with pytest.raises(ValueError, match="frames: expected an int >= 1"):
        sample_indices(4, 0)
    with pytest.raises(ValueError, match="labels: expected one label per file"):
        VideoClips(["a.mp4"], [1.0, 0.0])
    with pytest.raises(ValueError, match="skip_corrupt: expected True or False"):
        VideoClips(["a.mp4"], skip_corrupt="warn")


def test_root_none_uses_the_embedded_default_under_data_dir(tmp_path, monkeypatch):
    import sys
    import types

    calls = []

    def synthetic_deepfakes(root):  # a stand-in for zoo.data.synthetic_faces (tested on its own)
        calls.append(str(root))
        if not os.path.isdir(root):
            _dfdc(root, n_real=2, split=True)
        return root

    monkeypatch.setitem(sys.modules, "zoo.data.synthetic_faces",
                        types.SimpleNamespace(synthetic_deepfakes=synthetic_deepfakes))
    dm = VideoDataModule(root=None, data_dir=str(tmp_path / "data"), frames=2, size=8, cache_dir=None)
    dm.prepare_data()
    dm.setup("fit")
    assert calls and set(calls) == {str(tmp_path / "data" / "deepfake_synth")}
    assert sorted(dm.train_set.files + dm.val_set.files) == ["fake0.mp4", "fake1.mp4", "real0.mp4", "real1.mp4"]


def test_predict_leaves_out_a_clip_failing_mid_run_only_with_skip_corrupt(tmp_path):
    # (the prediction writers leave the row of a clip left out mid-run out: zoo.callbacks)
    _dfdc(tmp_path / "dfdc", n_real=2, split=True)
    pred = tmp_path / "pred"
    pred.mkdir()
    write_mp4(pred / "a.mp4", _flat((10, 20, 30), 4), fps=10)
    (pred / "b.mp4").write_bytes(b"not a video")
    src = write_mp4(tmp_path / "src.mp4", _moving(30), fps=10, gop=5, faststart=True)
    _truncate(src, pred / "c.mp4", 0.5)
    kwargs = dict(root=str(tmp_path / "dfdc"), frames=4, size=8, cache_dir=None, predict_dir=str(pred),
                  batch_size=4)
    with pytest.raises(ValueError, match=r"b.mp4' cannot be opened"):
        VideoDataModule(**kwargs).setup("predict")
    dm = VideoDataModule(**kwargs, skip_corrupt=True)
    with pytest.warns(UserWarning, match=r"leaving out 1 of 3 predict video\(s\): .*b.mp4"):
        dm.setup("predict")
    assert dm.predict_set.files == ["a.mp4", "c.mp4"]
    with pytest.warns(UserWarning, match=r"c.mp4'"):
        (x, y), = list(dm.predict_dataloader())
    assert x.shape[0] == 1 and dm.predict_set.corrupt.was_skipped(1) and not dm.predict_set.corrupt.was_skipped(0)
