// CUDA kernels: nms and batched_nms (and the NMS core that yolo_postprocess reuses).
//
// Boxes are first put in visiting order (stable descending sort of the scores, in fp64 for
// fp64 scores, else fp32), in the compute type: fp64 for fp64 boxes, fp32 otherwise.
// Then two kernels:
//   1. nms_mask_kernel: the boxes are cut into blocks of 64; block pair (row r, col c),
//      c >= r, gets 64 threads, one per row box i, and each writes the 64-bit word
//      mask[i][c] whose bit k says "i suppresses box c*64 + k" (IoU > threshold, same
//      category, and c*64 + k > i).
//   2. nms_gather_kernel: one thread block per segment walks the sorted boxes in chunks
//      of 64 with a `removed` bitset (shared memory, or global memory for huge inputs).
//      Warp 0 settles a chunk sequentially: the lowest box not yet removed is kept and
//      its diagonal word mask[i][chunk] removes the later boxes of the chunk it
//      suppresses, and so on (one warp shuffle per kept box). Then every thread ORs the
//      mask rows of the chunk's kept boxes into the later words of `removed`.
//      Kept sorted positions and their count go to device memory.
// The mask never leaves the device; the only host sync reads the kept count, which sizes
// the output, together with the value checks (NaN / inf / inverted boxes, NaN / inf
// scores), which ATen reductions compute on the device meanwhile. batched_nms is the same with the category test in the mask kernel:
// greedy NMS over the global order with suppression only inside a category is exactly
// per-category greedy NMS, and its kept boxes are already in descending-score order.
#include <ATen/ATen.h>
#include <ATen/cuda/CUDAContext.h>
#include <ATen/Dispatch.h>
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <optional>
#include <type_traits>

#include "../checks.h"
#include "../common.h"
#include "nms_cuda.h"

namespace zoo {
namespace cuda {

namespace {

using u64 = unsigned long long;  // one mask word (the type the warp intrinsics take)

constexpr int kWordBits = 64;          // boxes per mask word / per chunk
constexpr int kGatherThreads = 256;    // threads of the gather block
// `removed` lives in dynamic shared memory while it fits, with the block's static shared
// memory, in the 48 KiB available without opt-in: up to 6000 words (384,000 boxes).
constexpr int64_t kMaxSharedWords = 6000;
// Segments are processed in groups whose masks together take at most this many words
// (256 MiB); a single segment larger than that gets its own group.
constexpr int64_t kMaskBudgetWords = int64_t(1) << 25;

__device__ __forceinline__ void segment_range(const NmsSegments& s, int64_t seg, int64_t& begin,
                                              int64_t& size) {
  if (s.ends == nullptr) {
    begin = 0;
    size = s.n;
  } else {
    begin = seg > 0 ? s.ends[seg - 1] : 0;
    size = s.ends[seg] - begin;
  }
  size = size < s.cap ? size : s.cap;
}

// A box in visiting order: float (16 bytes) or double (32 bytes), read with one vector load.
template <typename T>
struct alignas(4 * sizeof(T)) Box {
  T x1, y1, x2, y2;
};

// Area (x2 - x1) * (y2 - y1) in T, as the reference. This file builds with --fmad=false, so
// nvcc fuses nothing into an FMA and every operation rounds as torch's does.
template <typename T>
__device__ __forceinline__ T box_area(const Box<T>& b) {
  return (b.x2 - b.x1) * (b.y2 - b.y1);
}

// IoU(a, b) > thr, computed as inter / (area_a + area_b - inter) in T in the reference's
// order of operations (0/0 is NaN, which compares false).
template <typename T>
__device__ __forceinline__ bool iou_above(const Box<T>& a, T area_a, const Box<T>& b, T area_b, T thr) {
  const T dw = (a.x2 < b.x2 ? a.x2 : b.x2) - (a.x1 > b.x1 ? a.x1 : b.x1);
  const T dh = (a.y2 < b.y2 ? a.y2 : b.y2) - (a.y1 > b.y1 ? a.y1 : b.y1);
  const T w = dw < T(0) ? T(0) : dw;  // clamp(min=0)
  const T h = dh < T(0) ? T(0) : dh;
  const T inter = w * h;
  return inter / ((area_a + area_b) - inter) > thr;
}

// grid (col block, row block, segment of the group), kWordBits threads.
// Segment z's mask occupies rows [z * rows_per_seg, (z + 1) * rows_per_seg) of a
// [*, words_per_row] array; row i, word c covers the segment's boxes c*64 .. c*64+63.
template <typename T>
__global__ void __launch_bounds__(kWordBits)
    nms_mask_kernel(const Box<T>* __restrict__ boxes, const int64_t* __restrict__ cats, NmsSegments segs,
                    int64_t seg_first, int64_t rows_per_seg, int64_t words_per_row, T thr,
                    u64* __restrict__ mask) {
  int64_t begin, size;
  segment_range(segs, seg_first + blockIdx.z, begin, size);
  const int64_t row_block = blockIdx.y;
  const int64_t col_block = blockIdx.x;
  // A box is only suppressed by earlier boxes: the lower triangle of blocks is never
  // read. Blocks past this segment's size (it may be smaller than the largest) exit too.
  if (col_block < row_block || col_block * kWordBits >= size) return;
  const int64_t rows_left = size - row_block * kWordBits;
  const int64_t cols_left = size - col_block * kWordBits;
  const int rows = rows_left < kWordBits ? static_cast<int>(rows_left) : kWordBits;
  const int cols = cols_left < kWordBits ? static_cast<int>(cols_left) : kWordBits;

  __shared__ Box<T> col_box[kWordBits];
  __shared__ T col_area[kWordBits];
  __shared__ int64_t col_cat[kWordBits];
  const int t = threadIdx.x;
  if (t < cols) {
    const int64_t j = begin + col_block * kWordBits + t;
    const Box<T> b = boxes[j];
    col_box[t] = b;
    col_area[t] = box_area(b);
    col_cat[t] = cats != nullptr ? cats[j] : 0;
  }
  __syncthreads();
  if (t >= rows) return;

  const int64_t i = begin + row_block * kWordBits + t;
  const Box<T> box = boxes[i];
  const T area = box_area(box);
  const int64_t cat = cats != nullptr ? cats[i] : 0;
  u64 bits = 0;
  // On the diagonal block only the later boxes (k > t) count.
  for (int k = row_block == col_block ? t + 1 : 0; k < cols; ++k) {
    if (col_cat[k] == cat && iou_above(box, area, col_box[k], col_area[k], thr)) bits |= u64(1) << k;
  }
  mask[(blockIdx.z * rows_per_seg + row_block * kWordBits + t) * words_per_row + col_block] = bits;
}

// One block of kGatherThreads per segment of the group (see the file comment).
// `removed_global` is null when the bitset fits in dynamic shared memory.
__global__ void __launch_bounds__(kGatherThreads)
    nms_gather_kernel(const u64* __restrict__ mask, NmsSegments segs, int64_t seg_first,
                      int64_t rows_per_seg, int64_t words_per_row, int64_t limit,
                      u64* __restrict__ removed_global, int64_t* __restrict__ out_pos,
                      int64_t* __restrict__ out_count) {
  extern __shared__ u64 removed_shared[];
  __shared__ int64_t kept_rows[kWordBits];  // mask rows of the current chunk's kept boxes
  __shared__ int kept_n;

  const int64_t seg = seg_first + blockIdx.x;
  int64_t begin, size;
  segment_range(segs, seg, begin, size);
  const int64_t words = (size + kWordBits - 1) / kWordBits;
  const u64* seg_mask = mask + blockIdx.x * rows_per_seg * words_per_row;
  u64* removed = removed_global != nullptr ? removed_global + blockIdx.x * words_per_row : removed_shared;

  for (int64_t w = threadIdx.x; w < words; w += blockDim.x) removed[w] = 0;

  // Warp 0 holds the diagonal words of the chunk being settled: lane l those of rows
  // c*64 + l and c*64 + 32 + l. The next chunk's are loaded while the block runs phase B.
  const int lane = threadIdx.x & 31;
  u64 diag0 = 0, diag1 = 0;
  auto load_diag = [&](int64_t c) {
    const int64_t row0 = c * kWordBits + lane;
    diag0 = c < words && row0 < size ? seg_mask[row0 * words_per_row + c] : 0;
    diag1 = c < words && row0 + 32 < size ? seg_mask[(row0 + 32) * words_per_row + c] : 0;
  };
  if (threadIdx.x < 32) load_diag(0);
  __syncthreads();

  int64_t count = 0;  // kept so far; every thread holds the same value
  for (int64_t c = 0; c < words && count < limit; ++c) {
    // Phase A, warp 0: settle chunk c. `todo` (the same in every lane) holds the chunk's
    // boxes not removed by earlier chunks nor by a kept box of this chunk so far; its
    // lowest box is kept, and its diagonal word (shuffled from the lane holding it)
    // removes the later boxes of the chunk it suppresses.
    if (threadIdx.x < 32) {
      const int64_t valid_n = size - c * kWordBits;
      const u64 valid = valid_n >= kWordBits ? ~u64(0) : (u64(1) << valid_n) - 1;
      u64 todo = ~removed[c] & valid;
      u64 keep = 0;
      int64_t room = limit - count;
      while (todo != 0 && room > 0) {
        const int k = __ffsll(static_cast<long long>(todo)) - 1;
        const u64 suppressed = __shfl_sync(0xffffffffu, k < 32 ? diag0 : diag1, k & 31);
        keep |= u64(1) << k;
        todo &= ~(suppressed | (u64(1) << k));
        --room;
      }
      // Kept boxes are written in order: a box's slot is the number of kept boxes before it.
      const int64_t row0 = c * kWordBits + lane;
      if ((keep >> lane) & 1) {
        const int rank = __popcll(keep & ((u64(1) << lane) - 1));
        out_pos[begin + count + rank] = begin + row0;
        kept_rows[rank] = row0;
      }
      if ((keep >> (lane + 32)) & 1) {
        const int rank = __popcll(keep & ((u64(1) << (lane + 32)) - 1));
        out_pos[begin + count + rank] = begin + row0 + 32;
        kept_rows[rank] = row0 + 32;
      }
      if (lane == 0) kept_n = __popcll(keep);
      load_diag(c + 1);
    }
    __syncthreads();
    const int n = kept_n;
    count += n;
    // Phase B, all threads: removed[w] |= mask[kept row][w] for every later word w
    // (the loads of one word are independent, so the unrolled loop overlaps them).
    if (n > 0 && count < limit) {
      for (int64_t w = c + 1 + threadIdx.x; w < words; w += blockDim.x) {
        u64 acc = removed[w];
#pragma unroll 8
        for (int j = 0; j < n; ++j) acc |= seg_mask[kept_rows[j] * words_per_row + w];
        removed[w] = acc;
      }
    }
    // Orders phase B's writes before the next chunk reads `removed`, and this
    // iteration's reads of kept_n / kept_rows before warp 0 rewrites them.
    __syncthreads();
  }
  if (threadIdx.x == 0) out_count[seg] = count;
}

// nms / batched_nms: check, sort, one segment of NMS, read the count (and the value checks'
// flags), map back to indices. `n` is the number of boxes (boxes may be an empty (0,) tensor).
at::Tensor nms_common(const at::Tensor& boxes, const at::Tensor& scores, const at::Tensor& idxs, int64_t n,
                      double iou_threshold) {
  c10::cuda::CUDAGuard guard(boxes.device());
  const auto long_opts = boxes.options().dtype(at::kLong);
  if (n == 0) return at::empty({0}, long_opts);
  check_mask_fits(n, "boxes", boxes.device());  // before anything is sorted or allocated

  // Visiting order: stable descending sort of the scores (ties: lower index first).
  const at::ScalarType score_type = scores.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  const at::Tensor order =
      std::get<1>(at::sort(scores.to(score_type), std::optional<bool>(true), /*dim=*/0, /*descending=*/true));
  const at::ScalarType box_type = boxes.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  const at::Tensor sorted_boxes = boxes.to(box_type).index_select(0, order).contiguous();
  const at::Tensor sorted_cats = idxs.defined() ? idxs.to(at::kLong).index_select(0, order) : at::Tensor();

  // status = (kept count, NaN/inf boxes, NaN/inf scores, inverted boxes): one copy to the host
  at::Tensor status = at::empty({4}, long_opts);
  at::Tensor pos = at::empty({n}, long_opts);
  at::Tensor count = status.narrow(0, 0, 1);
  NmsSegments segs;
  segs.n = n;
  nms_segments(sorted_boxes, sorted_cats, segs, /*num_segments=*/1, /*max_size=*/n, iou_threshold,
               /*limit=*/n, pos, count);
  const at::Tensor x1 = sorted_boxes.select(1, 0), y1 = sorted_boxes.select(1, 1);
  const at::Tensor x2 = sorted_boxes.select(1, 2), y2 = sorted_boxes.select(1, 3);
  status.narrow(0, 1, 3).copy_(at::stack({at::logical_not(at::isfinite(sorted_boxes)).any(),
                                          at::logical_not(at::isfinite(scores)).any(),
                                          at::logical_or(x2 < x1, y2 < y1).any()}));
  const at::Tensor host = status.to(at::kCPU);  // the one host sync: the output's size needs it
  const int64_t* h = host.data_ptr<int64_t>();
  checks::NmsValueFlags flags;
  flags.bad_boxes = h[1] != 0, flags.bad_scores = h[2] != 0, flags.inverted = h[3] != 0;
  flags.raise_if_any();
  return order.index_select(0, pos.narrow(0, 0, h[0]));
}

at::Tensor nms_cuda(const at::Tensor& boxes, const at::Tensor& scores, double iou_threshold) {
  const int64_t n = checks::nms_boxes_scores(boxes, scores, /*allow_flat_empty=*/false);
  checks::unit_interval(iou_threshold, "iou_threshold");
  return nms_common(boxes, scores, at::Tensor(), n, iou_threshold);
}

at::Tensor batched_nms_cuda(const at::Tensor& boxes, const at::Tensor& scores, const at::Tensor& idxs,
                            double iou_threshold) {
  const int64_t n = checks::nms_boxes_scores(boxes, scores, /*allow_flat_empty=*/true);
  checks::nms_idxs(boxes, idxs, n);
  checks::unit_interval(iou_threshold, "iou_threshold");
  return nms_common(boxes, scores, idxs, n, iou_threshold);
}

}  // namespace

void check_mask_fits(int64_t n, const char* name, c10::Device device) {
  const int64_t words = ceil_div(n, kWordBits);
  const int64_t bytes = n * words * static_cast<int64_t>(sizeof(u64));
  // Masks up to the group budget (256 MiB) are the everyday case: no driver query for those.
  if (words <= kMaxGridY && bytes <= kMaskBudgetWords * static_cast<int64_t>(sizeof(u64))) return;
  c10::cuda::CUDAGuard guard(device);
  size_t free_bytes = 0, total_bytes = 0;
  C10_CUDA_CHECK(cudaMemGetInfo(&free_bytes, &total_bytes));
  const auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(device.index());
  const auto aggregate = static_cast<size_t>(c10::CachingAllocator::StatType::AGGREGATE);
  const int64_t cached = std::max<int64_t>(
      0, stats.reserved_bytes[aggregate].current - stats.allocated_bytes[aggregate].current);
  const int64_t available = static_cast<int64_t>(free_bytes) + cached;
  TORCH_CHECK_VALUE(words <= kMaxGridY && bytes <= available, name, ": ", n,
                    " boxes in one NMS problem need a suppression mask of ", n, " x ", words, " 64-bit words (",
                    bytes, " bytes); the CUDA kernel takes at most ", kMaxGridY * kWordBits, " boxes (", kMaxGridY,
                    " words per row), and ", device, " has ", available, " bytes available (", free_bytes,
                    " free + ", cached, " cached by torch)");
}

void nms_segments(const at::Tensor& boxes, const at::Tensor& cats, const NmsSegments& segments,
                  int64_t num_segments, int64_t max_size, double iou_threshold, int64_t limit,
                  at::Tensor& out_pos, at::Tensor& out_count) {
  TORCH_CHECK((boxes.scalar_type() == at::kFloat || boxes.scalar_type() == at::kDouble) && boxes.is_contiguous() &&
                  boxes.dim() == 2 && boxes.size(1) == 4,
              "nms_segments: boxes must be contiguous fp32 or fp64 [M, 4]");
  TORCH_CHECK(!cats.defined() || (cats.scalar_type() == at::kLong && cats.is_contiguous()),
              "nms_segments: cats must be contiguous int64");
  TORCH_CHECK(out_pos.scalar_type() == at::kLong && out_count.scalar_type() == at::kLong,
              "nms_segments: outputs must be int64");
  if (num_segments <= 0) return;
  if (max_size <= 0 || limit <= 0) {
    out_count.zero_();
    return;
  }
  const int64_t words = ceil_div(max_size, kWordBits);
  TORCH_CHECK(words <= kMaxGridY, "nms_segments: ", max_size, " boxes in one segment; call check_mask_fits first");
  const int64_t seg_words = max_size * words;
  const int64_t group = std::min({num_segments, std::max<int64_t>(1, kMaskBudgetWords / seg_words), kMaxGridY});

  const auto long_opts = boxes.options().dtype(at::kLong);
  at::Tensor mask = at::empty({group * seg_words}, long_opts);
  const bool shared_removed = words <= kMaxSharedWords;
  at::Tensor removed = shared_removed ? at::Tensor() : at::empty({group * words}, long_opts);
  const size_t shared_bytes = shared_removed ? static_cast<size_t>(words) * sizeof(u64) : 0;

  const int64_t* cat_ptr = cats.defined() ? cats.data_ptr<int64_t>() : nullptr;
  auto* mask_ptr = reinterpret_cast<u64*>(mask.data_ptr<int64_t>());
  auto* removed_ptr = shared_removed ? nullptr : reinterpret_cast<u64*>(removed.data_ptr<int64_t>());
  cudaStream_t stream = at::cuda::getCurrentCUDAStream();

  // Groups run one after another on the stream, so they can share one mask buffer.
  AT_DISPATCH_FLOATING_TYPES(boxes.scalar_type(), "zoo_nms_mask", [&] {
    // fp32 IoUs are compared with the largest float <= the threshold (exactly as in double);
    // fp64 IoUs with the threshold itself
    const scalar_t thr = std::is_same_v<scalar_t, float> ? static_cast<scalar_t>(float_threshold(iou_threshold))
                                                          : static_cast<scalar_t>(iou_threshold);
    const auto* box_ptr = reinterpret_cast<const Box<scalar_t>*>(boxes.data_ptr<scalar_t>());
    for (int64_t first = 0; first < num_segments; first += group) {
      const int64_t count = std::min(group, num_segments - first);
      const dim3 mask_grid(static_cast<unsigned>(words), static_cast<unsigned>(words), static_cast<unsigned>(count));
      nms_mask_kernel<scalar_t><<<mask_grid, kWordBits, 0, stream>>>(box_ptr, cat_ptr, segments, first, max_size,
                                                                     words, thr, mask_ptr);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
      nms_gather_kernel<<<static_cast<unsigned>(count), kGatherThreads, shared_bytes, stream>>>(
          mask_ptr, segments, first, max_size, words, limit, removed_ptr, out_pos.data_ptr<int64_t>(),
          out_count.data_ptr<int64_t>());
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    }
  });
}

}  // namespace cuda
}  // namespace zoo

TORCH_LIBRARY_IMPL(zoo, CUDA, m) {
  m.impl("nms", &zoo::cuda::nms_cuda);
  m.impl("batched_nms", &zoo::cuda::batched_nms_cuda);
}
