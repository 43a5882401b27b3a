"""Input generators shared by the op tests (CPU and CUDA)."""
from __future__ import annotations

import os

import pytest
import torch

COCO_ANCHORS = torch.tensor(
    [[10, 13], [16, 30], [33, 23], [30, 61], [62, 45], [59, 119], [116, 90], [156, 198], [373, 326]],
    dtype=torch.float32,
).view(3, 3, 2)
STRIDES = [8.0, 16.0, 32.0]


def clustered_boxes(n: int, seed: int = 0, extent: float = 1000.0, quantum: float | None = 1 / 16):
    """``n`` boxes around n/20 objects (heavy overlap, like raw detector output) and
    unique scores. Coordinates are multiples of ``quantum`` in [0, extent] so that
    torchvision's batched_nms coordinate-offset trick is exact in fp32."""
    g = torch.Generator().manual_seed(seed)
    k = max(1, n // 20)
    centers = torch.rand(k, 2, generator=g) * extent * 0.9 + extent * 0.05
    sizes = torch.rand(k, 2, generator=g) * extent * 0.08 + extent * 0.02
    which = torch.randint(0, k, (n,), generator=g)
    c = centers[which] + torch.randn(n, 2, generator=g) * 0.1 * sizes[which]
    wh = sizes[which] * (1 + 0.1 * torch.randn(n, 2, generator=g)).clamp(min=0.5)
    boxes = torch.cat([c - wh / 2, c + wh / 2], 1).clamp(0, extent)
    if quantum:
        boxes = (boxes / quantum).round() * quantum
    scores = torch.randperm(n, generator=g).float() / max(n, 1)
    return boxes, scores


def uniform_boxes(n: int, seed: int = 0, extent: float = 1000.0, max_size: float = 60.0):
    g = torch.Generator().manual_seed(seed)
    xy = (torch.rand(n, 2, generator=g) * extent * 16).round() / 16
    wh = (torch.rand(n, 2, generator=g) * max_size * 16).round() / 16
    return torch.cat([xy, xy + wh], 1), torch.randperm(n, generator=g).float() / max(n, 1)


def nms_adversarial_cases() -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Named (boxes, scores) inputs that stress NMS: ties, duplicates, degenerate boxes,
    far-away and negative coordinates, everything suppressed, nothing at all."""
    g = torch.Generator().manual_seed(3)
    boxes, _ = clustered_boxes(400, seed=4)
    one_box = torch.tensor([[0.0, 0.0, 10.0, 10.0]]).repeat(300, 1)
    return {
        "all_tied": (boxes, torch.full((400,), 0.5)),
        "few_levels": (boxes, torch.randint(0, 4, (400,), generator=g).float()),
        "duplicates": (boxes[:50].repeat(8, 1), torch.rand(400, generator=g)),
        "duplicates_tied": (boxes[:20].repeat(20, 1), torch.ones(400)),
        "zero_area": (torch.cat([boxes[:200, :2], boxes[:200, :2]], 1).repeat(2, 1), torch.rand(400, generator=g)),
        "zero_width": (boxes[:, [0, 1, 0, 3]], torch.rand(400, generator=g)),
        "points_and_lines": (
            torch.tensor([[5, 5, 5, 5], [5, 5, 5, 5], [0, 0, 10, 0], [0, 0, 10, 0], [0, 0, 10, 10]]).float(),
            torch.tensor([0.9, 0.8, 0.7, 0.6, 0.5]),
        ),
        "huge_coordinates": (boxes * 100 + 1e5, torch.rand(400, generator=g)),
        "around_1e5_small_boxes": (boxes / 100 + 1e5, torch.rand(400, generator=g)),
        "negative_coordinates": (boxes - 500, torch.rand(400, generator=g)),
        "all_suppressed": (one_box, torch.rand(300, generator=g)),
        "all_suppressed_tied": (one_box, torch.ones(300)),
        "empty": (torch.zeros(0, 4), torch.zeros(0)),
    }


def yolo_maps(batch=2, size=416, num_classes=80, positives=200, seed=0, anchors_per_scale=3):
    """Raw YOLO maps as a trained net emits them: objectness logits mostly very low,
    ``positives`` cells per image with objectness around 0.25..0.99 and one strong class."""
    g = torch.Generator().manual_seed(seed)
    a, k = anchors_per_scale, 5 + num_classes
    maps = []
    for s in STRIDES:
        h = int(size // s)
        p = torch.randn(batch, a, k, h, h, generator=g)
        p[:, :, 4] = p[:, :, 4] - 8.0
        p[:, :, 5:] = p[:, :, 5:] - 3.0
        maps.append(p)
    for b in range(batch):
        for _ in range(positives):
            si = int(torch.randint(0, len(maps), (1,), generator=g))
            p = maps[si]
            h = p.shape[-1]
            ai = int(torch.randint(0, a, (1,), generator=g))
            y, x = (int(v) for v in torch.randint(0, h, (2,), generator=g))
            p[b, ai, 4, y, x] = float(torch.rand(1, generator=g) * 6 - 1)
            p[b, ai, 5 + int(torch.randint(0, num_classes, (1,), generator=g)), y, x] = 3.0 + float(
                torch.rand(1, generator=g)
            )
    return [p.reshape(batch, a * k, p.shape[-2], p.shape[-1]) for p in maps]


def require_cuda_kernels(ops: tuple[str, ...]) -> None:
    """Skip unless zoo._C has CUDA kernels for every op in ``ops``; with
    ZOO_REQUIRE_CUDA_OPS=1 (set by benchmarks/device_check.sh on a GPU machine) fail instead."""
    from zoo.ops import _ext

    if _ext.available() and all(torch._C._dispatch_has_kernel_for_dispatch_key(f"zoo::{op}", "CUDA") for op in ops):
        return
    msg = (f"zoo._C has no CUDA kernels for {', '.join(ops)} (build with ZOO_FORCE_CUDA=1); "
           f"load error: {_ext.load_error()}")
    if os.environ.get("ZOO_REQUIRE_CUDA_OPS") == "1":
        pytest.fail(msg)
    pytest.skip(msg)


@pytest.fixture
def anchors():
    return list(COCO_ANCHORS.unbind(0))
