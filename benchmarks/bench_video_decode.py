"""Clip loading: seeking to T sampled frames vs decoding every frame and picking them.

    python benchmarks/bench_video_decode.py [--frames 20] [--runs 5] [--width 640] [--height 360]
                                            [--length 300] [--fps 30] [--gop 30]

Writes one ``--length``-frame H.264 clip (``zoo.data.write_mp4``: ``--width`` x ``--height`` at
``--fps``, a keyframe every ``--gop`` frames, the GOP layout is printed), a camera pan over a
photo with sensor noise, then loads the ``--frames`` frames ``zoo.data.sample_indices`` picks:

* seek: ``read_frames(path, indices, seek=True)`` (seek to the keyframe before each target,
  decode forward to it, keep decoding within a GOP);
* full: ``read_frames(path, indices, seek=False)`` (decode every frame up to the last target
  and pick them, what a plain decoding loop does).

Both return the same uint8 ``[T, H, W, 3]`` (checked). Prints the frames/s of each (returned
frames per second of wall time) and the ratio seek / full as the median and range over
``--runs`` runs, each timing both sides in alternating order after one warm-up of each.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import zoo.data.video as vd  # noqa: E402
from benchmarks.timing import alternating_runs, median_range  # noqa: E402
from zoo.data.video import read_frames, sample_indices, write_mp4  # noqa: E402


def make_clip(path: str, length: int, width: int, height: int, fps: int, gop: int) -> str:
    """A pan across scikit-image's astronaut photo (upscaled to 2x the frame) with noise."""
    import cv2
    import skimage.data as sd

    photo = cv2.resize(sd.astronaut(), (2 * width, 2 * height), interpolation=cv2.INTER_CUBIC)
    rng = np.random.default_rng(0)
    frames = np.empty((length, height, width, 3), np.uint8)
    for t in range(length):
        x = round((width - 1) * t / max(1, length - 1))
        y = round((height - 1) * (0.5 + 0.5 * np.sin(2 * np.pi * t / length)))
        noise = rng.normal(0, 3, (height, width, 3))
        frames[t] = np.clip(photo[y:y + height, x:x + width] + noise, 0, 255).astype(np.uint8)
    return write_mp4(path, frames, fps=fps, gop=gop)


def keyframes(path: str) -> list[int]:
    """Frame indices of the keyframe packets (demuxed, not decoded)."""
    import av

    with av.open(path) as c:
        pk = [(p.pts, p.is_keyframe) for p in c.demux(video=0) if p.size]
    order = sorted(p for p, _ in pk)
    return sorted(order.index(p) for p, k in pk if k)


def decoded_frames(path: str, idx: list[int], seek: bool) -> tuple[int, int]:
    """(frames decoded, seeks) by one ``read_frames`` call, counted through a wrapped container
    (run once, outside the timed runs). Non-reference frames the seek path skips are not counted."""
    counts = [0, 0]

    class Counting:
        def __init__(self, container):
            self._c = container

        def seek(self, *a, **k):
            counts[1] += 1
            return self._c.seek(*a, **k)

        def decode(self, *a, **k):
            for frame in self._c.decode(*a, **k):
                counts[0] += 1
                yield frame

        def demux(self, *a, **k):
            for packet in self._c.demux(*a, **k):
                yield CountingPacket(packet)

        def __getattr__(self, name):
            return getattr(self._c, name)

    class CountingPacket:  # the seek path decodes packet by packet (skipping non-reference frames)
        def __init__(self, packet):
            self._p = packet

        def decode(self):
            frames = self._p.decode()
            counts[0] += len(frames)
            return frames

        def __getattr__(self, name):
            return getattr(self._p, name)

    opened = vd._open
    vd._open = lambda p: (lambda c, s: (Counting(c), s))(*opened(p))
    try:
        read_frames(path, idx, seek=seek)
    finally:
        vd._open = opened
    return counts[0], counts[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=20)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--width", type=int, default=640)
    ap.add_argument("--height", type=int, default=360)
    ap.add_argument("--length", type=int, default=300)
    ap.add_argument("--fps", type=int, default=30)
    ap.add_argument("--gop", type=int, default=30)
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="bench_video_")
    path = make_clip(os.path.join(tmp, "clip.mp4"), args.length, args.width, args.height, args.fps, args.gop)
    keys = keyframes(path)
    idx = sample_indices(args.length, args.frames)
    print(f"clip: {args.length} frames {args.width}x{args.height} at {args.fps} fps, "
          f"{os.path.getsize(path) / 1e6:.2f} MB, GOP {args.gop} (keyframes at {keys[:6]}... {len(keys)} in all)")
    print(f"sampled frames (T={args.frames}): {idx}")
    a, b = read_frames(path, idx, seek=True), read_frames(path, idx, seek=False)  # warm-up, and the check
    if not np.array_equal(a, b):
        raise SystemExit("seek and full decoding returned different frames")
    (n_seek, seeks), (n_full, _) = decoded_frames(path, idx, True), decoded_frames(path, idx, False)
    print(f"frames decoded: seek {n_seek} ({seeks} seeks), full {n_full}")
    seek_rates, full_rates, ratios = [], [], []
    sides = {"seek": lambda: read_frames(path, idx, seek=True), "full": lambda: read_frames(path, idx, seek=False)}
    for r, times in alternating_runs(sides, args.runs):
        seek_rates.append(len(idx) / times["seek"])
        full_rates.append(len(idx) / times["full"])
        ratios.append(times["full"] / times["seek"])
        print(f"run {r + 1}: seek {seek_rates[-1]:.1f} frames/s, full {full_rates[-1]:.1f} frames/s, "
              f"seek/full {ratios[-1]:.2f}x", flush=True)
    med = statistics.median
    print(f"T={args.frames} of {args.length} frames, {args.width}x{args.height}, GOP {args.gop}: "
          f"seek {med(seek_rates):.1f} frames/s, full {med(full_rates):.1f} frames/s; "
          f"throughput seek/full {median_range(ratios)}")
    os.remove(path)
    os.rmdir(tmp)


if __name__ == "__main__":
    main()
