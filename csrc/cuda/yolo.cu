// CUDA kernels: yolo_decode and the fused yolo_postprocess.
//
// yolo_decode: one tiled kernel. A block takes 32 grid cells x 32 channels of one
// (image, anchor): it reads the logits with lanes along the cells (coalesced, the map is
// [B, A*(5+C), H, W]), decodes them into shared memory, and writes them with lanes along
// the channels (each output row holds the 5+C values of one cell). With cls_act "softmax"
// the first row of threads first takes each cell's softmax maximum and sum over all C
// class logits (yolo_decode.h's softmax_stats, the CPU kernels' order), into shared memory.
//
// yolo_postprocess never materialises the decoded [B, N, 5+C] tensor:
//   1. count kernel: per cell, read the objectness logit; only when obj > conf (a score is
//      obj * p <= obj, for sigmoid and softmax alike) read the class logits and count the
//      candidates of the cell.
//   2. an inclusive scan of the counts (enumeration order: image, scale, anchor, y, x)
//      gives every candidate a slot, so the candidate list is compact and deterministic.
//   3. write kernel: cells with candidates decode their box and write (box, score, label,
//      image, sort key) to their slots, classes in ascending order.
//   4. one stable sort of the keys (image ascending, score descending) orders every image's
//      candidates as the reference's stable sort does.
//   5. the NMS core of nms.cu runs one segment per image (its first max_nms candidates,
//      categories = labels) and stops each image after max_det kept boxes; the kept
//      positions are already in output order.
// Two host syncs, both sizing buffers: the number of candidates, and the kept counts.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <algorithm>
#include <cstdint>
#include <optional>
#include <tuple>
#include <vector>

#include "../checks.h"
#include "../common.h"
#include "../yolo_decode.h"
#include "nms_cuda.h"

namespace zoo {
namespace cuda {

namespace {

constexpr int kThreads = 256;       // threads of the 1-D kernels
constexpr int kTileP = 32;          // decode tile: grid cells ...
constexpr int kTileK = 32;          // ... x channels
constexpr int kTileRows = 8;        // decode block: kTileP x kTileRows threads
constexpr int64_t kMaxBlocks = 1 << 20;  // 1-D kernels use grid-stride loops beyond this

using yolo::sigmoid;

template <typename scalar_t>
__device__ __forceinline__ float load_f(const scalar_t* p) {
  return static_cast<float>(*p);
}

// Channel k of a decoded cell at grid (gx, gy): centre and size in pixels (yolo_decode.h),
// then sigmoid of the objectness, and sigmoid or softmax (the cell's max m and sum) of the
// class logits.
template <bool kSoftmax>
__device__ __forceinline__ float decode_channel(int64_t k, float v, float gx, float gy, float aw, float ah,
                                                float stride, yolo::XyScale xy, float m, float sum) {
  if (k == 0) return yolo::decode_xy(v, gx, stride, xy);
  if (k == 1) return yolo::decode_xy(v, gy, stride, xy);
  if (k == 2) return yolo::decode_wh(v, aw);
  if (k == 3) return yolo::decode_wh(v, ah);
  if (kSoftmax && k >= 5) return yolo::softmax_prob(v, m, sum);
  return sigmoid(v);
}

// grid (B*A*p_tiles, ceil(K/kTileK)), block (kTileP, kTileRows).
template <typename scalar_t, bool kSoftmax>
__global__ void __launch_bounds__(kTileP* kTileRows)
    yolo_decode_kernel(const scalar_t* __restrict__ pred, const float* __restrict__ anchors, int64_t A,
                       int64_t K, int64_t W, int64_t HW, int64_t p_tiles, float stride, yolo::XyScale xy,
                       scalar_t* __restrict__ out) {
  __shared__ float tile[kTileK][kTileP + 1];  // +1: conflict-free column reads
  __shared__ float cell_max[kTileP], cell_sum[kTileP];  // softmax only
  const int64_t ba = blockIdx.x / p_tiles;    // b * A + a
  const int64_t p0 = (blockIdx.x % p_tiles) * kTileP;
  const int64_t k0 = static_cast<int64_t>(blockIdx.y) * kTileK;
  const int64_t a = ba % A;
  const float aw = anchors[2 * a];
  const float ah = anchors[2 * a + 1];

  const int64_t p = p0 + threadIdx.x;
  const scalar_t* src = pred + ba * K * HW + p;  // channel k at src[k * HW] (when p < HW)
  if (kSoftmax) {
    // Each cell's softmax max and sum over all C classes (lanes along cells: coalesced).
    if (threadIdx.y == 0 && p < HW) {
      float m, sum;
      yolo::softmax_stats(src + 5 * HW, HW, K - 5, m, sum);
      cell_max[threadIdx.x] = m;
      cell_sum[threadIdx.x] = sum;
    }
    __syncthreads();
  }

  // Read + decode: lanes along grid cells, one channel per warp.
  if (p < HW) {
    const float gx = static_cast<float>(p % W);
    const float gy = static_cast<float>(p / W);
    const float m = kSoftmax ? cell_max[threadIdx.x] : 0.f;
    const float sum = kSoftmax ? cell_sum[threadIdx.x] : 1.f;
    for (int kk = threadIdx.y; kk < kTileK && k0 + kk < K; kk += kTileRows) {
      const int64_t k = k0 + kk;
      tile[kk][threadIdx.x] = decode_channel<kSoftmax>(k, load_f(src + k * HW), gx, gy, aw, ah, stride, xy, m, sum);
    }
  }
  __syncthreads();

  // Write: lanes along channels; output row ba*HW + p holds the K values of cell p.
  const int64_t k = k0 + threadIdx.x;
  if (k < K) {
    scalar_t* dst = out + (ba * HW + p0) * K + k;
    for (int r = threadIdx.y; r < kTileP && p0 + r < HW; r += kTileRows) {
      dst[r * K] = static_cast<scalar_t>(tile[threadIdx.x][r]);
    }
  }
}

// The class activation of a cell's logits at cls[c * HW]: the softmax's max and sum (or
// nothing, for sigmoid), then each class's probability.
template <bool kSoftmax>
struct ClassProbs {
  float m = 0.f, sum = 1.f;
  template <typename scalar_t>
  __device__ __forceinline__ ClassProbs(const scalar_t* cls, int64_t HW, int64_t C) {
    if (kSoftmax) yolo::softmax_stats(cls, HW, C, m, sum);
  }
  __device__ __forceinline__ float operator()(float logit) const {
    return kSoftmax ? yolo::softmax_prob(logit, m, sum) : sigmoid(logit);
  }
};

// Single-label score of a cell: max over c of obj * p_c, label = the first arg-max.
// Returns false when some score is NaN (torch.max then gives NaN, which passes no threshold).
template <typename scalar_t, bool kSoftmax>
__device__ __forceinline__ bool best_class(const scalar_t* cls, int64_t HW, int64_t C, float obj,
                                           const ClassProbs<kSoftmax>& prob, float& best, int64_t& label) {
  bool finite = true;
  best = 0.f;
  label = 0;
  for (int64_t c = 0; c < C; ++c) {
    const float s = obj * prob(load_f(cls + c * HW));
    if (c == 0 || s > best) {
      best = s;
      label = c;
    }
    finite = finite && !isnan(s);
  }
  return finite;
}

// Step 1: counts[b * N + row] = candidates of the cell (row = offset + a*HW + p).
// One scale; idx enumerates (b, a, p) with p fastest, so objectness reads coalesce.
template <typename scalar_t, bool kMulti, bool kSoftmax>
__global__ void __launch_bounds__(kThreads)
    yolo_count_kernel(const scalar_t* __restrict__ pred, int64_t cells, int64_t A, int64_t HW, int64_t C,
                      int64_t rows_per_image, int64_t row_offset, float conf, int32_t* __restrict__ counts) {
  const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; idx < cells; idx += step) {
    const int64_t p = idx % HW;
    const int64_t ba = idx / HW;
    const int64_t b = ba / A;
    const scalar_t* cell = pred + ba * (5 + C) * HW + p;  // channel k at cell[k * HW]
    int32_t n = 0;
    const float obj = sigmoid(load_f(cell + 4 * HW));
    if (obj > conf) {  // otherwise no class can pass: obj * cls <= obj
      const scalar_t* cls = cell + 5 * HW;
      const ClassProbs<kSoftmax> prob(cls, HW, C);
      if (kMulti) {
        for (int64_t c = 0; c < C; ++c) {
          if (obj * prob(load_f(cls + c * HW)) > conf) ++n;
        }
      } else {
        float best;
        int64_t label;
        if (best_class(cls, HW, C, obj, prob, best, label) && best > conf) n = 1;
      }
    }
    counts[b * rows_per_image + row_offset + (idx - b * A * HW)] = n;
  }
}

// Step 3: cells with candidates write them to slots ends[row] - count .. ends[row] - 1.
template <typename scalar_t, bool kMulti, bool kSoftmax>
__global__ void __launch_bounds__(kThreads)
    yolo_write_kernel(const scalar_t* __restrict__ pred, const float* __restrict__ anchors, int64_t cells,
                      int64_t A, int64_t W, int64_t HW, int64_t C, int64_t rows_per_image, int64_t row_offset,
                      float stride, yolo::XyScale xy, float conf, const int32_t* __restrict__ counts,
                      const int64_t* __restrict__ ends, float4* __restrict__ out_box,
                      float* __restrict__ out_score, int64_t* __restrict__ out_label,
                      int64_t* __restrict__ out_image, int64_t* __restrict__ out_key) {
  const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; idx < cells; idx += step) {
    const int64_t p = idx % HW;
    const int64_t ba = idx / HW;
    const int64_t b = ba / A;
    const int64_t a = ba - b * A;
    const int64_t row = b * rows_per_image + row_offset + a * HW + p;
    const int32_t n = counts[row];
    if (n == 0) continue;
    int64_t slot = ends[row] - n;

    // The box as the reference gets it: decode in fp32 (whatever pred's dtype), xywh -> xyxy.
    const scalar_t* cell = pred + ba * (5 + C) * HW + p;
    const float gx = static_cast<float>(p % W);
    const float gy = static_cast<float>(p / W);
    float xyxy[4];
    yolo::cxcywh_to_xyxy(yolo::decode_xy(load_f(cell), gx, stride, xy),
                         yolo::decode_xy(load_f(cell + HW), gy, stride, xy),
                         yolo::decode_wh(load_f(cell + 2 * HW), anchors[2 * a]),
                         yolo::decode_wh(load_f(cell + 3 * HW), anchors[2 * a + 1]), xyxy);
    const float4 box = make_float4(xyxy[0], xyxy[1], xyxy[2], xyxy[3]);
    const float obj = sigmoid(load_f(cell + 4 * HW));
    const scalar_t* cls = cell + 5 * HW;
    const ClassProbs<kSoftmax> prob(cls, HW, C);

    // Sort key: image ascending, then score descending. Scores are > conf >= 0, and the
    // bit patterns of non-negative floats order like their values.
    auto emit = [&](int64_t at, float score, int64_t label) {
      out_box[at] = box;
      out_score[at] = score;
      out_label[at] = label;
      out_image[at] = b;
      out_key[at] = (b << 32) | static_cast<int64_t>(0xffffffffu - __float_as_uint(score));
    };
    if (kMulti) {
      int32_t left = n;  // the count kernel's decisions, recomputed identically
      for (int64_t c = 0; c < C && left > 0; ++c) {
        const float s = obj * prob(load_f(cls + c * HW));
        if (s > conf) {
          emit(slot++, s, c);
          --left;
        }
      }
    } else {
      float best;
      int64_t label;
      best_class(cls, HW, C, obj, prob, best, label);
      emit(slot, best, label);
    }
  }
}

int grid_1d(int64_t n) { return static_cast<int>(std::min(ceil_div(n, kThreads), kMaxBlocks)); }

at::Tensor yolo_decode_cuda(const at::Tensor& pred_in, const at::Tensor& anchors_in, double stride, double scale_xy,
                            c10::string_view cls_act) {
  checks::ClsAct act;
  checks::yolo_decode_args(pred_in, anchors_in, stride, scale_xy, cls_act, act);  // reads the A x 2 anchors on the host
  c10::cuda::CUDAGuard guard(pred_in.device());

  const at::Tensor pred = pred_in.contiguous();
  const at::Tensor anchors = anchors_in.to(at::kFloat).contiguous();
  const int64_t B = pred.size(0), CH = pred.size(1), H = pred.size(2), W = pred.size(3);
  const int64_t A = anchors.size(0);
  const int64_t K = CH / A, HW = H * W;

  const int64_t p_tiles = ceil_div(HW, kTileP);
  const int64_t k_tiles = ceil_div(K, kTileK);
  TORCH_CHECK_VALUE(B * A * p_tiles <= INT32_MAX && k_tiles <= kMaxGridY, "pred: shape ",
                    checks::shape_str(pred.sizes()), " is too large for the CUDA decode kernel's grid");
  at::Tensor out = at::empty({B, A * HW, K}, pred.options());
  if (out.numel() == 0) return out;
  const dim3 grid(static_cast<unsigned>(B * A * p_tiles), static_cast<unsigned>(k_tiles));
  const dim3 block(kTileP, kTileRows);
  cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  const yolo::XyScale xy = yolo::xy_scale(scale_xy);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, pred.scalar_type(), "yolo_decode_cuda", [&] {
    const auto kernel = act == checks::ClsAct::kSoftmax ? yolo_decode_kernel<scalar_t, true>
                                                        : yolo_decode_kernel<scalar_t, false>;
    kernel<<<grid, block, 0, stream>>>(pred.data_ptr<scalar_t>(), anchors.data_ptr<float>(), A, K, W, HW, p_tiles,
                                       static_cast<float>(stride), xy, out.data_ptr<scalar_t>());
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return out;
}

struct Scale {
  at::Tensor pred;     // contiguous [B, A*(5+C), H, W]
  at::Tensor anchors;  // contiguous fp32 [A, 2]
  float stride;
  yolo::XyScale xy;    // scale_x_y and its offset
  int64_t A, W, HW;
  int64_t row_offset;  // first row of this scale within an image's rows
};

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> yolo_postprocess_cuda(
    at::TensorList preds, at::TensorList anchors, at::ArrayRef<double> strides, double conf_threshold,
    double iou_threshold, int64_t max_det, int64_t max_nms, bool multi_label,
    std::optional<at::ArrayRef<double>> scale_xy, c10::string_view cls_act) {
  int64_t C = 0;
  std::vector<double> scale_of;
  checks::ClsAct act;
  checks::yolo_postprocess_args(preds, anchors, strides, conf_threshold, iou_threshold, max_det, max_nms, scale_xy,
                                cls_act, C, scale_of, act);
  const bool softmax = act == checks::ClsAct::kSoftmax;
  const at::Tensor& first = preds[0];
  c10::cuda::CUDAGuard guard(first.device());

  // Scales and the row layout of one image: rows in (scale, anchor, y, x) order.
  const int64_t B = first.size(0);
  int64_t N = 0;
  std::vector<Scale> scales;
  for (size_t s = 0; s < preds.size(); ++s) {
    const at::Tensor& p = preds[s];
    const int64_t A = anchors[s].size(0);
    Scale sc{p.contiguous(), anchors[s].to(at::kFloat).contiguous(), static_cast<float>(strides[s]),
             yolo::xy_scale(scale_of[s]), A, p.size(3), p.size(2) * p.size(3), N};
    N += A * sc.HW;
    scales.push_back(std::move(sc));
  }

  const auto float_opts = first.options().dtype(at::kFloat);
  const auto long_opts = first.options().dtype(at::kLong);
  auto empty_result = [&] {
    return std::make_tuple(at::empty({0, 4}, float_opts), at::empty({0}, float_opts), at::empty({0}, long_opts),
                           at::empty({0}, long_opts));
  };
  if (B == 0 || N == 0) return empty_result();
  const float conf = static_cast<float>(conf_threshold);  // scores are compared in fp32, as torch does
  cudaStream_t stream = at::cuda::getCurrentCUDAStream();

  // 1. Candidates per cell.
  at::Tensor counts = at::empty({B * N}, first.options().dtype(at::kInt));
  for (const Scale& sc : scales) {
    const int64_t cells = B * sc.A * sc.HW;
    if (cells == 0) continue;
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, sc.pred.scalar_type(), "yolo_count_cuda", [&] {
      const auto kernel = multi_label ? (softmax ? yolo_count_kernel<scalar_t, true, true>
                                                 : yolo_count_kernel<scalar_t, true, false>)
                                      : (softmax ? yolo_count_kernel<scalar_t, false, true>
                                                 : yolo_count_kernel<scalar_t, false, false>);
      kernel<<<grid_1d(cells), kThreads, 0, stream>>>(sc.pred.data_ptr<scalar_t>(), cells, sc.A, sc.HW, C, N,
                                                      sc.row_offset, conf, counts.data_ptr<int32_t>());
    });
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }

  // 2. Inclusive scan over the enumeration order; each image's last entry is its end.
  const at::Tensor ends = at::cumsum(counts, 0, at::kLong);
  const at::Tensor image_ends = ends.view({B, N}).select(1, N - 1).contiguous();
  const at::Tensor image_ends_host = image_ends.to(at::kCPU);  // host sync: sizes the candidate buffers
  const int64_t* ie = image_ends_host.data_ptr<int64_t>();
  const int64_t M = ie[B - 1];
  if (M == 0) return empty_result();

  // 3. Write the candidates, compactly, in enumeration order.
  at::Tensor cand_box = at::empty({M, 4}, float_opts);
  at::Tensor cand_score = at::empty({M}, float_opts);
  at::Tensor cand_label = at::empty({M}, long_opts);
  at::Tensor cand_image = at::empty({M}, long_opts);
  at::Tensor cand_key = at::empty({M}, long_opts);
  for (const Scale& sc : scales) {
    const int64_t cells = B * sc.A * sc.HW;
    if (cells == 0) continue;
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, sc.pred.scalar_type(), "yolo_write_cuda", [&] {
      const auto kernel = multi_label ? (softmax ? yolo_write_kernel<scalar_t, true, true>
                                                 : yolo_write_kernel<scalar_t, true, false>)
                                      : (softmax ? yolo_write_kernel<scalar_t, false, true>
                                                 : yolo_write_kernel<scalar_t, false, false>);
      kernel<<<grid_1d(cells), kThreads, 0, stream>>>(
          sc.pred.data_ptr<scalar_t>(), sc.anchors.data_ptr<float>(), cells, sc.A, sc.W, sc.HW, C, N,
          sc.row_offset, sc.stride, sc.xy, conf, counts.data_ptr<int32_t>(), ends.data_ptr<int64_t>(),
          reinterpret_cast<float4*>(cand_box.data_ptr<float>()), cand_score.data_ptr<float>(),
          cand_label.data_ptr<int64_t>(), cand_image.data_ptr<int64_t>(), cand_key.data_ptr<int64_t>());
    });
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }

  // 4. Per image, candidates by descending score, ties in enumeration order.
  const at::Tensor perm = std::get<1>(at::sort(cand_key, std::optional<bool>(true), /*dim=*/0, /*descending=*/false));
  const at::Tensor sorted_box = cand_box.index_select(0, perm);
  const at::Tensor sorted_label = cand_label.index_select(0, perm);

  // 5. Class-aware NMS per image over its first max_nms candidates; at most max_det kept.
  int64_t max_size = 0;
  for (int64_t b = 0; b < B; ++b) {
    const int64_t begin = b > 0 ? ie[b - 1] : 0;
    max_size = std::max(max_size, std::min(ie[b] - begin, max_nms));
  }
  check_mask_fits(max_size, "max_nms", first.device());
  NmsSegments segs;
  segs.ends = image_ends.data_ptr<int64_t>();
  segs.n = M;
  segs.cap = max_nms;
  at::Tensor pos = at::empty({M}, long_opts);
  at::Tensor kept = at::empty({B}, long_opts);
  nms_segments(sorted_box, sorted_label, segs, B, max_size, iou_threshold, max_det, pos, kept);
  const at::Tensor kept_host = kept.to(at::kCPU);  // host sync: sizes the output
  const int64_t* kh = kept_host.data_ptr<int64_t>();

  std::vector<at::Tensor> pieces;
  for (int64_t b = 0; b < B; ++b) {
    if (kh[b] > 0) pieces.push_back(pos.narrow(0, b > 0 ? ie[b - 1] : 0, kh[b]));
  }
  if (pieces.empty()) return empty_result();
  const at::Tensor idx = perm.index_select(0, at::cat(pieces));
  return std::make_tuple(cand_box.index_select(0, idx), cand_score.index_select(0, idx),
                         cand_label.index_select(0, idx), cand_image.index_select(0, idx));
}

}  // namespace
}  // namespace cuda
}  // namespace zoo

TORCH_LIBRARY_IMPL(zoo, CUDA, m) {
  m.impl("yolo_decode", &zoo::cuda::yolo_decode_cuda);
  m.impl("yolo_postprocess", &zoo::cuda::yolo_postprocess_cuda);
}
