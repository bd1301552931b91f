// pybind11 layer over moofa/optimum.hpp: shapes checked with the GIL, the branch and
// bound without it.
#include "moofa/optimum.hpp"

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <functional>
#include <limits>
#include <optional>
#include <string>
#include <vector>

#include "bindings.hpp"
#include "moofa/memory.hpp"

namespace py = pybind11;

namespace moofa::bind {

namespace {
// Set from any thread to stop a branch and bound that another thread runs (it stops
// within 256 nodes, unproven); Ctrl-C reaches only the main thread's.
struct StopFlag {
  std::atomic<bool> set{false};
};
}  // namespace

void optimum(py::module_& m) {
  py::class_<StopFlag>(m, "StopFlag",
                       "Set it (from any thread) to stop the mlp_optimum calls given it")
      .def(py::init<>())
      .def(
          "set", [](StopFlag& f) { f.set.store(true); }, "Stop the calls given this flag")
      .def_property_readonly(
          "is_set", [](const StopFlag& f) { return f.set.load(); }, "Whether set() was called");
  m.def(
      "mlp_optimum",
      [](const Evaluator& evaluator, const std::vector<Floats>& weights,
         const std::vector<Floats>& biases, const std::optional<Floats>& skip, float scale,
         float offset, int64_t max_peak, std::optional<double> max_mflops,
         std::optional<int64_t> max_params, double time_limit, int64_t max_nodes,
         const std::optional<Rows>& start_row, const StopFlag* stop) {
        if (weights.size() != biases.size())
          throw py::value_error("weights and biases must have one entry per layer");
        std::vector<DenseLayer> layers;
        for (std::size_t i = 0; i < weights.size(); ++i)
          layers.push_back(dense_layer(weights[i], biases[i], i));
        std::vector<float> sk;
        if (skip) {
          if (skip->ndim() != 1) throw py::value_error("skip must be a 1-D array");
          sk.assign(skip->data(), skip->data() + skip->size());
        }
        Constraints c;
        c.max_peak = max_peak;
        if (max_mflops) c.max_mflops = *max_mflops;
        if (max_params) c.max_params = *max_params;
        if (!(time_limit >= 0) || !std::isfinite(time_limit))
          throw py::value_error("time_limit must be a finite number >= 0");
        if (max_nodes < 0) throw py::value_error("max_nodes must be >= 0");
        OptimumOptions o;
        o.time_limit = time_limit;
        o.max_nodes = max_nodes;
        if (start_row) {
          std::size_t n = 0;
          const uint8_t* data = rows_of(*start_row, evaluator.space(), &n);
          if (n != 1) throw py::value_error("start_row must hold one encoded subnet");
          o.start_row.assign(data, data + evaluator.n_columns());
        }
        // Ctrl-C: checked between nodes (with the GIL, every 50 ms at most).
        GenerationHook hook{py::none()};
        const std::function<bool(int)> check = hook.callback();
        o.keep_going = [&check, stop] { return !(stop && stop->set.load()) && check(1); };
        OptimumResult r;
        const auto t0 = std::chrono::steady_clock::now();
        {
          py::gil_scoped_release nogil;
          r = mlp_optimum(evaluator, c, layers, sk, scale, offset, o);
        }
        const std::chrono::duration<double> dt = std::chrono::steady_clock::now() - t0;
        py::array_t<uint8_t> row(static_cast<py::ssize_t>(r.best_row.size()));
        std::copy(r.best_row.begin(), r.best_row.end(), row.mutable_data());
        py::dict out;
        out["best_row"] = row;
        out["best_score"] = r.best_score;
        out["proven_optimal"] = r.proven_optimal;
        out["upper_bound"] = r.upper_bound;
        out["nodes"] = r.nodes;
        out["interrupted"] = hook.interrupted();
        out["seconds"] = dt.count();
        return out;
      },
      py::arg("evaluator"), py::arg("weights"), py::arg("biases"), py::kw_only(),
      py::arg("skip") = py::none(), py::arg("scale") = 1.0f, py::arg("offset") = 0.0f,
      py::arg("max_peak") = std::numeric_limits<int64_t>::max(), py::arg("max_mflops") = py::none(),
      py::arg("max_params") = py::none(), py::arg("time_limit") = 0.0, py::arg("max_nodes") = 0,
      py::arg("start_row") = py::none(), py::arg("stop") = nullptr,
      "Exact best subnet of a linear or ReLU MLP predictor under the constraints "
      "(branch and bound); proven_optimal is False when time_limit, max_nodes or stop stopped it");
}

}  // namespace moofa::bind
