"""Generated talking-head clips with face swaps, in the DFDC layout (mp4 files + ``metadata.json``).

The embedded default of the deepfake video detector: written to disk as real H.264 mp4 files
(a keyframe every second) and read back by the video reader like a user's data.

**Originals (REAL).** Each original has its own scene: a background (two-colour gradient, smooth
texture, 3-6 blurred shapes), a drawn person (shoulders in a clothing colour, neck, ears, a
skin-toned elliptical head, hair in one of four styles) and an identity (skin tone from pale
to dark, head width 32-44% of the frame side and aspect 1.2-1.35, eye spacing / size / height,
iris colour, eyebrow length / arch / thickness / tilt, nose length and width, mouth width and
height, lip colour). The head moves smoothly: translation (two sinusoids per axis, up to 8%
of the side), scale (+-6%), roll (+-14 deg), nodding and turning (the inner features slide
over the head), blinks (a Poisson process, 0.15-0.5 per second, 0.18-0.3 s each) and a
talking mouth (80% of the clips). Every frame gets a global lighting drift (gain 1 +- up to 5%)
and Gaussian sensor noise (sigma 1.5-4 levels of 255).

**Fakes (FAKE).** One per original, made from it: the same scene (background, body, head
motion, sensor noise), with the inner face (eyes, brows, nose, mouth and the skin around them)
of another identity rendered and blended into the head through a soft elliptical mask, as
face-swap methods do. Outside the blending mask a fake's rendered frames equal its original's
exactly (before encoding). Each fake draws a severity ``q ~ U(0.2, 1)`` and then every
artifact strength independently (``U(lo, hi)`` scaled by ``q`` where marked; lengths in pixels
at ``size`` 128, scaled with ``size``):

========================= =========================================================== =========
artifact                  what                                                        range
========================= =========================================================== =========
mask                      ellipse from above the brows to below the mouth, half-width 0.72-0.9
                          (of the head's); centre misplaced by (of the head's width)  0-5%
blend edge (seam)         mask feather sigma                                          0.8-3 px
                          blur ring (sigma 1.5 px) along the mask edge: weight       q*0.5-1
colour mismatch           RGB offset of the swapped skin (random hue and sign)        q*8-24
resolution loss           Gaussian blur of the swapped face, sigma                    q*0.5-1.5 px
temporal jitter           per-frame offset of the swapped face to the head, sigma     q*0.6-2.4 px
                          per-frame roll / scale jitter, sigma                        q*0.5-3 deg / q*0.4-2%
                          smoothing of the jitter (AR(1) coefficient)                 0-0.5
flicker                   per-frame gain of the swapped face, sigma                   q*0.4-3%
                          per-frame drop of the mask's opacity, sigma                 q*0-12%
noise mismatch            sensor noise kept inside the swapped face                   60-100%
blinks                    out of sync (the donor's own blinks)                        p = 0.5
mouth                     lag of the donor mouth behind the original's                0-0.12 s
========================= =========================================================== =========

With ``q`` uniform, about one fake in eight has ``q < 0.3`` (subtle); most carry a clear seam,
tone step and jitter. The colour offset has a random sign and hue, so global statistics of a
clip (e.g. its mean colour) do not tell real from fake.

**Files.** Clips are named ``clip_NNNN.mp4`` in a shuffled order (the name does not reveal the
label); ``metadata.json`` maps each name to ``{"label": "REAL"|"FAKE", "split": "train"|"val",
"original": null | "<original name>"}``. Splits are by original: a fake and its original are
always in the same split. The dataset is generated on first use: ``synthetic_deepfakes.json``
(the arguments and :data:`GENERATOR_VERSION`) is written first and ``metadata.json``
atomically last, so an interrupted run leaves no folder that looks complete. Rendering uses
OpenCV's anti-aliased drawing with sub-pixel positions, so the default 1,200 clips of 48 frames
at 128 px take about 90 s on 2 cores (half of it H.264 encoding), 49 MB on disk.
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from .video import write_mp4

GENERATOR_VERSION = 1  # bump when the rendering changes: it is part of the completeness stamp
STAMP_NAME = "synthetic_deepfakes.json"
METADATA_NAME = "metadata.json"

_SHIFT = 4  # sub-pixel bits of the OpenCV drawing calls
_ONE = 1 << _SHIFT
_REF = 128.0  # the size at which the pixel lengths of the docstring hold

_SKIN = np.asarray([(255, 226, 200), (236, 194, 160), (208, 150, 108), (160, 102, 66), (98, 62, 42)], np.float32)
_HAIR = np.asarray([(22, 18, 16), (58, 38, 26), (104, 70, 40), (196, 160, 98), (150, 64, 30), (160, 158, 152)],
                   np.float32)
_IRIS = np.asarray([(70, 44, 24), (40, 90, 140), (70, 110, 60), (110, 90, 50), (30, 24, 20)], np.float32)


# ------------------------------------------------------------------------------------------
# parameters


@dataclass
class Face:
    """The inner face of an identity, in head units (``a``: half-width, ``b``: half-height;
    ``v`` grows downwards). Colours are RGB floats."""

    eye_v: float  # eye height, in b
    eye_dx: float  # eye distance from the midline, in a
    eye_rx: float  # eye half-width, in a
    eye_ry: float  # eye half-height, in eye_rx
    eye_tilt: float  # degrees, outer corners up for > 0
    iris: np.ndarray  # [3]
    brow_dv: float  # brow height above the eye, in b
    brow_len: float  # brow half-length, in a
    brow_arch: float  # in brow_len
    brow_thick: float  # in a
    brow_tilt: float  # degrees
    nose_len: float  # in b, from the eye line
    nose_w: float  # in a
    mouth_v: float  # in b
    mouth_w: float  # half-width, in a
    mouth_h: float  # open half-height, in a
    lip: np.ndarray  # [3]


@dataclass
class Scene:
    """One original clip: background, person, identity and per-frame motion (arrays ``[T]``)."""

    size: int
    frames: int
    fps: int
    background: np.ndarray  # uint8 [size, size, 3]
    skin: np.ndarray  # [3]
    a: float  # head half-width, pixels at scale 1
    b: float  # head half-height
    hair_style: int  # 0 short crop, 1 cap, 2 long, 3 cap with fringe
    hair: np.ndarray  # [3]
    hairline: float  # in b (negative: above the centre)
    clothing: np.ndarray  # [3]
    face: Face
    cx: np.ndarray  # [T] head centre, pixels
    cy: np.ndarray  # [T]
    scale: np.ndarray  # [T]
    roll: np.ndarray  # [T] degrees
    pitch: np.ndarray  # [T] nodding, about -1..1
    yaw: np.ndarray  # [T] turning, about -1..1
    body_cx: np.ndarray  # [T]
    blink: np.ndarray  # [T] eye closure 0 (open) .. 1 (closed)
    mouth: np.ndarray  # [T] mouth opening 0..1
    gaze: np.ndarray  # [T, 2] iris offset, in eye half-axes
    gain: np.ndarray  # [T] global lighting
    noise_sigma: float
    noise_seed: int


@dataclass
class Swap:
    """The face swap that turns a :class:`Scene` into a fake; per-frame arrays are ``[T]``."""

    severity: float
    face: Face  # the donor's inner face
    blink: np.ndarray  # [T] the donor's eye closure
    mouth: np.ndarray  # [T] the donor's mouth opening
    jitter: np.ndarray  # [T, 4]: dx, dy (pixels), droll (degrees), dscale (relative)
    mask_v: float  # mask centre, in b
    mask_ru: float  # mask half-width, in a
    mask_rv: float  # mask half-height, in b
    mask_shift: np.ndarray  # [2] misplacement, pixels
    feather: float  # mask edge sigma, pixels
    seam: float  # weight of the blur ring along the mask edge
    colour: np.ndarray  # [3] RGB offset of the swapped skin
    blur: float  # sigma of the swapped face's resolution loss, pixels
    flicker: np.ndarray  # [T] gain of the swapped face
    alpha: np.ndarray  # [T] opacity of the mask
    noise_keep: float  # fraction of the sensor noise kept inside the swapped face


def _smooth(rng: np.random.Generator, t: np.ndarray, amp: float, f_lo: float, f_hi: float, n: int = 2) -> np.ndarray:
    """A smooth random motion ``[T]``: ``n`` sinusoids of random frequency and phase, peak <= ``amp``."""
    out = np.zeros_like(t)
    weights = rng.dirichlet(np.ones(n))
    for w in weights:
        out += w * np.sin(2 * math.pi * rng.uniform(f_lo, f_hi) * t + rng.uniform(0, 2 * math.pi))
    return (amp * out).astype(np.float32)


def _blinks(rng: np.random.Generator, t: np.ndarray) -> np.ndarray:
    """Eye closure ``[T]`` in [0, 1]: blinks at Poisson times, 0.18-0.3 s each, closed at mid-blink."""
    rate = rng.uniform(0.15, 0.5)
    closure = np.zeros_like(t)
    start, end = -0.3, float(t[-1]) + 0.3
    s = start + rng.exponential(1.0 / rate) * rng.uniform()  # the process is running before t=0
    while s < end:
        dur = rng.uniform(0.18, 0.3)
        closure = np.maximum(closure, np.clip(1.0 - np.abs(t - s) / (dur / 2), 0.0, 1.0) ** 0.5)
        s += dur + rng.exponential(1.0 / rate)
    return closure.astype(np.float32)


def _sample_face(rng: np.random.Generator) -> Face:
    return Face(
        eye_v=rng.uniform(-0.16, 0.0), eye_dx=rng.uniform(0.32, 0.46), eye_rx=rng.uniform(0.13, 0.2),
        eye_ry=rng.uniform(0.45, 0.7), eye_tilt=rng.uniform(-8, 8), iris=_IRIS[rng.integers(len(_IRIS))]
        + rng.uniform(-15, 15, 3).astype(np.float32), brow_dv=rng.uniform(0.13, 0.22),
        brow_len=rng.uniform(0.16, 0.26), brow_arch=rng.uniform(0.1, 0.45), brow_thick=rng.uniform(0.035, 0.08),
        brow_tilt=rng.uniform(-10, 10), nose_len=rng.uniform(0.22, 0.36), nose_w=rng.uniform(0.08, 0.16),
        mouth_v=rng.uniform(0.45, 0.6), mouth_w=rng.uniform(0.24, 0.42), mouth_h=rng.uniform(0.08, 0.16),
        lip=np.asarray((rng.uniform(150, 200), rng.uniform(60, 100), rng.uniform(70, 100)), np.float32),
    )


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """A background ``uint8 [size, size, 3]``: gradient, smooth texture, a few blurred shapes."""
    c0, c1 = rng.uniform(20, 235, 3), rng.uniform(20, 235, 3)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / max(size - 1, 1)
    theta = rng.uniform(0, 2 * math.pi)
    ramp = np.clip((xx - 0.5) * math.cos(theta) + (yy - 0.5) * math.sin(theta) + 0.5, 0, 1)[..., None]
    img = (c0 * (1 - ramp) + c1 * ramp).astype(np.float32)
    cells = int(rng.integers(3, 9))
    tex = rng.normal(0.0, rng.uniform(4, 16), (cells, cells, 3)).astype(np.float32)
    img += cv2.resize(tex, (size, size), interpolation=cv2.INTER_CUBIC)
    img = np.clip(img, 0, 255).astype(np.uint8)
    for _ in range(int(rng.integers(3, 7))):
        colour = tuple(float(c) for c in rng.uniform(0, 255, 3))
        p = rng.uniform(-0.1, 1.1, 2) * size
        r = rng.uniform(0.05, 0.3) * size
        kind = rng.integers(3)
        if kind == 0:
            cv2.circle(img, _pt(*p), int(r * _ONE), colour, -1, cv2.LINE_AA, _SHIFT)
        elif kind == 1:
            q = p + rng.uniform(-1, 1, 2) * r * 2
            cv2.rectangle(img, _pt(*p), _pt(*q), colour, -1, cv2.LINE_AA, _SHIFT)
        else:
            q = p + rng.uniform(-1, 1, 2) * r * 3
            cv2.line(img, _pt(*p), _pt(*q), colour, max(1, int(r / 4)), cv2.LINE_AA, _SHIFT)
    sigma = rng.uniform(0.3, 1.5) * size / _REF  # out of focus
    return cv2.GaussianBlur(img, (0, 0), sigma)


def sample_scene(rng: np.random.Generator, size: int = 128, frames: int = 48, fps: int = 16) -> Scene:
    """Draw one original scene (identity, background, motion) of ``frames`` frames of ``size`` px."""
    _check_clip_args(size, frames, fps)
    t = np.arange(frames, dtype=np.float32) / fps
    background = _background(rng, size)
    tone = rng.uniform(0, len(_SKIN) - 1)
    lo = int(min(tone, len(_SKIN) - 2))
    skin = _SKIN[lo] * (1 - (tone - lo)) + _SKIN[lo + 1] * (tone - lo) + rng.uniform(-8, 8, 3).astype(np.float32)
    a = rng.uniform(0.16, 0.22) * size
    b = a * rng.uniform(1.2, 1.35)
    face = _sample_face(rng)
    hairline = face.eye_v - face.brow_dv - rng.uniform(0.14, 0.3)
    s = size
    cx = s * rng.uniform(0.4, 0.6) + _smooth(rng, t, rng.uniform(0.0, 0.08) * s, 0.1, 0.7)
    cy = s * rng.uniform(0.42, 0.5) + _smooth(rng, t, rng.uniform(0.0, 0.04) * s, 0.1, 0.7)
    talking = rng.random() < 0.8
    mouth = np.clip(rng.uniform(0.2, 0.6) + _smooth(rng, t, rng.uniform(0.5, 0.9), 1.2, 4.0, 3), 0, 1)
    if not talking:
        mouth = np.clip(_smooth(rng, t, 0.15, 0.1, 0.5) + rng.uniform(-0.05, 0.05), 0, 1)
    return Scene(
        size=size, frames=frames, fps=fps, background=background, skin=skin.astype(np.float32), a=a, b=b,
        hair_style=int(rng.integers(4)),
        hair=_HAIR[rng.integers(len(_HAIR))] + rng.uniform(-12, 12, 3).astype(np.float32), hairline=hairline,
        clothing=rng.uniform(20, 235, 3).astype(np.float32), face=face, cx=cx, cy=cy,
        scale=1.0 + _smooth(rng, t, rng.uniform(0.0, 0.06), 0.1, 0.6),
        roll=rng.uniform(-6, 6) + _smooth(rng, t, rng.uniform(0, 8), 0.1, 0.8),
        pitch=_smooth(rng, t, rng.uniform(0, 1), 0.3, 1.2), yaw=rng.uniform(-0.4, 0.4) + _smooth(rng, t, 0.3, 0.1, 0.5),
        body_cx=(size / 2 + 0.6 * (cx - size / 2)).astype(np.float32), blink=_blinks(rng, t),
        mouth=mouth.astype(np.float32),
        gaze=np.stack([_smooth(rng, t, 0.35, 0.1, 0.6), _smooth(rng, t, 0.15, 0.1, 0.6)], 1),
        gain=1.0 + _smooth(rng, t, rng.uniform(0, 0.05), 0.05, 0.4),
        noise_sigma=float(rng.uniform(1.5, 4.0)), noise_seed=int(rng.integers(2 ** 31)),
    )


def sample_swap(rng: np.random.Generator, scene: Scene) -> Swap:
    """Draw a face swap for ``scene``: a donor identity and artifact strengths (see the module doc)."""
    t = np.arange(scene.frames, dtype=np.float32) / scene.fps
    px = scene.size / _REF
    q = float(rng.uniform(0.2, 1.0))
    face = _sample_face(rng)
    blink = _blinks(rng, t) if rng.random() < 0.5 else scene.blink.copy()
    lag = rng.uniform(0.0, 0.12)
    mouth = np.interp(t - lag, t, scene.mouth).astype(np.float32)
    rho = rng.uniform(0.0, 0.5)
    raw = rng.normal(0.0, 1.0, (scene.frames, 4)).astype(np.float32)
    jit = np.empty_like(raw)
    jit[0] = raw[0]
    for i in range(1, scene.frames):  # AR(1) with unit stationary variance
        jit[i] = rho * jit[i - 1] + math.sqrt(1 - rho * rho) * raw[i]
    jit *= np.asarray([q * rng.uniform(0.6, 2.4) * px, q * rng.uniform(0.6, 2.4) * px,
                       q * rng.uniform(0.5, 3.0), q * rng.uniform(0.004, 0.02)], np.float32)
    direction = rng.normal(0.0, 0.5, 3) + rng.choice([-1.0, 1.0])
    colour = (q * rng.uniform(8, 24) * direction / np.linalg.norm(direction)).astype(np.float32)
    top = face.eye_v - face.brow_dv - 0.12  # the mask covers the donor's brows .. below the mouth
    bottom = face.mouth_v + 0.16
    mask_ru = rng.uniform(0.72, 0.9)
    mask_rv = min((bottom - top) / 2, 0.9) * rng.uniform(0.95, 1.05)
    mask_shift = (rng.uniform(-0.05, 0.05, 2) * scene.a).astype(np.float32)
    feather = rng.uniform(0.8, 3.0) * px
    seam = q * rng.uniform(0.5, 1.0)
    blur = q * rng.uniform(0.5, 1.5) * px
    flicker = 1.0 + rng.normal(0.0, q * rng.uniform(0.004, 0.03), scene.frames)
    alpha = np.clip(1.0 - np.abs(rng.normal(0.0, q * rng.uniform(0.0, 0.12), scene.frames)), 0, 1)
    return Swap(
        severity=q, face=face, blink=blink, mouth=mouth, jitter=jit, mask_v=(top + bottom) / 2, mask_ru=mask_ru,
        mask_rv=mask_rv, mask_shift=mask_shift, feather=feather, seam=seam, colour=colour, blur=blur,
        flicker=flicker.astype(np.float32), alpha=alpha.astype(np.float32),
        noise_keep=rng.uniform(0.6, 1.0),
    )


# ------------------------------------------------------------------------------------------
# drawing


def _pt(x: float, y: float) -> tuple[int, int]:
    return int(round(x * _ONE)), int(round(y * _ONE))


def _ax(rx: float, ry: float) -> tuple[int, int]:
    return max(0, int(round(rx * _ONE))), max(0, int(round(ry * _ONE)))


def _rgb(c) -> tuple[float, float, float]:
    return tuple(min(255.0, max(0.0, float(v))) for v in c[:3])  # type: ignore[return-value]


class _Pose:
    """Maps head coordinates (pixels at scale 1, ``v`` down) of one frame to image coordinates."""

    def __init__(self, cx: float, cy: float, scale: float, roll: float, pitch: float, yaw: float, a: float, b: float):
        self.cx, self.cy, self.s, self.roll = cx, cy, scale, roll
        th = math.radians(roll)
        self.c, self.sn = math.cos(th), math.sin(th)
        self.pitch, self.yaw, self.a, self.b = pitch, yaw, a, b

    def head(self, u: float, v: float) -> tuple[float, float]:
        """A point fixed to the head outline (no turning)."""
        return (self.cx + self.s * (u * self.c - v * self.sn), self.cy + self.s * (u * self.sn + v * self.c))

    def surface(self, u: float, v: float) -> tuple[float, float]:
        """A point on the face surface: slides with turning (yaw) and nodding (pitch)."""
        u = u * (1 - 0.12 * abs(self.yaw)) + 0.18 * self.yaw * self.a
        v = v + 0.1 * self.pitch * self.b
        return self.head(u, v)


def _draw_person(img: np.ndarray, scene: Scene, i: int, pose: _Pose, skin: np.ndarray) -> None:
    """Body, neck, ears, head outline and hair of frame ``i`` onto ``img`` (uint8, in place)."""
    a, b, s = scene.a, scene.b, pose.s
    size = scene.size
    cv2.ellipse(img, _pt(scene.body_cx[i], size + 0.25 * b), _ax(2.6 * a, 1.15 * b), 0, 0, 360,
                _rgb(scene.clothing), -1, cv2.LINE_AA, _SHIFT)
    neck = _rgb(skin * 0.82)
    cv2.line(img, _pt(*pose.head(0, 0.6 * b)), _pt(scene.body_cx[i], size), neck, max(1, int(round(0.9 * a * s))),
             cv2.LINE_AA, _SHIFT)
    cv2.ellipse(img, _pt(*pose.head(0, 0.95 * b)), _ax(0.45 * a * s, 0.5 * b * s), pose.roll, 0, 360, neck, -1,
                cv2.LINE_AA, _SHIFT)
    if scene.hair_style == 2:  # long hair behind the head
        cv2.ellipse(img, _pt(*pose.head(0, 0.15 * b)), _ax(1.2 * a * s, 1.12 * b * s), pose.roll, 0, 360,
                    _rgb(scene.hair * 0.9), -1, cv2.LINE_AA, _SHIFT)
    for side in (-1.0, 1.0):
        ex, ey = pose.head(side * 0.97 * a - 0.08 * pose.yaw * a, 0.0)
        cv2.ellipse(img, _pt(ex, ey), _ax(0.16 * a * s, 0.26 * a * s), pose.roll, 0, 360, _rgb(skin * 0.9),
                    -1, cv2.LINE_AA, _SHIFT)
    cv2.ellipse(img, _pt(*pose.head(0, 0)), _ax(a * s, b * s), pose.roll, 0, 360, _rgb(skin * 0.93), -1,
                cv2.LINE_AA, _SHIFT)
    cv2.ellipse(img, _pt(*pose.head(0.03 * pose.yaw * a, 0.02 * b)), _ax(0.88 * a * s, 0.9 * b * s), pose.roll,
                0, 360, _rgb(skin), -1, cv2.LINE_AA, _SHIFT)
    hl = scene.hairline * b + 0.1 * pose.pitch * b
    top = -1.04 * b
    depth = 0.35 if scene.hair_style == 0 else 1.0  # a short crop only covers the crown
    centre_v = top + (hl - top) * (1 - depth) if scene.hair_style == 0 else hl
    cv2.ellipse(img, _pt(*pose.head(0, centre_v)), _ax(1.05 * a * s, (centre_v - top) * s), pose.roll, 180,
                360, _rgb(scene.hair), -1, cv2.LINE_AA, _SHIFT)
    if scene.hair_style in (2, 3):  # side locks / fringe
        for k in range(-2, 3):
            u = k * 0.32 * a
            if scene.hair_style == 2 and abs(k) < 2:
                continue
            cv2.ellipse(img, _pt(*pose.head(u, hl)), _ax(0.2 * a * s, 0.14 * b * s), pose.roll + 10 * k, 0, 180,
                        _rgb(scene.hair), -1, cv2.LINE_AA, _SHIFT)


def _draw_face(img: np.ndarray, face: Face, pose: _Pose, skin: np.ndarray, blink: float, mouth: float,
               gaze: np.ndarray, hair: np.ndarray) -> None:
    """The inner face (eyes, brows, nose, mouth) of one frame onto ``img`` (uint8, in place)."""
    a, b, s = pose.a, pose.b, pose.s
    dark = _rgb(skin * 0.55)
    for side in (-1.0, 1.0):
        ex, ev = side * face.eye_dx * a, face.eye_v * b
        rx, ry = face.eye_rx * a * s, face.eye_rx * face.eye_ry * a * s
        ang = pose.roll - side * face.eye_tilt
        centre = pose.surface(ex, ev)
        open_ = 1.0 - float(blink)
        if open_ > 0.12:
            cv2.ellipse(img, _pt(*centre), _ax(rx, ry * open_), ang, 0, 360, (238.0, 236.0, 230.0), -1,
                        cv2.LINE_AA, _SHIFT)
            ir = min(0.62 * ry * 1.5, rx * 0.55)
            ir_v = min(ir, ry * open_)
            ic = pose.surface(ex + gaze[0] * (rx - ir) / s, ev + gaze[1] * ry / s * 0.3)
            cv2.ellipse(img, _pt(*ic), _ax(ir, ir_v), ang, 0, 360, _rgb(face.iris), -1, cv2.LINE_AA, _SHIFT)
            cv2.ellipse(img, _pt(*ic), _ax(0.45 * ir, 0.45 * ir_v), ang, 0, 360, (12.0, 10.0, 10.0), -1,
                        cv2.LINE_AA, _SHIFT)
            cv2.ellipse(img, _pt(*centre), _ax(rx, ry * open_), ang, 180, 360, dark, 1, cv2.LINE_AA, _SHIFT)
        else:
            cv2.ellipse(img, _pt(*centre), _ax(rx, 0.25 * ry), ang, 0, 180, dark, 1, cv2.LINE_AA, _SHIFT)
        bc = pose.surface(ex, ev - face.brow_dv * b)
        cv2.ellipse(img, _pt(*bc), _ax(face.brow_len * a * s, face.brow_arch * face.brow_len * a * s),
                    pose.roll - side * face.brow_tilt, 200, 340, _rgb(hair * 0.75),
                    max(1, int(round(face.brow_thick * a * s))), cv2.LINE_AA, _SHIFT)
    nose_top = pose.surface(0.0, (face.eye_v + 0.05) * b)
    nose_tip = pose.surface(0.04 * a, (face.eye_v + face.nose_len) * b)
    cv2.line(img, _pt(*nose_top), _pt(*nose_tip), _rgb(skin * 0.8), 1, cv2.LINE_AA, _SHIFT)
    cv2.ellipse(img, _pt(*pose.surface(0.0, (face.eye_v + face.nose_len) * b)),
                _ax(face.nose_w * a * s, 0.05 * b * s), pose.roll, 0, 180, _rgb(skin * 0.68), 1, cv2.LINE_AA,
                _SHIFT)
    mc = pose.surface(0.0, face.mouth_v * b)
    mw = face.mouth_w * a * s
    open_h = face.mouth_h * a * s * float(mouth)
    cv2.ellipse(img, _pt(*mc), _ax(mw, max(0.06 * a * s, open_h + 0.05 * a * s)), pose.roll, 0, 360, _rgb(face.lip),
                -1, cv2.LINE_AA, _SHIFT)
    if open_h > 0.3:
        cv2.ellipse(img, _pt(*mc), _ax(0.8 * mw, open_h), pose.roll, 0, 360, (70.0, 24.0, 30.0), -1, cv2.LINE_AA,
                    _SHIFT)
    else:
        cv2.ellipse(img, _pt(*mc), _ax(0.9 * mw, 0.02 * a * s), pose.roll, 0, 360, _rgb(face.lip * 0.6), 1,
                    cv2.LINE_AA, _SHIFT)


def _pose(scene: Scene, i: int, jitter: np.ndarray | None = None) -> _Pose:
    dx, dy, dr, ds = (0.0, 0.0, 0.0, 0.0) if jitter is None else (float(v) for v in jitter[i])
    return _Pose(float(scene.cx[i]) + dx, float(scene.cy[i]) + dy, float(scene.scale[i]) * (1 + ds),
                 float(scene.roll[i]) + dr, float(scene.pitch[i]), float(scene.yaw[i]), scene.a, scene.b)


def _clean_frame(scene: Scene, i: int) -> np.ndarray:
    """Frame ``i`` of the original without noise or lighting: uint8 ``[size, size, 3]``."""
    img = scene.background.copy()
    pose = _pose(scene, i)
    _draw_person(img, scene, i, pose, scene.skin)
    _draw_face(img, scene.face, pose, scene.skin, scene.blink[i], scene.mouth[i], scene.gaze[i], scene.hair)
    return img


def _swapped_frame(scene: Scene, swap: Swap, i: int) -> tuple[np.ndarray, np.ndarray]:
    """Frame ``i`` of the donor face at the jittered pose, and the blending mask:
    ``(float32 [size, size, 3] blurred face, float32 [size, size] mask in [0, 1])``."""
    img = scene.background.copy()
    pose = _pose(scene, i, swap.jitter)
    skin = scene.skin + swap.colour
    _draw_person(img, scene, i, pose, skin)
    _draw_face(img, swap.face, pose, skin, swap.blink[i], swap.mouth[i], scene.gaze[i], scene.hair)
    face = img.astype(np.float32)
    if swap.blur > 0.05:
        face = cv2.GaussianBlur(face, (0, 0), swap.blur)
    face *= swap.flicker[i]
    mask = np.zeros((scene.size, scene.size), np.float32)
    mx, my = pose.surface(0.0, swap.mask_v * scene.b)
    cv2.ellipse(mask, _pt(mx + swap.mask_shift[0], my + swap.mask_shift[1]),
                _ax(swap.mask_ru * scene.a * pose.s, swap.mask_rv * scene.b * pose.s), pose.roll, 0, 360, 1.0, -1,
                cv2.LINE_AA, _SHIFT)
    mask = cv2.GaussianBlur(mask, (0, 0), swap.feather) * swap.alpha[i]
    return face, mask


def _noise(scene: Scene) -> np.ndarray:
    rng = np.random.default_rng(scene.noise_seed)
    return rng.standard_normal((scene.frames, scene.size, scene.size, 3), dtype=np.float32) * scene.noise_sigma


def _to_uint8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


def render_pair(scene: Scene, swap: Swap) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Render an original and its fake: ``(real uint8 [T, H, W, 3], fake uint8 [T, H, W, 3],
    mask float32 [T, H, W])``. Where ``mask == 0`` the two clips are identical."""
    t, size = scene.frames, scene.size
    noise = _noise(scene)
    real = np.empty((t, size, size, 3), np.uint8)
    fake = np.empty_like(real)
    masks = np.empty((t, size, size), np.float32)
    seam_sigma = 1.5 * size / _REF
    for i in range(t):
        g = float(scene.gain[i])
        orig = _clean_frame(scene, i).astype(np.float32) * g + noise[i]
        face, m = _swapped_frame(scene, swap, i)
        face = face * g + noise[i] * swap.noise_keep
        m3 = m[..., None]
        out = orig + m3 * (face - orig)
        if swap.seam > 0:
            ring = (swap.seam * 4.0) * m3 * (1.0 - m3)
            out = out + ring * (cv2.GaussianBlur(out, (0, 0), seam_sigma) - out)
        real[i], fake[i], masks[i] = _to_uint8(orig), _to_uint8(out), m
    return real, fake, masks


def render_clip(scene: Scene, swap: Swap | None = None) -> np.ndarray:
    """Render ``scene`` as uint8 ``[T, size, size, 3]`` RGB: the original, or the fake when ``swap`` is given."""
    if swap is not None:
        return render_pair(scene, swap)[1]
    noise = _noise(scene)
    out = np.empty((scene.frames, scene.size, scene.size, 3), np.uint8)
    for i in range(scene.frames):
        out[i] = _to_uint8(_clean_frame(scene, i).astype(np.float32) * float(scene.gain[i]) + noise[i])
    return out


def swap_mask(scene: Scene, swap: Swap) -> np.ndarray:
    """The blending mask of the fake: float32 ``[T, size, size]`` in [0, 1] (0: the original's pixel)."""
    return np.stack([_swapped_frame(scene, swap, i)[1] for i in range(scene.frames)])


def face_box(scene: Scene, margin: float = 0.1) -> np.ndarray:
    """Per-frame box of the head ellipse plus ``margin`` (of the head size): int ``[T, 4]`` xyxy,
    clipped to the frame."""
    r = max(scene.a, scene.b) * scene.scale * (1 + margin)
    x0, y0 = np.floor(scene.cx - r), np.floor(scene.cy - r)
    x1, y1 = np.ceil(scene.cx + r) + 1, np.ceil(scene.cy + r) + 1
    box = np.stack([x0, y0, x1, y1], 1)
    return np.clip(box, 0, scene.size).astype(np.int64)


# ------------------------------------------------------------------------------------------
# the dataset


def _check_clip_args(size: int, frames: int, fps: int) -> None:
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 32 or size % 2:
        raise ValueError(f"size: expected an even int >= 32, got {size!r}")
    if isinstance(frames, bool) or not isinstance(frames, (int, np.integer)) or frames < 2:
        raise ValueError(f"frames: expected an int >= 2, got {frames!r}")
    if isinstance(fps, bool) or not isinstance(fps, (int, np.integer)) or fps < 1:
        raise ValueError(f"fps: expected an int >= 1, got {fps!r}")


def _split_counts(n_originals: int, val_fraction: float) -> int:
    """Number of validation originals (at least one when ``val_fraction > 0``, at least one left to train)."""
    n_val = int(round(val_fraction * n_originals))
    if val_fraction > 0:
        n_val = max(1, n_val)
    return min(n_val, n_originals - 1)


def _is_complete(root: Path, stamp: dict) -> bool:
    meta_path, stamp_path = root / METADATA_NAME, root / STAMP_NAME
    if not meta_path.is_file() or not stamp_path.is_file():
        return False
    try:
        if json.loads(stamp_path.read_text()) != stamp:
            return False
        meta = json.loads(meta_path.read_text())
    except (OSError, ValueError):
        return False
    return all((root / name).is_file() for name in meta)


def _write_json_atomic(path: Path, obj) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=1, sort_keys=True))
    os.replace(tmp, path)


def synthetic_deepfakes(root: str | os.PathLike, n_originals: int = 600, frames: int = 48, size: int = 128,
                        fps: int = 16, val_fraction: float = 0.25, seed: int = 0) -> Path:
    """Write ``n_originals`` REAL clips and one FAKE per original under ``root`` (DFDC layout).

    Clips are ``frames`` frames of ``size`` x ``size`` px at ``fps`` (H.264, a keyframe every
    second). ``round(val_fraction * n_originals)`` originals (at least one when
    ``val_fraction > 0``), with their fakes, form the ``val`` split. Deterministic given
    ``seed``: original ``i`` and its fake come from the random stream ``(seed, i)``, so they do
    not depend on ``n_originals``. If ``root`` already holds a complete set made with the same
    arguments, nothing is written. Returns ``Path(root)``.
    """
    _check_clip_args(size, frames, fps)
    if isinstance(n_originals, bool) or not isinstance(n_originals, (int, np.integer)) or n_originals < 1:
        raise ValueError(f"n_originals: expected an int >= 1, got {n_originals!r}")
    if not isinstance(val_fraction, (int, float)) or isinstance(val_fraction, bool) or not 0 <= val_fraction < 1:
        raise ValueError(f"val_fraction: expected a number in [0, 1), got {val_fraction!r}")
    if val_fraction > 0 and n_originals < 2:
        raise ValueError(f"n_originals: expected >= 2 to have both splits (val_fraction > 0), got {n_originals}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed: expected an int >= 0, got {seed!r}")
    root = Path(root)
    stamp = {"n_originals": int(n_originals), "frames": int(frames), "size": int(size), "fps": int(fps),
             "val_fraction": float(val_fraction), "seed": int(seed), "version": GENERATOR_VERSION}
    if _is_complete(root, stamp):
        return root
    if (root / METADATA_NAME).is_file() and not (root / STAMP_NAME).is_file():
        raise ValueError(f"root: {root} holds a {METADATA_NAME} not written by synthetic_deepfakes; "
                         "refusing to overwrite it")
    root.mkdir(parents=True, exist_ok=True)
    # from here on the folder is incomplete until metadata.json is written again
    (root / METADATA_NAME).unlink(missing_ok=True)
    _write_json_atomic(root / STAMP_NAME, stamp)

    n_val = _split_counts(n_originals, val_fraction)
    order = np.random.default_rng([seed, 1 << 20]).permutation(n_originals)
    val = set(order[:n_val].tolist())
    names = np.random.default_rng([seed, 1 << 21]).permutation(2 * n_originals)  # clip k -> file number
    fmt = "clip_{:04d}.mp4" if 2 * n_originals <= 10000 else "clip_{:06d}.mp4"
    wanted = {fmt.format(int(n)) for n in names}
    for old in [*root.glob("clip_*.mp4"), *root.glob("tmp_clip_*.mp4")]:  # leftovers of an earlier run
        if old.name not in wanted:
            old.unlink()
    meta = {}
    for i in range(n_originals):
        rng = np.random.default_rng([seed, i])
        scene = sample_scene(rng, size, frames, fps)
        swap = sample_swap(rng, scene)
        real, fake, _ = render_pair(scene, swap)
        real_name, fake_name = fmt.format(int(names[2 * i])), fmt.format(int(names[2 * i + 1]))
        split = "val" if i in val else "train"
        for name, clip in ((real_name, real), (fake_name, fake)):
            tmp = root / ("tmp_" + name)
            write_mp4(tmp, clip, fps=fps)
            os.replace(tmp, root / name)
        meta[real_name] = {"label": "REAL", "split": split, "original": None}
        meta[fake_name] = {"label": "FAKE", "split": split, "original": real_name}
    _write_json_atomic(root / METADATA_NAME, dict(sorted(meta.items())))
    return root

