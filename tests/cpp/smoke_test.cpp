// Smoke test of libzoo_ops from C++: every zoo op called through the dispatcher
// on CPU tensors, checked against values worked out by hand (see the comments
// next to each case). No Python involved. Exit status 0 iff every check passed.
//
// Built with ZOO_WITH_CUDA (CMake defines ZOO_SMOKE_CUDA here), it also checks that
// every op has a CUDA kernel registered and, where a CUDA device is present, runs
// the same cases on it.
//
// Floats are compared exactly where the arithmetic is exact in fp32 (sigmoid(0)
// = 0.5, exp(0) = 1, sigmoid(20) = 1, sums and products of small dyadic numbers),
// and to within 4 ulps where a transcendental of a rounded logit is involved
// (sigmoid(log 3) = 0.75, exp(log 2) = 2).
#include <ATen/ATen.h>
#include <ATen/core/dispatch/Dispatcher.h>

#include <cfloat>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <limits>
#include <optional>
#include <stdexcept>
#include <string>
#include <tuple>
#include <vector>

namespace {

int g_checks = 0;
int g_failures = 0;
c10::Device g_device = at::kCPU;  // where the inputs go and the outputs must be

void report(bool ok, const std::string& what, const std::string& detail = "") {
  ++g_checks;
  if (ok) {
    std::printf("  ok    %s\n", what.c_str());
  } else {
    ++g_failures;
    std::printf("  FAIL  %s%s%s\n", what.c_str(), detail.empty() ? "" : ": ", detail.c_str());
  }
}

std::string join(const std::vector<int64_t>& v) {
  std::string s = "[";
  for (size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + std::to_string(v[i]);
  return s + "]";
}

// Long vectors are abbreviated to their first 14 values.
std::string join(const std::vector<float>& v) {
  std::string s = "[";
  char buf[64];
  const size_t shown = v.size() > 16 ? 14 : v.size();
  for (size_t i = 0; i < shown; ++i) {
    std::snprintf(buf, sizeof buf, "%s%.9g", i ? ", " : "", static_cast<double>(v[i]));
    s += buf;
  }
  if (shown < v.size()) s += ", ... (" + std::to_string(v.size()) + " values)";
  return s + "]";
}

at::Tensor f32(const std::vector<float>& values, at::IntArrayRef shape) {
  return at::tensor(values, at::TensorOptions().dtype(at::kFloat)).reshape(shape).contiguous().to(g_device);
}

at::Tensor i64(const std::vector<int64_t>& values) {
  return at::tensor(values, at::TensorOptions().dtype(at::kLong)).to(g_device);
}

// `got` must be a 1-d int64 tensor on g_device equal to `want`.
void expect_indices(const std::string& what, const at::Tensor& got, const std::vector<int64_t>& want) {
  if (got.scalar_type() != at::kLong || got.dim() != 1 || got.device() != g_device) {
    report(false, what, "expected a 1-d int64 tensor on " + g_device.str() + ", got " + got.toString() + " " +
                            c10::str(got.sizes()) + " on " + got.device().str());
    return;
  }
  at::Tensor g = got.cpu().contiguous();
  std::vector<int64_t> v(g.data_ptr<int64_t>(), g.data_ptr<int64_t>() + g.numel());
  report(v == want, what + " == " + join(want), "got " + join(v));
}

// `got` must be an fp32 tensor on g_device of `shape` whose flattened values match `want`:
// exactly where ulps[i] == 0, else within ulps[i] * FLT_EPSILON * |want[i]|.
void expect_floats(const std::string& what, const at::Tensor& got, at::IntArrayRef shape,
                   const std::vector<float>& want, const std::vector<int>& ulps = {}) {
  if (got.scalar_type() != at::kFloat || got.device() != g_device || got.sizes() != shape) {
    report(false, what,
           "expected an fp32 tensor of shape " + c10::str(shape) + " on " + g_device.str() + ", got " +
               got.toString() + " " + c10::str(got.sizes()) + " on " + got.device().str());
    return;
  }
  at::Tensor g = got.cpu().contiguous();
  std::vector<float> v(g.data_ptr<float>(), g.data_ptr<float>() + g.numel());
  bool ok = v.size() == want.size();
  std::string detail = "got " + join(v);
  for (size_t i = 0; ok && i < v.size(); ++i) {
    const int u = ulps.empty() ? 0 : ulps[i];
    const float tol = static_cast<float>(u) * FLT_EPSILON * std::fabs(want[i]);
    ok = u == 0 ? v[i] == want[i] : std::fabs(v[i] - want[i]) <= tol;
    if (!ok) {
      char buf[160];
      std::snprintf(buf, sizeof buf, " (first mismatch at flat index %zu: got %.9g, want %.9g%s)", i,
                    static_cast<double>(v[i]), static_cast<double>(want[i]), u ? " within ulps" : " exactly");
      detail += buf;
    }
  }
  report(ok, what + " == " + join(want), detail);
}

// The op's handle, checked to have a schema (csrc/ops.cpp) and a kernel for g_device.
// Both are registered by static initialisers of libzoo_ops, so neither exists when the
// linker dropped the library (--as-needed: this program references none of its symbols).
c10::OperatorHandle op(const char* name) {
  if (!c10::Dispatcher::singleton().findSchema({name, ""})) {
    throw std::runtime_error(std::string("no schema for ") + name +
                             ": libzoo_ops is not loaded (link it with -Wl,--no-as-needed)");
  }
  auto handle = c10::Dispatcher::singleton().findSchemaOrThrow(name, "");
  const bool cuda = g_device.is_cuda();
  if (!handle.hasKernelForDispatchKey(cuda ? c10::DispatchKey::CUDA : c10::DispatchKey::CPU)) {
    throw std::runtime_error(std::string(name) + " has a schema but no " + (cuda ? "CUDA" : "CPU") +
                             " kernel (" + (cuda ? "csrc/cuda/*.cu" : "csrc/cpu/*.cpp") + ")");
  }
  return handle;
}

// Runs one group of checks; an exception counts as one failure and the next group still runs.
template <typename F>
void section(const char* title, F&& body) {
  std::printf("%s\n", title);
  try {
    body();
  } catch (const c10::Error& e) {
    report(false, std::string(title) + " threw", e.what_without_backtrace());
  } catch (const std::exception& e) {
    report(false, std::string(title) + " threw", e.what());
  }
}

// ---------------------------------------------------------------------------
// nms / batched_nms
//
//   i  box (xyxy)         area  score
//   0  [ 0,  0, 10,  8]     80   0.7
//   1  [20, 20, 30, 30]    100   0.9
//   2  [40,  0, 45,  5]     25   0.3
//   3  [ 0,  0, 10, 10]    100   0.8
//
// Only boxes 0 and 3 overlap: inter = 10*8 = 80, union = 80 + 100 - 80 = 100, IoU = 0.8.
// Descending score order: 1, 3, 0, 2.
//   thr 0.5: 0 (0.7) is suppressed by 3 (0.8) since 0.8 > 0.5  -> keep [1, 3, 2]
//   thr 0.9: 0.8 <= 0.9, nothing suppressed                    -> keep [1, 3, 0, 2]
// ---------------------------------------------------------------------------
void test_nms() {
  auto nms = op("zoo::nms").typed<at::Tensor(const at::Tensor&, const at::Tensor&, double)>();
  const at::Tensor boxes = f32({0, 0, 10, 8, 20, 20, 30, 30, 40, 0, 45, 5, 0, 0, 10, 10}, {4, 4});
  const at::Tensor scores = f32({0.7f, 0.9f, 0.3f, 0.8f}, {4});

  expect_indices("nms(thr=0.5), IoU(0,3)=0.8 suppresses box 0", nms.call(boxes, scores, 0.5), {1, 3, 2});
  expect_indices("nms(thr=0.9), nothing suppressed", nms.call(boxes, scores, 0.9), {1, 3, 0, 2});

  // Equal scores: the lower index comes first. Disjoint boxes, scores [0.5, 0.9, 0.5].
  const at::Tensor tied = f32({0.5f, 0.9f, 0.5f}, {3});
  expect_indices("nms ties keep the lower index first", nms.call(boxes.slice(0, 0, 3), tied, 0.5), {1, 0, 2});

  const auto opts = at::TensorOptions().dtype(at::kFloat).device(g_device);
  const at::Tensor none = nms.call(at::empty({0, 4}, opts), at::empty({0}, opts), 0.5);
  expect_indices("nms of no boxes is empty", none, {});
}

// Same boxes; batched_nms only suppresses within a category.
//   idxs [0, 1, 0, 1]: the overlapping pair 0/3 is in different classes -> [1, 3, 0, 2]
//   idxs [1, 0, 0, 1]: 0 and 3 share class 1, 3 (0.8) suppresses 0     -> [1, 3, 2]
void test_batched_nms() {
  auto batched = op("zoo::batched_nms")
                     .typed<at::Tensor(const at::Tensor&, const at::Tensor&, const at::Tensor&, double)>();
  const at::Tensor boxes = f32({0, 0, 10, 8, 20, 20, 30, 30, 40, 0, 45, 5, 0, 0, 10, 10}, {4, 4});
  const at::Tensor scores = f32({0.7f, 0.9f, 0.3f, 0.8f}, {4});

  expect_indices("batched_nms, overlapping pair in different classes",
                 batched.call(boxes, scores, i64({0, 1, 0, 1}), 0.5), {1, 3, 0, 2});
  expect_indices("batched_nms, overlapping pair in the same class",
                 batched.call(boxes, scores, i64({1, 0, 0, 1}), 0.5), {1, 3, 2});
}

// ---------------------------------------------------------------------------
// yolo_decode
// ---------------------------------------------------------------------------
void test_yolo_decode() {
  auto decode = op("zoo::yolo_decode").typed<at::Tensor(const at::Tensor&, const at::Tensor&, double, double, c10::string_view)>();
  const float l2 = std::log(2.0f), l3 = std::log(3.0f);

  // pred [1, 1*(5+1), 1, 2], anchor (10, 20), stride 8. Channel k of cell x:
  //          tx    ty     tw   th   obj  cls
  //   x=0:   0     0      l2   0    0    l3
  //   x=1:   l3   -l3     0    l2   l3   0
  // sigmoid(0) = 0.5, sigmoid(l3) = 1/(1 + 1/3) = 0.75, sigmoid(-l3) = 0.25,
  // exp(0) = 1, exp(l2) = 2:
  //   row 0: cx = (0.5 + 0) * 8 = 4,  cy = (0.5 + 0) * 8 = 4, w = 2 * 10 = 20, h = 1 * 20 = 20, obj 0.5,  cls 0.75
  //   row 1: cx = (0.75 + 1) * 8 = 14, cy = (0.25 + 0) * 8 = 2, w = 1 * 10 = 10, h = 2 * 20 = 40, obj 0.75, cls 0.5
  const at::Tensor pred = f32({0, l3,    // tx
                               0, -l3,   // ty
                               l2, 0,    // tw
                               0, l2,    // th
                               0, l3,    // obj
                               l3, 0},   // cls
                              {1, 6, 1, 2});
  const at::Tensor anchors = f32({10, 20}, {1, 2});
  expect_floats("yolo_decode 1x6x1x2: cx, cy, w, h, obj, cls", decode.call(pred, anchors, 8.0, 1.0, "sigmoid"), {1, 2, 6},
                {4, 4, 20, 20, 0.5f, 0.75f,  //
                 14, 2, 10, 40, 0.75f, 0.5f},
                {0, 0, 4, 0, 0, 4,  //
                 4, 4, 0, 4, 4, 0});

  // darknet's scale_x_y = 2 and softmax classes on the same map: cx = (sigmoid(tx) * 2 - 0.5 + x) * 8,
  //   row 0: (0.5 * 2 - 0.5 + 0) * 8 = 4,  cy = 4;  row 1: (0.75 * 2 - 0.5 + 1) * 8 = 16, cy = (0.25 * 2 - 0.5) * 8 = 0;
  // the one class's softmax is 1 whatever its logit; sizes and objectness as above.
  expect_floats("yolo_decode scale_xy 2, softmax classes", decode.call(pred, anchors, 8.0, 2.0, "softmax"), {1, 2, 6},
                {4, 4, 20, 20, 0.5f, 1.0f,  //
                 16, 0, 10, 40, 0.75f, 1.0f},
                {0, 0, 4, 0, 0, 0,  //
                 8, 8, 0, 4, 4, 0});

  // Layout: B=2, A=2, C=2, H=2, W=3, stride 16, anchors (10, 20), (30, 40); every logit 0
  // except objectness 20 in image 1 (sigmoid(20) rounds to 1 in fp32). Row a*H*W + y*W + x
  // of image b: (0.5 + x) * 16, (0.5 + y) * 16, anchor_w[a], anchor_h[a], obj, 0.5, 0.5.
  const int64_t B = 2, A = 2, C = 2, H = 2, W = 3;
  at::Tensor grid = at::zeros({B, A * (5 + C), H, W}, at::TensorOptions().dtype(at::kFloat).device(g_device));
  for (int64_t a = 0; a < A; ++a) grid[1][a * (5 + C) + 4].fill_(20.0);
  const float anc[2][2] = {{10, 20}, {30, 40}};
  std::vector<float> want;
  for (int64_t b = 0; b < B; ++b)
    for (int64_t a = 0; a < A; ++a)
      for (int64_t y = 0; y < H; ++y)
        for (int64_t x = 0; x < W; ++x) {
          const std::vector<float> row = {(0.5f + x) * 16, (0.5f + y) * 16, anc[a][0], anc[a][1],
                                          b == 0 ? 0.5f : 1.0f, 0.5f, 0.5f};
          want.insert(want.end(), row.begin(), row.end());
        }
  expect_floats("yolo_decode 2x14x2x3 row order a*H*W + y*W + x (all exact)",
                decode.call(grid, f32({10, 20, 30, 40}, {2, 2}), 16.0, 1.0, "sigmoid"), {B, A * H * W, 5 + C}, want);

  // The size logits are capped at 10 before exp: tw = 50 and th = +inf both give exp(10) * anchor.
  // exp(10) rounds to 22026.46484375 in fp32; times the anchors 16 and 32 (powers of 2) that is
  // exact. tx = +inf, ty = -inf: sigmoid 1 and 0, so cx = (1 + 0) * 8 = 8 and cy = (0 + 0) * 8 = 0.
  const float inf = std::numeric_limits<float>::infinity();
  const at::Tensor extreme = f32({inf, -inf, 50, inf, 0, 0}, {1, 6, 1, 1});
  expect_floats("yolo_decode caps tw = 50, th = inf at exp(10) * anchor", decode.call(extreme, f32({16, 32}, {1, 2}), 8.0, 1.0, "sigmoid"),
                {1, 1, 6}, {8, 0, 22026.46484375f * 16, 22026.46484375f * 32, 0.5f, 0.5f}, {0, 0, 4, 4, 0, 0});
}

// ---------------------------------------------------------------------------
// Bad input: a c10::ValueError (Python's ValueError) naming the argument, from every entry point.
// ---------------------------------------------------------------------------
template <typename F>
void expect_value_error(const std::string& what, const std::string& message_start, F&& call) {
  try {
    call();
    report(false, what, "no exception");
  } catch (const c10::ValueError& e) {
    const std::string msg = e.what_without_backtrace();
    report(msg.rfind(message_start, 0) == 0, what + ": ValueError \"" + message_start + "...\"", "got \"" + msg + "\"");
  }
}

void test_input_checks() {
  auto nms = op("zoo::nms").typed<at::Tensor(const at::Tensor&, const at::Tensor&, double)>();
  auto decode = op("zoo::yolo_decode").typed<at::Tensor(const at::Tensor&, const at::Tensor&, double, double, c10::string_view)>();
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const at::Tensor scores = f32({0.5f, 0.9f}, {2});
  expect_value_error("nms with a NaN coordinate", "boxes: contains NaN or infinite coordinates",
                     [&] { nms.call(f32({0, 0, 1, nan, 0, 0, 2, 2}, {2, 4}), scores, 0.5); });
  expect_value_error("nms with an inverted box", "boxes: expected x1 <= x2 and y1 <= y2",
                     [&] { nms.call(f32({1, 0, 0, 1, 0, 0, 2, 2}, {2, 4}), scores, 0.5); });
  expect_value_error("nms with iou_threshold NaN", "iou_threshold: expected a value in [0, 1], got nan",
                     [&] { nms.call(f32({0, 0, 1, 1, 0, 0, 2, 2}, {2, 4}), scores, std::nan("")); });
  // 1 anchor x (5 + 0) channels: no class at all
  expect_value_error("yolo_decode with zero classes", "pred: channel count 5 is not A*(5+C) for A=1 anchors",
                     [&] { decode.call(at::zeros({1, 5, 2, 2}, scores.options()), f32({10, 20}, {1, 2}), 8.0, 1.0, "sigmoid"); });
  expect_value_error("yolo_decode with a negative anchor", "anchors: anchor sizes must be finite and > 0",
                     [&] { decode.call(at::zeros({1, 6, 2, 2}, scores.options()), f32({-10, 20}, {1, 2}), 8.0, 1.0, "sigmoid"); });
}

// ---------------------------------------------------------------------------
// yolo_postprocess
//
// Scale 0: A=1, C=2, H=1, W=3, stride 10, anchor (20, 20); tx = ty = tw = th = 0, so cell x
// decodes to cx = (0.5 + x) * 10, cy = 5, w = h = 20:
//   box0 = [-5, -5, 15, 15], box1 = [5, -5, 25, 15], box2 = [15, -5, 35, 15]
// IoU(box0, box1) = IoU(box1, box2) = 200 / 600 = 1/3 (> 0.3), IoU(box0, box2) = 0.
// Logits (obj, cls0, cls1) -> sigmoid (20 -> 1, 0 -> 0.5, -20 -> ~2e-9) -> score_c = obj * cls_c:
//   image 0: cell0 (20, 20, 0)   -> scores (1, 0.5)
//            cell1 (0, 20, 20)   -> scores (0.5, 0.5)  (first arg-max: class 0)
//            cell2 (20, -20, 0)  -> scores (~0, 0.5)
//   image 1: as image 0 but cell0 obj -20 -> cell0 scores ~0
// Scale 1: A=1, C=2, H=W=1, stride 20, anchor (40, 40), (obj, cls0, cls1) = (20, 0, -20):
//   box3 = [-10, -10, 30, 30], score (0.5, ~0); IoU(box0, box3) = 400 / 1600 = 0.25.
// ---------------------------------------------------------------------------
void test_yolo_postprocess() {
  using Out = std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor>;
  auto post = op("zoo::yolo_postprocess")
                  .typed<Out(at::TensorList, at::TensorList, at::ArrayRef<double>, double, double, int64_t,
                             int64_t, bool, std::optional<at::ArrayRef<double>>, c10::string_view)>();

  // pred[b, k, 0, x] for k = tx, ty, tw, th, obj, cls0, cls1
  auto scale0 = [](bool with_image1) {
    std::vector<float> v = {0,  0,  0,   // tx
                            0,  0,  0,   // ty
                            0,  0,  0,   // tw
                            0,  0,  0,   // th
                            20, 0,  20,  // obj
                            20, 20, -20, // cls0
                            0,  20, 0};  // cls1
    if (with_image1) {
      std::vector<float> img1 = v;
      img1[4 * 3 + 0] = -20;  // image 1, cell 0: objectness -20
      v.insert(v.end(), img1.begin(), img1.end());
    }
    return f32(v, {with_image1 ? 2 : 1, 7, 1, 3});
  };
  const at::Tensor anchors0 = f32({20, 20}, {1, 2});
  const at::Tensor one_image = scale0(false);
  const std::vector<double> stride0 = {10.0};

  auto check = [](const std::string& what, const Out& out, int64_t k, const std::vector<float>& boxes,
                  const std::vector<float>& scores, const std::vector<int64_t>& labels,
                  const std::vector<int64_t>& image) {
    expect_floats(what + ": boxes", std::get<0>(out), {k, 4}, boxes);
    expect_floats(what + ": scores", std::get<1>(out), {k}, scores);
    expect_indices(what + ": labels", std::get<2>(out), labels);
    expect_indices(what + ": image_index", std::get<3>(out), image);
  };
  const std::vector<float> box0 = {-5, -5, 15, 15}, box1 = {5, -5, 25, 15}, box2 = {15, -5, 35, 15},
                           box3 = {-10, -10, 30, 30};
  auto cat = [](std::initializer_list<std::vector<float>> parts) {
    std::vector<float> v;
    for (const auto& p : parts) v.insert(v.end(), p.begin(), p.end());
    return v;
  };

  // Single label, conf 0.1: candidates cell0 (1, c0), cell1 (0.5, c0), cell2 (0.5, c1).
  // NMS (0.3) per class: cell1 is suppressed by cell0 (IoU 1/3).
  check("postprocess single-label", post.call({one_image}, {anchors0}, stride0, 0.1, 0.3, 100, 1000, false, std::nullopt, "sigmoid"), 2,
        cat({box0, box2}), {1.0f, 0.5f}, {0, 1}, {0, 0});

  // Multi label: candidates in (row, class) order: (0,c0) 1, (0,c1) .5, (1,c0) .5, (1,c1) .5, (2,c1) .5.
  // Class 0: (1,c0) suppressed by (0,c0). Class 1: (1,c1) suppressed by (0,c1); (2,c1) kept (IoU 0).
  check("postprocess multi-label", post.call({one_image}, {anchors0}, stride0, 0.1, 0.3, 100, 1000, true, std::nullopt, "sigmoid"), 3,
        cat({box0, box0, box2}), {1.0f, 0.5f, 0.5f}, {0, 1, 1}, {0, 0, 0});

  // max_det = 2 keeps the first two of those.
  check("postprocess multi-label max_det=2",
        post.call({one_image}, {anchors0}, stride0, 0.1, 0.3, 2, 1000, true, std::nullopt, "sigmoid"), 2, cat({box0, box0}),
        {1.0f, 0.5f}, {0, 1}, {0, 0});

  // max_nms = 2: only cell0 and cell1 reach NMS, and cell1 is suppressed.
  check("postprocess single-label max_nms=2",
        post.call({one_image}, {anchors0}, stride0, 0.1, 0.3, 100, 2, false, std::nullopt, "sigmoid"), 1, box0, {1.0f}, {0}, {0});

  // conf 0.5 is strict: the 0.5 scores are not candidates.
  check("postprocess conf_threshold=0.5 is strict",
        post.call({one_image}, {anchors0}, stride0, 0.5, 0.3, 100, 1000, false, std::nullopt, "sigmoid"), 1, box0, {1.0f}, {0}, {0});

  // Two images: image 1 has candidates cell1 (0.5, c0) and cell2 (0.5, c1), different classes,
  // both kept, tie in score -> lower row first.
  check("postprocess two images", post.call({scale0(true)}, {anchors0}, stride0, 0.1, 0.3, 100, 1000, false, std::nullopt, "sigmoid"), 4,
        cat({box0, box2, box1, box2}), {1.0f, 0.5f, 0.5f, 0.5f}, {0, 1, 0, 1}, {0, 0, 1, 1});

  // Two scales: rows of scale 1 follow those of scale 0. Candidates: cell0 (1, c0), cell1 (.5, c0),
  // cell2 (.5, c1), box3 (.5, c0). Class 0: cell1 suppressed by cell0; box3 kept (IoU 0.25).
  // Ties in score keep candidate order: cell2 before box3.
  const at::Tensor scale1 = f32({0, 0, 0, 0, 20, 0, -20}, {1, 7, 1, 1});
  check("postprocess two scales",
        post.call({one_image, scale1}, {anchors0, f32({40, 40}, {1, 2})}, {10.0, 20.0}, 0.1, 0.3, 100, 1000,
                  false, std::nullopt, "sigmoid"),
        3, cat({box0, box2, box3}), {1.0f, 0.5f, 0.5f}, {0, 1, 0}, {0, 0, 0});
}

void run_all() {
  section("nms", test_nms);
  section("batched_nms", test_batched_nms);
  section("yolo_decode", test_yolo_decode);
  section("yolo_postprocess", test_yolo_postprocess);
  section("input checks", test_input_checks);
}

}  // namespace

int main() {
  std::printf("zoo ops smoke test: CPU, through the dispatcher\n");
  run_all();
#ifdef ZOO_SMOKE_CUDA
  section("CUDA kernels registered", [] {
    for (const char* name : {"zoo::nms", "zoo::batched_nms", "zoo::yolo_decode", "zoo::yolo_postprocess"}) {
      auto handle = c10::Dispatcher::singleton().findSchemaOrThrow(name, "");
      report(handle.hasKernelForDispatchKey(c10::DispatchKey::CUDA), std::string(name) + " has a CUDA kernel");
    }
  });
  if (at::hasCUDA()) {
    g_device = c10::Device(at::kCUDA, 0);
    std::printf("zoo ops smoke test: CUDA device 0, through the dispatcher\n");
    run_all();
  } else {
    std::printf("no CUDA device: the CUDA kernels were not run\n");
  }
#endif
  std::printf("%d checks, %d failed\n", g_checks, g_failures);
  return g_failures == 0 ? 0 : 1;
}
