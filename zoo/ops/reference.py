"""Pure-torch implementations of the zoo ops: the fallback and the test oracle.

They take already-validated input (see :mod:`zoo.ops`) and define the semantics
the C++/CUDA kernels must reproduce; csrc/ops.cpp states the same contract.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor

from .boxes import cell_grid, cxcywh_to_xyxy, decode_boxes


def float_threshold(threshold: float) -> float:
    """The largest fp32 value <= ``threshold``: for any fp32 IoU ``v``, ``v > float_threshold(t)``
    is exactly ``v > t`` compared in double precision (as torchvision's CPU kernel does)."""
    f = torch.tensor(threshold, dtype=torch.float32)
    if f.item() > threshold:
        f = torch.nextafter(f, torch.tensor(float("-inf")))
    return f.item()


def compute_dtype(t: Tensor) -> torch.dtype:
    """What NMS computes in: fp64 for fp64 input (as torchvision), fp32 for everything else."""
    return torch.float64 if t.dtype == torch.float64 else torch.float32


def _iou_between(a: Tensor, b: Tensor) -> Tensor:
    """IoU ``[M, N]`` of xyxy boxes ``a [M, 4]`` and ``b [N, 4]`` (one dtype), in the kernels' order
    of operations: ``inter / (area_a + area_b - inter)`` (0/0 gives NaN, which suppresses nothing)."""
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    w = (torch.minimum(a[:, None, 2], b[None, :, 2]) - torch.maximum(a[:, None, 0], b[None, :, 0])).clamp(min=0)
    h = (torch.minimum(a[:, None, 3], b[None, :, 3]) - torch.maximum(a[:, None, 1], b[None, :, 1])).clamp(min=0)
    inter = w * h
    return inter / (area_a[:, None] + area_b[None, :] - inter)


def box_iou_matrix(boxes: Tensor) -> Tensor:
    """Pairwise IoU ``[N, N]`` of xyxy ``boxes``, computed as NMS computes it (fp64 for fp64, else fp32)."""
    b = boxes.to(compute_dtype(boxes))
    return _iou_between(b, b)


def nms(boxes: Tensor, scores: Tensor, iou_threshold: float) -> Tensor:
    """Greedy NMS. ``boxes [N, 4]`` xyxy, ``scores [N]`` -> kept indices ``int64 [K]`` by descending
    score (stable: equal scores keep the lower index first); suppress when IoU > ``iou_threshold``.
    fp64 boxes are compared in fp64, others in fp32 (as exactly as in double, via float_threshold);
    fp64 scores are ordered in fp64, others in fp32."""
    n = boxes.shape[0]
    if n == 0:
        return torch.empty(0, dtype=torch.int64, device=boxes.device)
    order = torch.sort(scores.to(compute_dtype(scores)), descending=True, stable=True).indices
    dtype = compute_dtype(boxes)
    b = boxes.to(dtype)[order]
    if dtype == torch.float32:
        iou_threshold = float_threshold(iou_threshold)
    keep = torch.empty(n, dtype=torch.bool, device=boxes.device)
    suppressed = torch.zeros(n, dtype=torch.bool, device=boxes.device)
    # Work in blocks so the IoU matrix stays small: a block first suppresses its own
    # members greedily, then its survivors suppress every later box at once.
    block = 512
    for start in range(0, n, block):
        stop = min(n, start + block)
        blk = b[start:stop]
        iou_in = torch.triu(_iou_between(blk, blk) > iou_threshold, diagonal=1)
        sup = suppressed[start:stop].clone()
        for i in range(stop - start):
            if not sup[i]:
                sup |= iou_in[i]
        keep[start:stop] = ~sup
        if stop < n and bool((~sup).any()):
            kept, rest = blk[~sup], b[stop:]
            iou = _iou_between(kept, rest)
            suppressed[stop:] |= (iou > iou_threshold).any(0)
    return order[keep]


def batched_nms(boxes: Tensor, scores: Tensor, idxs: Tensor, iou_threshold: float) -> Tensor:
    """NMS within each category of ``idxs`` separately; kept indices sorted by descending
    score, equal scores by lower index."""
    if boxes.shape[0] == 0:
        return torch.empty(0, dtype=torch.int64, device=boxes.device)
    keep_mask = torch.zeros(boxes.shape[0], dtype=torch.bool, device=boxes.device)
    for c in torch.unique(idxs).tolist():
        members = torch.nonzero(idxs == c).squeeze(1)
        keep_mask[members[nms(boxes[members], scores[members], iou_threshold)]] = True
    kept = torch.nonzero(keep_mask).squeeze(1)
    return kept[torch.sort(scores[kept].to(compute_dtype(scores)), descending=True, stable=True).indices]


#: The class activations of the YOLO ops: "sigmoid" (YOLOv3 / v4: each class independently)
#: and "softmax" (YOLOv2's region layer: one distribution over the C classes).
YOLO_CLS_ACTS = ("sigmoid", "softmax")


def class_probs(logits: Tensor, cls_act: str) -> Tensor:
    """Class probabilities from the class logits ``[..., C]``: ``sigmoid`` of each, or the
    ``softmax`` over the last dim (``torch.softmax``: the max is subtracted before ``exp``)."""
    return torch.softmax(logits, dim=-1) if cls_act == "softmax" else torch.sigmoid(logits)


def yolo_decode(pred: Tensor, anchors: Tensor, stride: float, scale_xy: float = 1.0,
                cls_act: str = "sigmoid") -> Tensor:
    """``pred [B, A*(5+C), H, W]`` raw logits -> ``[B, A*H*W, 5+C]``: cx, cy, w, h in pixels
    (:func:`zoo.ops.boxes.decode_boxes`: ``(sigmoid(t_xy) * s - 0.5 * (s - 1) + grid) * stride``
    with ``s = scale_xy``, ``exp(min(t_wh, WH_LOGIT_MAX)) * anchor``), then sigmoid objectness,
    then the class probabilities (:func:`class_probs` with ``cls_act``). Computed in fp32,
    returned in ``pred.dtype``."""
    bsz, ch, h, w = pred.shape
    a = anchors.shape[0]
    p = pred.float().reshape(bsz, a, ch // a, h, w).permute(0, 1, 3, 4, 2)  # [B, A, H, W, 5+C]
    grid = cell_grid(h, w, device=pred.device, dtype=torch.float32)  # [H, W, 2]
    xywh = decode_boxes(p[..., :4], grid, anchors.float().view(1, a, 1, 1, 2), stride, scale_xy)
    out = torch.cat([xywh, torch.sigmoid(p[..., 4:5]), class_probs(p[..., 5:], cls_act)], dim=-1)
    return out.reshape(bsz, a * h * w, ch // a).to(pred.dtype)


def yolo_candidates(
    decoded: Tensor, conf_threshold: float, multi_label: bool
) -> tuple[Tensor, Tensor, Tensor]:
    """One image's decoded rows ``[N, 5+C]`` -> candidate ``(boxes xyxy, scores, labels)`` in
    row order (and class order within a row when ``multi_label``)."""
    d = decoded.float()
    scores = d[:, 4:5] * d[:, 5:]
    xyxy = cxcywh_to_xyxy(d[:, :4])
    if multi_label:
        rows, labels = torch.nonzero(scores > conf_threshold, as_tuple=True)
        return xyxy[rows], scores[rows, labels], labels
    best, labels = scores.max(dim=1)
    rows = torch.nonzero(best > conf_threshold).squeeze(1)
    return xyxy[rows], best[rows], labels[rows]


def yolo_postprocess(
    preds: Sequence[Tensor],
    anchors: Sequence[Tensor],
    strides: Sequence[float],
    conf_threshold: float,
    iou_threshold: float,
    max_det: int,
    max_nms: int,
    multi_label: bool,
    scale_xy: Sequence[float] | None = None,
    cls_act: str = "sigmoid",
    nms_fn=batched_nms,
    decode_fn=None,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The unfused pipeline: decode (scale ``i`` with ``scale_xy[i]``, all 1.0 for None, and
    ``cls_act``) -> score = obj * class prob -> threshold -> cap at ``max_nms`` -> class-aware
    NMS (``nms_fn``, e.g. torchvision.ops.batched_nms) -> cap at ``max_det``.
    ``decode_fn(pred, anchors, stride, scale_xy, cls_act)`` replaces :func:`yolo_decode`
    (tests pass the kernel's, to check the rest of the pipeline exactly).

    Returns ``(boxes [K, 4], scores [K], labels [K], image_index [K])`` grouped by image.
    """
    decode_fn = decode_fn or yolo_decode
    scale_xy = [1.0] * len(preds) if scale_xy is None else scale_xy
    decoded = torch.cat([decode_fn(p.float(), a, s, sxy, cls_act)
                         for p, a, s, sxy in zip(preds, anchors, strides, scale_xy)], dim=1)
    # (an empty batch still concatenates: the lists start with an empty tensor each)
    out_b, out_s = [decoded.new_empty((0, 4))], [decoded.new_empty((0,))]
    out_l, out_i = ([torch.empty(0, dtype=torch.int64, device=decoded.device)] for _ in range(2))
    for b in range(decoded.shape[0]):
        boxes, scores, labels = yolo_candidates(decoded[b], conf_threshold, multi_label)
        order = torch.sort(scores, descending=True, stable=True).indices[:max_nms]
        boxes, scores, labels = boxes[order], scores[order], labels[order]
        keep = nms_fn(boxes, scores, labels, iou_threshold)[:max_det]
        out_b.append(boxes[keep])
        out_s.append(scores[keep])
        out_l.append(labels[keep])
        out_i.append(torch.full((keep.numel(),), b, dtype=torch.int64, device=decoded.device))
    return torch.cat(out_b), torch.cat(out_s), torch.cat(out_l).long(), torch.cat(out_i)


SE_GATES = ("sigmoid", "hard_sigmoid")
SE_ACTS = ("relu", "silu")


def _gate(u: Tensor, gate: str) -> Tensor:
    return torch.sigmoid(u) if gate == "sigmoid" else torch.nn.functional.hardsigmoid(u)


def squeeze_excite(
    x: Tensor, w1: Tensor, b1: Tensor, w2: Tensor, b2: Tensor, gate: str = "sigmoid", act: str = "relu"
) -> Tensor:
    """Squeeze-and-Excitation in eager torch: ``x * gate(w2 @ act(w1 @ mean_hw(x) + b1) + b2)``,
    ``act`` ReLU or SiLU (``h * sigmoid(h)``, EfficientNet's).

    ``x [N, C, H, W]``, ``w1 [Cr, C]``, ``b1 [Cr]``, ``w2 [C, Cr]``, ``b2 [C]``. The FCs run in fp32
    for fp16/bf16 input (as the kernels accumulate). Its gradients are torch autograd's: the
    fallback differentiates it, and the tests take autograd through it as the oracle of the
    fused backward kernels.

    An empty ``x`` (``N``, ``C``, ``H`` or ``W`` zero) gives an empty result whose weight
    gradients are zero, as the kernels give them: nothing depends on the weights. (The formula
    would give ``0 * gate'(u)``, NaN where a weight is NaN or inf, or where an empty plane's
    mean is.)"""
    acc = torch.float64 if x.dtype == torch.float64 else torch.float32
    if x.numel() == 0:
        # still connected to every weight, for autograd: the gradient of the sum is the sum of
        # an empty gradient, 0, broadcast to each weight (no product with the weights' values)
        total = w1.to(acc).sum() + b1.to(acc).sum() + w2.to(acc).sum() + b2.to(acc).sum()
        return (x.to(acc) + total).to(x.dtype)
    s = x.to(acc).mean((2, 3))
    h = torch.nn.functional.linear(s, w1.to(acc), b1.to(acc))
    z = torch.relu(h) if act == "relu" else torch.nn.functional.silu(h)
    g = _gate(torch.nn.functional.linear(z, w2.to(acc), b2.to(acc)), gate)
    return (x.to(acc) * g[:, :, None, None]).to(x.dtype)


# ----------------------------------------------------------------------------- AdderNet

# Working-set budget of the chunked adder2d fallback, in bytes: no temporary of the forward or
# of the X gradient is larger than this (plus the unfolded patches of one chunk of samples).
ADDER_CHUNK_BYTES = 64 * 2**20
# The X gradient's [R, K, C_out] temporary per step (2 MB steps ran 3x slower than 64 MB ones:
# the batched matmul over few rows and the per-step overhead dominate).
ADDER_STEP_BYTES = 64 * 2**20


def adder2d_out_size(h: int, w: int, kh: int, kw: int, stride: Sequence[int], padding: Sequence[int]) -> tuple[int, int]:
    """Output height and width of a ``kh x kw`` window with ``stride`` and zero ``padding``."""
    return (h + 2 * padding[0] - kh) // stride[0] + 1, (w + 2 * padding[1] - kw) // stride[1] + 1


def _adder_sample_chunk(x: Tensor, k: int, positions: int) -> int:
    """Samples per chunk so that one chunk's unfolded patches ``[n, K, L]`` fit the budget."""
    per_sample = max(1, k * positions * x.element_size())
    return max(1, min(x.shape[0], ADDER_CHUNK_BYTES // per_sample))


def adder2d_forward(x: Tensor, weight: Tensor, stride: Sequence[int], padding: Sequence[int]) -> Tensor:
    """AdderNet's layer: ``y[n, co, p] = -sum_k |X_p[n, k] - W[co, k]|`` over each patch.

    ``x [N, C_in, H, W]``, ``weight [C_out, C_in, kh, kw]``; patches as a convolution's (zero
    padding, ``stride``), ``k`` runs over ``C_in * kh * kw``. Returns ``[N, C_out, Ho, Wo]``.

    Memory-bounded: samples are unfolded a chunk at a time (at most ``ADDER_CHUNK_BYTES`` of
    patches) and the L1 distances come from ``torch.cdist(p=1)``, which never builds the
    ``[rows, K, C_out]`` difference tensor. Not differentiable by itself: the paper's gradients
    are :func:`adder2d_backward`, wired into autograd by :class:`Adder2dFunction`.
    """
    n, _, h, w = x.shape
    co, _, kh, kw = weight.shape
    ho, wo = adder2d_out_size(h, w, kh, kw, stride, padding)
    k = weight[0].numel()
    if k == 0:  # no input channels: every sum is empty
        return x.new_zeros((n, co, ho, wo))
    if h == 0 or w == 0:  # only padding (unfold takes no empty plane): pad explicitly
        x = torch.nn.functional.pad(x, (padding[1], padding[1], padding[0], padding[0]))
        padding = (0, 0)
    wmat = weight.reshape(co, k)
    y = x.new_empty((n, co, ho * wo))
    step = _adder_sample_chunk(x, k, ho * wo)
    for s in range(0, n, step):
        cols = torch.nn.functional.unfold(x[s:s + step], (kh, kw), padding=tuple(padding), stride=tuple(stride))
        # cdist: [n, L, K] x [1, C_out, K] -> [n, L, C_out]
        dist = torch.cdist(cols.transpose(1, 2), wmat[None], p=1.0, compute_mode="use_mm_for_euclid_dist_if_necessary")
        y[s:s + step] = -dist.transpose(1, 2)
    return y.view(n, co, ho, wo)


def adder2d_weight_grad(grad_y: Tensor, x: Tensor, weight: Tensor, stride: Sequence[int],
                        padding: Sequence[int]) -> Tensor:
    """The paper's full-precision weight gradient (no rescaling):
    ``dW[co, k] = sum_{n,p} (X_p[n, k] - W[co, k]) * g[n, co, p]``.

    It is linear in X: ``g^T X - W * sum_{n,p} g``, and ``g^T X`` is exactly a convolution's
    weight gradient, so this runs torch's convolution backward (no patch tensor at all). An
    empty x (no samples, no channels, or only padding) has ``g^T X = 0``."""
    if x.numel() == 0:
        dw = torch.zeros_like(weight)
    else:
        _, dw, _ = torch.ops.aten.convolution_backward(
            grad_y, x, weight, None, list(stride), list(padding), [1, 1], False, [0, 0], 1, [False, True, False])
    return dw - weight * grad_y.sum((0, 2, 3)).view(-1, 1, 1, 1)


def adder2d_input_grad(grad_y: Tensor, x: Tensor, weight: Tensor, stride: Sequence[int],
                       padding: Sequence[int]) -> Tensor:
    """The paper's input gradient: ``dX_p[n, k] = sum_co HT(W[co, k] - X_p[n, k]) * g[n, co, p]``
    (``HT`` clamps to [-1, 1]) on each patch, folded back onto ``x`` as col2im does (overlapping
    patches add up; what falls on the zero padding is dropped).

    Chunked: samples are unfolded ``ADDER_CHUNK_BYTES`` of patches at a time, and each step
    takes ``R`` patch rows so that its ``[R, K, C_out]`` temporary stays under ``ADDER_STEP_BYTES``."""
    n, ci, h, w = x.shape
    co, _, kh, kw = weight.shape
    k = weight[0].numel()
    if x.numel() == 0:  # nothing to fold onto
        return torch.zeros_like(x)
    wt = weight.reshape(co, k).t()  # [K, C_out]
    dx = torch.empty_like(x)
    rows_per_step = max(1, ADDER_STEP_BYTES // (k * co * x.element_size()))
    step = _adder_sample_chunk(x, k, grad_y.shape[2] * grad_y.shape[3])
    for s in range(0, n, step):
        cols = torch.nn.functional.unfold(x[s:s + step], (kh, kw), padding=tuple(padding), stride=tuple(stride))
        m, _, length = cols.shape
        rows = cols.transpose(1, 2).reshape(m * length, k)  # [R_all, K]
        g = grad_y[s:s + step].reshape(m, co, length).transpose(1, 2).reshape(m * length, co)  # [R_all, C_out]
        dcols = torch.empty_like(rows)
        for r in range(0, rows.shape[0], rows_per_step):
            diff = wt[None] - rows[r:r + rows_per_step, :, None]  # [R, K, C_out]
            diff.clamp_(-1.0, 1.0)
            torch.matmul(diff, g[r:r + rows_per_step, :, None], out=dcols[r:r + rows_per_step, :, None])
        dcols = dcols.view(m, length, k).transpose(1, 2)
        dx[s:s + step] = torch.nn.functional.fold(dcols, (h, w), (kh, kw), padding=tuple(padding),
                                                  stride=tuple(stride))
    return dx


def adder2d_backward(grad_y: Tensor, x: Tensor, weight: Tensor, stride: Sequence[int], padding: Sequence[int],
                     output_mask: Sequence[bool] = (True, True)) -> tuple[Tensor | None, Tensor | None]:
    """``(dX, dW)`` of :func:`adder2d_forward` by the paper's formulas (the HardTanh-clipped
    input gradient and the full-precision weight gradient, not rescaled); an entry whose
    ``output_mask`` is False is not computed (None)."""
    grad_y = grad_y.contiguous()
    dx = adder2d_input_grad(grad_y, x, weight, stride, padding) if output_mask[0] else None
    dw = adder2d_weight_grad(grad_y, x, weight, stride, padding) if output_mask[1] else None
    return dx, dw


def adder2d_rescale(dw: Tensor, eta: float) -> Tensor:
    """The paper's adaptive learning-rate scaling of an adder layer's weight gradient:
    ``dw * eta * sqrt(K) / ||dw||_2`` with ``K = dw.numel()``; ``eta == 0`` leaves ``dw`` as it
    is, and a zero gradient stays zero. No host sync (traceable)."""
    if not eta:
        return dw
    norm = torch.linalg.vector_norm(dw)
    scale = torch.where(norm > 0, (eta * dw.numel() ** 0.5) / norm, torch.zeros_like(norm))
    return dw * scale


class Adder2dFunction(torch.autograd.Function):
    """Autograd of the fallback: :func:`adder2d_forward`, then in backward the paper's
    gradients (:func:`adder2d_backward`) with the weight gradient rescaled by
    :func:`adder2d_rescale` (so the optimizer sees the rescaled gradient)."""

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, stride: tuple[int, int], padding: tuple[int, int],
                eta: float) -> Tensor:
        ctx.save_for_backward(x, weight)
        ctx.conf = (stride, padding, eta)
        return adder2d_forward(x, weight, stride, padding)

    @staticmethod
    def backward(ctx, grad_y: Tensor):
        x, weight = ctx.saved_tensors
        stride, padding, eta = ctx.conf
        dx, dw = adder2d_backward(grad_y, x, weight, stride, padding, ctx.needs_input_grad[:2])
        if dw is not None:
            dw = adder2d_rescale(dw, eta)
        return dx, dw, None, None, None


def adder2d(x: Tensor, weight: Tensor, stride: Sequence[int], padding: Sequence[int], eta: float) -> Tensor:
    """The fallback op, differentiable through :class:`Adder2dFunction`."""
    return Adder2dFunction.apply(x, weight, tuple(stride), tuple(padding), float(eta))
