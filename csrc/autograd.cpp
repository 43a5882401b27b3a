// Autograd for zoo::squeeze_excite, registered in C++ for every device: the forward
// saves its inputs, the backward calls zoo::squeeze_excite_backward (the fused backward
// kernel of whichever device the tensors are on) for the gradients autograd needs only
// (its output_mask from needs_input_grad).
//
// The op runs once per SE block, often on small tensors, so its per-call overhead counts:
// a Python autograd formula (torch.library.register_autograd) added about 13 us to every
// forward with grad and as much to every backward on the 2-core CPU; this C++ Function
// adds about 1 us. (torch.compile traces it like any C++ autograd kernel: the op and its
// backward have fake kernels, registered from Python.)
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/csrc/autograd/custom_function.h>
#include <torch/library.h>

#include <array>
#include <string>

namespace zoo {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

at::Tensor call_forward(const at::Tensor& x, const at::Tensor& w1, const at::Tensor& b1, const at::Tensor& w2,
                        const at::Tensor& b2, c10::string_view gate, c10::string_view act) {
  static const auto op = c10::Dispatcher::singleton()
                             .findSchemaOrThrow("zoo::squeeze_excite", "")
                             .typed<at::Tensor(const at::Tensor&, const at::Tensor&, const at::Tensor&,
                                               const at::Tensor&, const at::Tensor&, c10::string_view,
                                               c10::string_view)>();
  return op.call(x, w1, b1, w2, b2, gate, act);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> call_backward(
    const at::Tensor& dy, const at::Tensor& x, const at::Tensor& w1, const at::Tensor& b1, const at::Tensor& w2,
    const at::Tensor& b2, c10::string_view gate, std::array<bool, 5> output_mask, c10::string_view act) {
  static const auto op =
      c10::Dispatcher::singleton()
          .findSchemaOrThrow("zoo::squeeze_excite_backward", "")
          .typed<std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor>(
              const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&,
              const at::Tensor&, c10::string_view, std::array<bool, 5>, c10::string_view)>();
  return op.call(dy, x, w1, b1, w2, b2, gate, output_mask, act);
}

class SqueezeExcite : public torch::autograd::Function<SqueezeExcite> {
 public:
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& w1, const at::Tensor& b1,
                            const at::Tensor& w2, const at::Tensor& b2, const std::string& gate,
                            const std::string& act) {
    at::AutoDispatchBelowADInplaceOrView guard;
    ctx->save_for_backward({x, w1, b1, w2, b2});
    ctx->saved_data["gate"] = gate;
    ctx->saved_data["act"] = act;
    return call_forward(x, w1, b1, w2, b2, gate, act);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const variable_list saved = ctx->get_saved_variables();
    const at::Tensor& dy = grads[0];
    if (!dy.defined()) {
      return {at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
    }
    const std::string gate = ctx->saved_data["gate"].toStringRef();
    const std::string act = ctx->saved_data["act"].toStringRef();
    // only what autograd needs: no dx pass for a frozen input, no weight reductions for frozen weights
    const std::array<bool, 5> mask = {ctx->needs_input_grad(0), ctx->needs_input_grad(1), ctx->needs_input_grad(2),
                                      ctx->needs_input_grad(3), ctx->needs_input_grad(4)};
    auto [dx, dw1, db1, dw2, db2] =
        call_backward(dy, saved[0], saved[1], saved[2], saved[3], saved[4], gate, mask, act);
    return {dx, dw1, db1, dw2, db2, at::Tensor(), at::Tensor()};  // none for gate, act
  }
};

at::Tensor squeeze_excite_autograd(const at::Tensor& x, const at::Tensor& w1, const at::Tensor& b1,
                                   const at::Tensor& w2, const at::Tensor& b2, c10::string_view gate,
                                   c10::string_view act) {
  return SqueezeExcite::apply(x, w1, b1, w2, b2, std::string(gate), std::string(act));
}

}  // namespace
}  // namespace zoo

TORCH_LIBRARY_IMPL(zoo, Autograd, m) {
  m.impl("squeeze_excite", &zoo::squeeze_excite_autograd);
}
