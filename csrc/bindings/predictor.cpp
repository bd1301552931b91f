// Thin pybind11 layer over moofa/predictor.hpp: copies and shape checks under the
// GIL, the batched forward pass without it.
#include "moofa/predictor.hpp"

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <string>
#include <vector>

#include "bindings.hpp"
#include "moofa/linear_scorer.hpp"

namespace py = pybind11;

namespace moofa::bind {

namespace {

// Scores of a batch of encoded configs, every row checked first (ValueError naming it).
template <class S>
py::array_t<float> score_rows(const S& scorer, const Rows& rows, int threads) {
  std::size_t n;
  const uint8_t* r = rows_of(rows, *scorer.space(), &n);
  if (threads < 0)
    throw py::value_error("threads must be >= 0 (0: all cores), got " + std::to_string(threads));
  py::array_t<float> out(static_cast<py::ssize_t>(n));
  float* o = out.mutable_data();
  int column = -1;
  std::ptrdiff_t bad;
  {
    py::gil_scoped_release nogil;
    bad = scorer.first_invalid(r, n, &column);
    if (bad < 0) scorer.score(r, n, o, threads);
  }
  raise_if_invalid(bad, column, r, *scorer.space());
  return out;
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
               layers.push_back(dense_layer(weights[i], biases[i], i));
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
            return score_rows(p, rows, threads);
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

  py::class_<LinearScorer, Scorer>(
      m, "LinearScorer", "Linear model on the published one-hot encoding (a light predictor)")
      .def(py::init([](const SpaceSpec& space, const Floats& weights, float bias) {
             if (weights.ndim() != 1)
               throw py::value_error("weights must be a 1-D array of " +
                                     std::to_string(LinearScorer::n_features(space)) + " values");
             return LinearScorer(
                 space, std::vector<float>(weights.data(), weights.data() + weights.size()), bias);
           }),
           py::arg("space"), py::arg("weights"), py::arg("bias") = 0.0f)
      .def_static("n_features", &LinearScorer::n_features, py::arg("space"))
      .def_property_readonly("weights",
                             [](const LinearScorer& s) {
                               const std::vector<float>& w = s.weights();
                               py::array_t<float> a(static_cast<py::ssize_t>(w.size()));
                               std::copy(w.begin(), w.end(), a.mutable_data());
                               return a;
                             })
      .def_property_readonly("bias", &LinearScorer::bias)
      .def(
          "score",
          [](const LinearScorer& s, const Rows& rows, int threads) {
            return score_rows(s, rows, threads);
          },
          py::arg("rows"), py::arg("threads") = 0, "scores of encoded configs (n, n_columns)");

  m.def("best_isa", [] { return isa_name(best_isa()); }, "Widest kernel set this CPU runs");
  m.def(
      "isa_supported", [](const std::string& name) { return isa_supported(isa_from_name(name)); },
      py::arg("isa"));
}

}  // namespace moofa::bind
