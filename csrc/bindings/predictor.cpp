// Thin pybind11 layer over moofa/predictor.hpp: copies and shape checks under the
// GIL, the batched forward pass without it.
#include "moofa/predictor.hpp"

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <string>
#include <vector>

#include "bindings.hpp"

namespace py = pybind11;

namespace moofa::bind {

namespace {

using Rows = py::array_t<uint8_t, py::array::c_style | py::array::forcecast>;
using Floats = py::array_t<float, py::array::c_style | py::array::forcecast>;

DenseLayer to_layer(const Floats& weight, const Floats& bias, std::size_t i) {
  const std::string name = "layers[" + std::to_string(i) + "]";
  if (weight.ndim() != 2)
    throw py::value_error(name + ": weight must be a 2-D (in, out) array, got " +
                          std::to_string(weight.ndim()) + " dimensions");
  if (bias.ndim() != 1)
    throw py::value_error(name + ": bias must be a 1-D (out,) array, got " +
                          std::to_string(bias.ndim()) + " dimensions");
  DenseLayer L;
  L.in = static_cast<int>(weight.shape(0));
  L.out = static_cast<int>(weight.shape(1));
  L.weight.assign(weight.data(), weight.data() + weight.size());
  L.bias.assign(bias.data(), bias.data() + bias.size());
  return L;
}

}  // namespace

void predictor(py::module_& m) {
  py::class_<MlpPredictor, Scorer>(m, "MlpPredictor")
      .def(py::init([](const SpaceSpec& space, const std::vector<Floats>& weights,
                       const std::vector<Floats>& biases, const py::object& skip, float scale,
                       float offset, const std::string& isa, const std::string& precision) {
             if (weights.size() != biases.size())
               throw py::value_error(
                   "weights and biases must have the same length (one per layer), got " +
                   std::to_string(weights.size()) + " and " + std::to_string(biases.size()));
             std::vector<DenseLayer> layers;
             for (std::size_t i = 0; i < weights.size(); ++i)
               layers.push_back(to_layer(weights[i], biases[i], i));
             std::vector<float> skip_w;
             if (!skip.is_none()) {
               auto s = skip.cast<Floats>();
               if (s.ndim() != 1)
                 throw py::value_error("skip must be a 1-D array (one weight per one-hot feature)");
               skip_w.assign(s.data(), s.data() + s.size());
             }
             return new MlpPredictor(space, std::move(layers), std::move(skip_w), scale, offset,
                                     isa_from_name(isa), precision_from_name(precision));
           }),
           py::arg("space"), py::arg("weights"), py::arg("biases"), py::arg("skip") = py::none(),
           py::arg("scale") = 1.0f, py::arg("offset") = 0.0f, py::arg("isa") = "auto",
           py::arg("precision") = "fp32",
           "MLP over the one-hot encoding; weights[i] is (in, out) for x @ W + b")
      .def(
          "score",
          [](const MlpPredictor& p, const Rows& rows, int threads) {
            if (rows.ndim() != 2 || rows.shape(1) != p.n_columns())
              throw py::value_error("encoded configs must be a 2-D array of shape (n, " +
                                    std::to_string(p.n_columns()) + ")");
            if (threads < 0) throw py::value_error("threads must be >= 0 (0: all cores)");
            const auto n = static_cast<std::size_t>(rows.shape(0));
            py::array_t<float> out(static_cast<py::ssize_t>(n));
            float* o = out.mutable_data();
            const uint8_t* r = rows.data();
            int column = -1;
            std::ptrdiff_t bad;
            {
              py::gil_scoped_release nogil;
              bad = p.first_invalid(r, n, &column);
              if (bad < 0) p.score(r, n, o, threads);
            }
            if (bad >= 0)
              throw py::value_error("encoded configs: row " + std::to_string(bad) + ", column " +
                                    std::to_string(column) + " holds an out-of-range choice index");
            return out;
          },
          py::arg("rows"), py::arg("threads") = 0,
          "Predicted scores (float32), one per encoded config")
      .def_property_readonly("n_features", &MlpPredictor::n_features)
      .def_property_readonly("layer_sizes", &MlpPredictor::layer_sizes)
      .def_property_readonly("isa", [](const MlpPredictor& p) { return isa_name(p.isa()); })
      .def_property_readonly("precision",
                             [](const MlpPredictor& p) { return precision_name(p.precision()); })
      .def_property_readonly("scale", &MlpPredictor::scale)
      .def_property_readonly("offset", &MlpPredictor::offset)
      .def_static("one_hot_size", &MlpPredictor::one_hot_size, py::arg("space"));

  m.def("best_isa", [] { return isa_name(best_isa()); }, "Widest kernel set this CPU runs");
  m.def(
      "isa_supported", [](const std::string& name) { return isa_supported(isa_from_name(name)); },
      py::arg("isa"));
}

}  // namespace moofa::bind
