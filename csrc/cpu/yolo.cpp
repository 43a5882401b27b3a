// CPU kernels: yolo_decode and the fused yolo_postprocess.
//
// yolo_decode turns the channel-major map [B, A*(5+C), H, W] into rows
// [B, A*H*W, 5+C]; it works tile by tile (64 cells x all channels) so reads stay
// sequential per channel plane and the strided writes stay in cache.
//
// Class probabilities are sigmoid(logit) or, for cls_act "softmax", the softmax over the
// cell's C class logits (yolo_decode.h): the decode takes the maximum and the sum of a
// tile's cells plane by plane, in the same order as softmax_stats walks one cell.
//
// yolo_postprocess never decodes the whole map. A cell can only produce a
// detection if sigmoid(objectness) > conf_threshold (class probabilities are
// <= 1, softmax's too), so it scans the objectness planes only, decodes the few
// cells that pass, scores their classes, then sorts, caps and runs per-class greedy
// NMS -- one image per thread.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <optional>
#include <vector>

#include "../yolo_decode.h"
#include "../checks.h"
#include "nms_cpu.h"

namespace zoo {
namespace cpu {
namespace {

using yolo::sigmoid;

constexpr int64_t kCellTile = 64;
constexpr int64_t kGrainValues = 32768;
// yolo_postprocess spreads images over threads only when the images after the first are
// expected to take about 40 ms or more on one core (see yolo_postprocess_cpu). Work is
// counted in candidates, plus one tenth of a candidate per scanned row (measured on the
// 2-core CPU: about 150 ns per multi-label candidate, 15 ns per scanned row).
constexpr int64_t kParallelWork = int64_t(1) << 18;

template <typename scalar_t>
void decode_image_tiles(const scalar_t* in, scalar_t* out, const float* anchors, int64_t A, int64_t K, int64_t H,
                        int64_t W, float stride, yolo::XyScale xy, bool softmax, int64_t b, int64_t a, int64_t c0,
                        int64_t c1) {
  const int64_t HW = H * W;
  const scalar_t* src = in + (b * A + a) * K * HW;      // plane k at src + k * HW
  scalar_t* dst = out + ((b * A + a) * HW) * K;         // row cell at dst + cell * K
  const float aw = anchors[2 * a], ah = anchors[2 * a + 1];
  for (int64_t cell = c0; cell < c1; ++cell) {
    const float gx = static_cast<float>(cell % W), gy = static_cast<float>(cell / W);
    scalar_t* row = dst + cell * K;
    row[0] = static_cast<scalar_t>(yolo::decode_xy(static_cast<float>(src[cell]), gx, stride, xy));
    row[1] = static_cast<scalar_t>(yolo::decode_xy(static_cast<float>(src[HW + cell]), gy, stride, xy));
    row[2] = static_cast<scalar_t>(yolo::decode_wh(static_cast<float>(src[2 * HW + cell]), aw));
    row[3] = static_cast<scalar_t>(yolo::decode_wh(static_cast<float>(src[3 * HW + cell]), ah));
  }
  for (int64_t k = 4; k < (softmax ? 5 : K); ++k) {
    const scalar_t* plane = src + k * HW;
    for (int64_t cell = c0; cell < c1; ++cell) {
      dst[cell * K + k] = static_cast<scalar_t>(sigmoid(static_cast<float>(plane[cell])));
    }
  }
  if (!softmax) return;
  // Softmax over the class planes 5..K-1: each cell's maximum, then its sum, then p.
  float m[kCellTile], sum[kCellTile];
  const int64_t n = c1 - c0;
  for (int64_t i = 0; i < n; ++i) m[i] = -INFINITY, sum[i] = 0.f;
  for (int64_t k = 5; k < K; ++k) {
    const scalar_t* plane = src + k * HW + c0;
    for (int64_t i = 0; i < n; ++i) m[i] = yolo::softmax_max(m[i], static_cast<float>(plane[i]));
  }
  for (int64_t k = 5; k < K; ++k) {
    const scalar_t* plane = src + k * HW + c0;
    for (int64_t i = 0; i < n; ++i) sum[i] += yolo::softmax_term(static_cast<float>(plane[i]), m[i]);
  }
  for (int64_t k = 5; k < K; ++k) {
    const scalar_t* plane = src + k * HW + c0;
    for (int64_t i = 0; i < n; ++i) {
      dst[(c0 + i) * K + k] = static_cast<scalar_t>(yolo::softmax_prob(static_cast<float>(plane[i]), m[i], sum[i]));
    }
  }
}

at::Tensor yolo_decode_cpu(const at::Tensor& pred, const at::Tensor& anchors, double stride, double scale_xy,
                           c10::string_view cls_act) {
  checks::ClsAct act;
  const at::Tensor anc = checks::yolo_decode_args(pred, anchors, stride, scale_xy, cls_act, act);  // fp32, contiguous
  const int64_t B = pred.size(0), CH = pred.size(1), H = pred.size(2), W = pred.size(3), A = anchors.size(0);
  const int64_t K = CH / A, HW = H * W;
  const at::Tensor p = pred.contiguous();
  at::Tensor out = at::empty({B, A * HW, K}, pred.options());
  if (out.numel() == 0) return out;
  const int64_t tiles = ceil_div(HW, kCellTile);
  // Threads only for chunks of at least kGrainValues output values (torch's own grain for
  // elementwise ops): a small map is decoded on the calling thread, without a fork.
  const int64_t grain = std::max<int64_t>(1, kGrainValues / (kCellTile * K));
  const float s = static_cast<float>(stride);
  const yolo::XyScale xy = yolo::xy_scale(scale_xy);
  const bool softmax = act == checks::ClsAct::kSoftmax;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, p.scalar_type(), "zoo_yolo_decode", [&] {
    const scalar_t* in = p.data_ptr<scalar_t>();
    scalar_t* o = out.data_ptr<scalar_t>();
    const float* an = anc.data_ptr<float>();
    at::parallel_for(0, B * A * tiles, grain, [&](int64_t lo, int64_t hi) {
      for (int64_t t = lo; t < hi; ++t) {
        const int64_t tile = t % tiles, ba = t / tiles;
        const int64_t c0 = tile * kCellTile, c1 = std::min(HW, c0 + kCellTile);
        decode_image_tiles<scalar_t>(in, o, an, A, K, H, W, s, xy, softmax, ba / A, ba % A, c0, c1);
      }
    });
  });
  return out;
}

// One image's detections.
struct Detections {
  std::vector<float> boxes;  // 4 per detection
  std::vector<float> scores;
  std::vector<int64_t> labels;
};

struct Candidate {
  float x1, y1, x2, y2, score;
  int64_t label;
};

struct ScaleView {
  const void* data;  // [B, A*K, H, W]
  at::ScalarType dtype;
  const float* anchors;  // [A, 2]
  int64_t A, H, W;
  float stride;
  yolo::XyScale xy;  // scale_x_y and its offset
};

template <typename scalar_t>
void scan_scale(const ScaleView& v, int64_t b, int64_t K, float conf, bool multi_label, bool softmax,
                std::vector<Candidate>& cands, std::vector<float>& cls) {
  const int64_t HW = v.H * v.W, C = K - 5;
  const scalar_t* img = static_cast<const scalar_t*>(v.data) + b * v.A * K * HW;
  for (int64_t a = 0; a < v.A; ++a) {
    const scalar_t* src = img + a * K * HW;
    const scalar_t* obj_plane = src + 4 * HW;
    for (int64_t cell = 0; cell < HW; ++cell) {
      const float obj = sigmoid(static_cast<float>(obj_plane[cell]));
      if (!(obj > conf)) continue;  // obj * cls <= obj: nothing in this cell can pass
      // score of each class, as obj * p in fp32 (p = sigmoid(logit), or the cell's softmax)
      bool has_nan = false;
      const scalar_t* logits = src + 5 * HW + cell;  // class c at logits[c * HW]
      float m = 0.f, sum = 1.f;
      if (softmax) yolo::softmax_stats(logits, HW, C, m, sum);
      for (int64_t c = 0; c < C; ++c) {
        const float l = static_cast<float>(logits[c * HW]);
        cls[c] = obj * (softmax ? yolo::softmax_prob(l, m, sum) : sigmoid(l));
        has_nan |= std::isnan(cls[c]);
      }
      const float gx = static_cast<float>(cell % v.W), gy = static_cast<float>(cell / v.W);
      float box[4];
      yolo::cxcywh_to_xyxy(yolo::decode_xy(static_cast<float>(src[cell]), gx, v.stride, v.xy),
                           yolo::decode_xy(static_cast<float>(src[HW + cell]), gy, v.stride, v.xy),
                           yolo::decode_wh(static_cast<float>(src[2 * HW + cell]), v.anchors[2 * a]),
                           yolo::decode_wh(static_cast<float>(src[3 * HW + cell]), v.anchors[2 * a + 1]), box);
      const float x1 = box[0], y1 = box[1], x2 = box[2], y2 = box[3];
      if (multi_label) {
        for (int64_t c = 0; c < C; ++c) {
          if (cls[c] > conf) cands.push_back({x1, y1, x2, y2, cls[c], c});
        }
      } else if (!has_nan) {  // a NaN makes the row's max NaN, which never passes
        int64_t best = 0;
        for (int64_t c = 1; c < C; ++c) {
          if (cls[c] > cls[best]) best = c;  // first arg-max on ties
        }
        if (cls[best] > conf) cands.push_back({x1, y1, x2, y2, cls[best], best});
      }
    }
  }
}

// Image b's detections into `out`; returns its number of candidates.
int64_t postprocess_image(const std::vector<ScaleView>& scales, int64_t b, int64_t K, float conf, float iou_thr,
                          int64_t max_det, int64_t max_nms, bool multi_label, bool softmax, Detections& out) {
  std::vector<Candidate> cands;
  std::vector<float> cls(K - 5);
  for (const ScaleView& v : scales) {
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, v.dtype, "zoo_yolo_scan", [&] {
      scan_scale<scalar_t>(v, b, K, conf, multi_label, softmax, cands, cls);
    });
  }
  const int64_t n = static_cast<int64_t>(cands.size());
  if (n == 0) return 0;
  // stable sort by score, descending (scores are > conf >= 0: never NaN); cap at max_nms
  std::vector<uint32_t> key(n);
  std::vector<int32_t> order(n);
  for (int64_t i = 0; i < n; ++i) key[i] = descending_key(cands[i].score), order[i] = static_cast<int32_t>(i);
  radix_sort_pairs(key, order);
  const int64_t m = std::min(n, max_nms);
  // per-class greedy NMS over the capped list: ranks grouped by class, each group in rank order
  std::vector<uint32_t> label(m);
  std::vector<int32_t> by_label(m);
  for (int64_t r = 0; r < m; ++r) {
    label[r] = static_cast<uint32_t>(cands[order[r]].label), by_label[r] = static_cast<int32_t>(r);
  }
  radix_sort_pairs(label, by_label);
  SortedBoxes<float> sb;
  sb.reserve(m);
  for (int64_t j = 0; j < m; ++j) {
    const Candidate& c = cands[order[by_label[j]]];
    sb.push(c.x1, c.y1, c.x2, c.y2, by_label[j]);
  }
  std::vector<uint8_t> keep(m, 0);  // by rank
  for (int64_t begin = 0, end = 0; begin < m; begin = end) {
    while (end < m && label[end] == label[begin]) ++end;
    greedy_nms<float>(sb, begin, end, iou_thr, keep.data());
  }
  for (int64_t r = 0, taken = 0; r < m && taken < max_det; ++r) {
    if (!keep[r]) continue;
    const Candidate& c = cands[order[r]];
    out.boxes.insert(out.boxes.end(), {c.x1, c.y1, c.x2, c.y2});
    out.scores.push_back(c.score);
    out.labels.push_back(c.label);
    ++taken;
  }
  return n;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> yolo_postprocess_cpu(
    at::TensorList preds, at::TensorList anchors, at::ArrayRef<double> strides, double conf_threshold,
    double iou_threshold, int64_t max_det, int64_t max_nms, bool multi_label,
    std::optional<at::ArrayRef<double>> scale_xy, c10::string_view cls_act) {
  int64_t C = 0;
  std::vector<double> scale_of;
  checks::ClsAct act;
  const std::vector<at::Tensor> host_anchors = checks::yolo_postprocess_args(
      preds, anchors, strides, conf_threshold, iou_threshold, max_det, max_nms, scale_xy, cls_act, C, scale_of, act);
  const bool softmax = act == checks::ClsAct::kSoftmax;
  const int64_t S = static_cast<int64_t>(preds.size()), K = 5 + C, B = preds[0].size(0);
  std::vector<at::Tensor> keep_alive;  // contiguous copies backing the views
  std::vector<ScaleView> scales;
  int64_t rows = 0;  // rows (cells x anchors) of one image, over all scales
  for (int64_t s = 0; s < S; ++s) {
    const at::Tensor p = preds[s].contiguous();
    const at::Tensor& a = host_anchors[s];
    const int64_t A = a.size(0);
    keep_alive.push_back(p);
    scales.push_back({p.data_ptr(), p.scalar_type(), a.data_ptr<float>(), A, p.size(2), p.size(3),
                      static_cast<float>(strides[s]), yolo::xy_scale(scale_of[s])});
    rows += A * p.size(2) * p.size(3);
  }
  // Candidates of one image are numbered with int32 (as NMS numbers boxes).
  const int64_t most = multi_label ? rows * C : rows;
  TORCH_CHECK_VALUE(most <= checks::kMaxBoxes, "preds: up to ", most, " candidates per image (", rows, " rows",
                    multi_label ? " x classes" : "", "); at most ", checks::kMaxBoxes, " (2**31 - 1) are supported");
  const float conf = static_cast<float>(conf_threshold);  // scores are compared in fp32, as torch does
  const float iou_thr = float_threshold(iou_threshold);

  // Image 0 runs on this thread; its candidate count estimates the work of the others, and
  // they go to threads only when that is large (kParallelWork). A fork waits for every
  // thread, and a thread that a busy neighbour process has descheduled can take a scheduler
  // time slice (milliseconds) to arrive: more than a typical batch takes on one core.
  std::vector<Detections> per_image(B);
  auto run = [&](int64_t lo, int64_t hi) {
    for (int64_t b = lo; b < hi; ++b) {
      postprocess_image(scales, b, K, conf, iou_thr, max_det, max_nms, multi_label, softmax, per_image[b]);
    }
  };
  const int64_t first =
      B > 0 ? postprocess_image(scales, 0, K, conf, iou_thr, max_det, max_nms, multi_label, softmax, per_image[0])
            : 0;
  if (B > 1 && (B - 1) * (first + rows / 10) >= kParallelWork) {
    at::parallel_for(1, B, 1, run);
  } else {
    run(1, B);
  }

  int64_t total = 0;
  for (const Detections& d : per_image) total += static_cast<int64_t>(d.scores.size());
  const auto fopt = preds[0].options().dtype(at::kFloat);
  const auto lopt = preds[0].options().dtype(at::kLong);
  at::Tensor boxes = at::empty({total, 4}, fopt), scores = at::empty({total}, fopt);
  at::Tensor labels = at::empty({total}, lopt), image = at::empty({total}, lopt);
  float *bo = boxes.data_ptr<float>(), *so = scores.data_ptr<float>();
  int64_t *lo = labels.data_ptr<int64_t>(), *io = image.data_ptr<int64_t>();
  int64_t w = 0;
  for (int64_t b = 0; b < B; ++b) {
    const Detections& d = per_image[b];
    const int64_t k = static_cast<int64_t>(d.scores.size());
    std::copy(d.boxes.begin(), d.boxes.end(), bo + 4 * w);
    std::copy(d.scores.begin(), d.scores.end(), so + w);
    std::copy(d.labels.begin(), d.labels.end(), lo + w);
    std::fill(io + w, io + w + k, b);
    w += k;
  }
  return {boxes, scores, labels, image};
}

}  // namespace
}  // namespace cpu
}  // namespace zoo

TORCH_LIBRARY_IMPL(zoo, CPU, m) {
  m.impl("yolo_decode", &zoo::cpu::yolo_decode_cpu);
  m.impl("yolo_postprocess", &zoo::cpu::yolo_postprocess_cpu);
}
