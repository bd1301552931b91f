// Each area binds itself into the one private module moofa._core.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>

#include "moofa/predictor.hpp"
#include "moofa/space.hpp"

namespace moofa::bind {

void memory(pybind11::module_& m);
void predictor(pybind11::module_& m);
void search(pybind11::module_& m);
void latency(pybind11::module_& m);
void optimum(pybind11::module_& m);

// Per-generation hook: every 50 ms at most (taking the GIL each generation would stall
// behind other Python threads), check for Ctrl-C and report progress.
class GenerationHook {
 public:
  explicit GenerationHook(pybind11::object progress) : progress_(std::move(progress)) {}

  std::function<bool(int)> callback() {
    return [this](int generation) {
      const auto now = std::chrono::steady_clock::now();
      if (generation != 0 && now - last_ < std::chrono::milliseconds(50)) return true;
      last_ = now;
      pybind11::gil_scoped_acquire gil;
      if (PyErr_CheckSignals() != 0) {
        pending_ = std::make_unique<pybind11::error_already_set>();
        return false;
      }
      if (!progress_.is_none()) progress_(generation);
      return true;
    };
  }
  // With the GIL: a predictor called by the search raised KeyboardInterrupt.
  void interrupt(pybind11::error_already_set&& error) {
    pending_ = std::make_unique<pybind11::error_already_set>(std::move(error));
  }
  // After the search, with the GIL: Ctrl-C gives back the partial result; any other
  // exception a signal handler raised propagates.
  bool interrupted() {
    if (!pending_) return false;
    if (!pending_->matches(PyExc_KeyboardInterrupt)) throw std::move(*pending_);
    return true;
  }

 private:
  pybind11::object progress_;
  std::chrono::steady_clock::time_point last_{};
  std::unique_ptr<pybind11::error_already_set> pending_;
};

// A dense layer's weights as the entries that take MLPs accept them: float32, C order.
using Floats = pybind11::array_t<float, pybind11::array::c_style | pybind11::array::forcecast>;

// Layer i from its (in, out) weight and (out,) bias, or ValueError naming layers[i].
inline DenseLayer dense_layer(const Floats& weight, const Floats& bias, std::size_t i) {
  const std::string name = "layers[" + std::to_string(i) + "]";
  if (weight.ndim() != 2)
    throw pybind11::value_error(name + ": weight must be a 2-D (in, out) array, got " +
                                std::to_string(weight.ndim()) + " dimensions");
  if (bias.ndim() != 1 || bias.shape(0) != weight.shape(1))
    throw pybind11::value_error(name + ": bias must hold " + std::to_string(weight.shape(1)) +
                                " values, a 1-D (out,) array");
  DenseLayer layer;
  layer.in = static_cast<int>(weight.shape(0));
  layer.out = static_cast<int>(weight.shape(1));
  layer.weight.assign(weight.data(), weight.data() + weight.size());
  layer.bias.assign(bias.data(), bias.data() + bias.size());
  return layer;
}

// Encoded configs as every entry takes them: uint8, C order (no copy when they already are).
using Rows = pybind11::array_t<uint8_t, pybind11::array::c_style | pybind11::array::forcecast>;

// Shape check (with the GIL): the rows' data and count, or ValueError.
inline const uint8_t* rows_of(const Rows& rows, const SpaceSpec& space, std::size_t* n) {
  if (rows.ndim() != 2 || rows.shape(1) != space.n_columns()) {
    std::string shape = "(";
    for (pybind11::ssize_t i = 0; i < rows.ndim(); ++i)
      shape += (i ? ", " : "") + std::to_string(rows.shape(i));
    shape += rows.ndim() == 1 ? ",)" : ")";
    throw pybind11::value_error("encoded configs must be a 2-D array of shape (n, " +
                                std::to_string(space.n_columns()) + "), got " + shape);
  }
  *n = static_cast<std::size_t>(rows.shape(0));
  return rows.data();
}

// ValueError for the first invalid row a check found (bad >= 0), naming row, column and range.
inline void raise_if_invalid(std::ptrdiff_t bad, int column, const uint8_t* rows,
                             const SpaceSpec& space) {
  if (bad < 0) return;
  const uint8_t* row = rows + static_cast<std::size_t>(bad) * space.n_columns();
  throw pybind11::value_error(space.invalid_message(static_cast<std::size_t>(bad), column, row));
}

}  // namespace moofa::bind
