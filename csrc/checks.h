// Argument checks of the zoo ops, shared by the CPU and CUDA entry points (host code only).
//
// Every check raises c10::ValueError (Python: ValueError) through TORCH_CHECK_VALUE, and
// words its message as zoo/ops/__init__.py does for the same case ("<argument>: ..."), so
// that the raw torch.ops.zoo.* ops reject what the Python wrappers reject, with the same
// text. Shapes print as Python tuples, dtypes as torch.<name>, floats as Python's repr.
#pragma once

#include <ATen/ATen.h>
#include <c10/core/ScalarType.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <string>
#include <vector>

namespace zoo {
namespace checks {

// (2, 3), (4,), () -- tuple(t.shape) in Python
inline std::string shape_str(at::IntArrayRef sizes) {
  std::string s = "(";
  for (size_t i = 0; i < sizes.size(); ++i) s += (i ? ", " : "") + std::to_string(sizes[i]);
  return s + (sizes.size() == 1 ? ",)" : ")");
}

// torch.float32, torch.int64, ... -- str(t.dtype) in Python
inline std::string dtype_str(at::ScalarType t) { return "torch." + std::string(c10::getDtypeNames(t).first); }

// Python's repr of a float: the shortest digits that read back the same value, "2.0" for
// integral values, exponent form below 1e-4 and from 1e16 on ("1e-05", "1e+16").
inline std::string repr(double v) {
  if (std::isnan(v)) return "nan";
  if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
  char buf[64];
  int prec = 1;
  for (; prec < 17; ++prec) {
    std::snprintf(buf, sizeof buf, "%.*e", prec - 1, v);
    if (std::strtod(buf, nullptr) == v) break;
  }
  std::snprintf(buf, sizeof buf, "%.*e", prec - 1, v);
  const std::string sci(buf);
  const size_t e_at = sci.find('e');
  const int exp10 = std::atoi(sci.c_str() + e_at + 1);
  const bool negative = sci[0] == '-';
  std::string digits;
  for (size_t i = negative ? 1 : 0; i < e_at; ++i) {
    if (sci[i] != '.') digits += sci[i];
  }
  std::string out = negative ? "-" : "";
  if (exp10 < -4 || exp10 >= 16) {
    out += digits.substr(0, 1);
    if (digits.size() > 1) out += "." + digits.substr(1);
    std::snprintf(buf, sizeof buf, "e%c%02d", exp10 < 0 ? '-' : '+', std::abs(exp10));
    return out + buf;
  }
  if (exp10 < 0) return out + "0." + std::string(-exp10 - 1, '0') + digits;
  const size_t int_len = static_cast<size_t>(exp10) + 1;
  if (digits.size() <= int_len) return out + digits + std::string(int_len - digits.size(), '0') + ".0";
  return out + digits.substr(0, int_len) + "." + digits.substr(int_len);
}

// The dtypes the kernels read in place (and compute in fp32, or fp64 for fp64 input).
inline bool kernel_dtype(at::ScalarType t) {
  return t == at::kFloat || t == at::kDouble || t == at::kHalf || t == at::kBFloat16;
}

inline void dim(const at::Tensor& t, const std::string& name, int64_t ndim) {
  TORCH_CHECK_VALUE(t.dim() == ndim, name, ": expected a ", ndim, "-D tensor, got shape ", shape_str(t.sizes()));
}

// Any floating dtype (for tensors the kernels convert: anchors, SE weights).
inline void floating(const at::Tensor& t, const std::string& name) {
  TORCH_CHECK_VALUE(at::isFloatingType(t.scalar_type()), name, ": expected a floating-point tensor, got ",
                    dtype_str(t.scalar_type()));
}

// fp32 / fp64 / fp16 / bf16 (for tensors the kernels read as they are).
inline void kernel_floating(const at::Tensor& t, const std::string& name) {
  floating(t, name);
  TORCH_CHECK_VALUE(kernel_dtype(t.scalar_type()), name, ": expected fp32, fp64, fp16 or bf16, got ",
                    dtype_str(t.scalar_type()));
}

inline void same_device(const at::Tensor& ref, const std::string& ref_name, const at::Tensor& t,
                        const std::string& name) {
  TORCH_CHECK_VALUE(t.device() == ref.device(), name, ": on ", t.device(), ", but ", ref_name, " is on ",
                    ref.device(), "; put them on one device");
}

inline void unit_interval(double v, const std::string& name) {
  TORCH_CHECK_VALUE(v >= 0.0 && v <= 1.0, name, ": expected a value in [0, 1], got ", repr(v));  // NaN fails
}

inline void positive_number(double v, const std::string& name) {
  TORCH_CHECK_VALUE(std::isfinite(v) && v > 0.0, name, ": expected a positive number, got ", repr(v));
}

inline void positive_int(int64_t v, const std::string& name) {
  TORCH_CHECK_VALUE(v >= 1, name, ": expected a positive int, got ", v);
}

// ------------------------------------------------------------------ nms / batched_nms

// The CPU kernel numbers boxes with int32 (sorted positions, category ids).
constexpr int64_t kMaxBoxes = INT32_MAX;

// boxes [N, 4] and scores [N]: everything that needs no pass over the data (and so runs
// before anything reads it: a huge expanded input fails here, without a copy). With
// allow_flat_empty (batched_nms), boxes of shape (0,) also mean "no boxes", as
// torchvision.ops.batched_nms takes them. Returns N.
inline int64_t nms_boxes_scores(const at::Tensor& boxes, const at::Tensor& scores, bool allow_flat_empty) {
  const bool flat_empty = allow_flat_empty && boxes.dim() == 1 && boxes.numel() == 0;
  if (!flat_empty) dim(boxes, "boxes", 2);
  kernel_floating(boxes, "boxes");
  TORCH_CHECK_VALUE(flat_empty || boxes.size(1) == 4, "boxes: expected shape [N, 4] (x1, y1, x2, y2), got ",
                    shape_str(boxes.sizes()));
  const int64_t n = flat_empty ? 0 : boxes.size(0);
  dim(scores, "scores", 1);
  kernel_floating(scores, "scores");
  TORCH_CHECK_VALUE(scores.size(0) == n, "scores: has ", scores.size(0), " entries but boxes has ", n, " rows");
  same_device(boxes, "boxes", scores, "scores");
  TORCH_CHECK_VALUE(n <= kMaxBoxes, "boxes: ", n, " boxes; NMS takes at most ", kMaxBoxes, " (2**31 - 1)");
  return n;
}

// idxs [N], integer (an empty idxs may have any real dtype, as torch.tensor([]) is float).
inline void nms_idxs(const at::Tensor& boxes, const at::Tensor& idxs, int64_t n) {
  dim(idxs, "idxs", 1);
  const at::ScalarType t = idxs.scalar_type();
  TORCH_CHECK_VALUE(at::isIntegralType(t, /*includeBool=*/false) || (idxs.numel() == 0 && at::isFloatingType(t)),
                    "idxs: expected an integer tensor, got ", dtype_str(t));
  TORCH_CHECK_VALUE(idxs.size(0) == n, "idxs: has ", idxs.size(0), " entries but boxes has ", n, " rows");
  same_device(boxes, "boxes", idxs, "idxs");
}

// The value checks, in the order zoo.ops raises them. Kernels fill the flags while they
// read the data anyway, then call raise_if_any().
struct NmsValueFlags {
  bool bad_boxes = false;  // a NaN or infinite coordinate
  bool bad_scores = false;  // a NaN or infinite score
  bool inverted = false;  // x2 < x1 or y2 < y1
  void raise_if_any() const {
    TORCH_CHECK_VALUE(!bad_boxes, "boxes: contains NaN or infinite coordinates");
    TORCH_CHECK_VALUE(!bad_scores, "scores: contains NaN or infinite values");
    TORCH_CHECK_VALUE(!inverted,
                      "boxes: expected x1 <= x2 and y1 <= y2 (xyxy format); some boxes are inverted");
  }
};

// ------------------------------------------------------------------ yolo_decode / yolo_postprocess

// pred [B, A*(5+C), H, W] with C >= 1 for A anchors; returns C.
inline int64_t yolo_pred(const at::Tensor& pred, const std::string& name, int64_t A) {
  dim(pred, name, 4);
  kernel_floating(pred, name);
  const int64_t ch = pred.size(1);
  TORCH_CHECK_VALUE(ch % A == 0 && ch / A >= 6, name, ": channel count ", ch, " is not A*(5+C) for A=", A,
                    " anchors and C>=1 classes (shape ", shape_str(pred.sizes()), ")");
  return ch / A - 5;
}

// anchors [A, 2] (w, h in pixels), floating, on pred's device (their values: yolo_anchor_values).
inline void yolo_anchors(const at::Tensor& anchors, const std::string& name, const at::Tensor& pred,
                         const std::string& pred_name) {
  floating(anchors, name);
  TORCH_CHECK_VALUE(anchors.size(1) == 2 && anchors.size(0) >= 1, name,
                    ": expected shape [A, 2] (w, h in pixels), got ", shape_str(anchors.sizes()));
  same_device(pred, pred_name, anchors, name);
}

// The anchors' values, finite and > 0 in fp32: checked after every other argument (as
// zoo.ops does), so that a call with two faults gets one message from either path. Returns
// them as a contiguous fp32 tensor on the CPU (a copy from the device for CUDA anchors: A x 2
// values).
inline at::Tensor yolo_anchor_values(const at::Tensor& anchors, const std::string& name) {
  const at::Tensor host = anchors.to(at::kCPU, at::kFloat).contiguous();
  const float* a = host.data_ptr<float>();
  bool ok = true;
  for (int64_t i = 0; i < host.numel(); ++i) ok = ok && std::isfinite(a[i]) && a[i] > 0.f;
  TORCH_CHECK_VALUE(ok, name, ": anchor sizes must be finite and > 0");
  return host;
}

// darknet's scale_x_y of one scale: finite and > 0 (1 = YOLOv3's decode).
inline void yolo_scale_xy(double v, const std::string& name) { positive_number(v, name); }

// The class activation: "sigmoid" (YOLOv3 / v4) or "softmax" (YOLOv2's region layer).
enum class ClsAct { kSigmoid, kSoftmax };

inline ClsAct yolo_cls_act(c10::string_view act) {
  if (act == "sigmoid") return ClsAct::kSigmoid;
  if (act == "softmax") return ClsAct::kSoftmax;
  TORCH_CHECK_VALUE(false, "cls_act: expected one of ('sigmoid', 'softmax'), got '", std::string(act), "'");
}

// yolo_decode's arguments, in zoo.ops.yolo_decode's order; returns the fp32 host anchors
// (and the parsed class activation in `act`).
inline at::Tensor yolo_decode_args(const at::Tensor& pred, const at::Tensor& anchors, double stride, double scale_xy,
                                   c10::string_view cls_act, ClsAct& act) {
  dim(anchors, "anchors", 2);
  yolo_pred(pred, "pred", std::max<int64_t>(1, anchors.size(0)));
  yolo_anchors(anchors, "anchors", pred, "pred");
  positive_number(stride, "stride");
  yolo_scale_xy(scale_xy, "scale_xy");
  act = yolo_cls_act(cls_act);
  return yolo_anchor_values(anchors, "anchors");
}

// yolo_postprocess's arguments, in zoo.ops.yolo_postprocess's order. Returns the fp32 host
// anchors of each scale; `classes` gets C, `scales` each scale's scale_x_y (1.0 for all when
// scale_xy is None), `act` the class activation.
inline std::vector<at::Tensor> yolo_postprocess_args(at::TensorList preds, at::TensorList anchors,
                                                     at::ArrayRef<double> strides, double conf_threshold,
                                                     double iou_threshold, int64_t max_det, int64_t max_nms,
                                                     const std::optional<at::ArrayRef<double>>& scale_xy,
                                                     c10::string_view cls_act, int64_t& classes,
                                                     std::vector<double>& scales, ClsAct& act) {
  const size_t S = preds.size();
  TORCH_CHECK_VALUE(S > 0, "preds: expected a non-empty list of [B, A*(5+C), H, W] tensors, one per scale");
  TORCH_CHECK_VALUE(anchors.size() == S, "anchors: got ", anchors.size(), " anchor sets for ", S,
                    " scales in preds");
  TORCH_CHECK_VALUE(strides.size() == S, "strides: got ", strides.size(), " strides for ", S, " scales in preds");
  TORCH_CHECK_VALUE(!scale_xy.has_value() || scale_xy->size() == S, "scale_xy: got ",
                    scale_xy.has_value() ? scale_xy->size() : 0, " values for ", S, " scales in preds");
  std::vector<at::Tensor> host;
  int64_t batch = 0;
  for (size_t s = 0; s < S; ++s) {
    const std::string p_name = "preds[" + std::to_string(s) + "]", a_name = "anchors[" + std::to_string(s) + "]";
    dim(anchors[s], a_name, 2);
    const int64_t c = yolo_pred(preds[s], p_name, std::max<int64_t>(1, anchors[s].size(0)));
    if (s == 0) {
      classes = c, batch = preds[0].size(0);
    } else {
      TORCH_CHECK_VALUE(c == classes && preds[s].size(0) == batch, p_name, ": batch ", preds[s].size(0), " and ",
                        c, " classes differ from preds[0]'s ", batch, " and ", classes);
    }
    same_device(preds[0], "preds[0]", preds[s], p_name);
    yolo_anchors(anchors[s], a_name, preds[s], p_name);
    positive_number(strides[s], "strides[" + std::to_string(s) + "]");
    if (scale_xy.has_value()) yolo_scale_xy((*scale_xy)[s], "scale_xy[" + std::to_string(s) + "]");
  }
  unit_interval(conf_threshold, "conf_threshold");
  unit_interval(iou_threshold, "iou_threshold");
  positive_int(max_det, "max_det");
  positive_int(max_nms, "max_nms");
  act = yolo_cls_act(cls_act);
  scales.assign(S, 1.0);
  if (scale_xy.has_value()) scales.assign(scale_xy->begin(), scale_xy->end());
  for (size_t s = 0; s < S; ++s) host.push_back(yolo_anchor_values(anchors[s], "anchors[" + std::to_string(s) + "]"));
  return host;
}

}  // namespace checks
}  // namespace zoo
