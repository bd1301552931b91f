// pybind11 layer over moofa/latency.hpp: an additive cost table (a measured latency table)
// that the searches can limit (max_latency_ms), and its batched lookup.
#include "moofa/latency.hpp"

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "bindings.hpp"

namespace py = pybind11;

namespace moofa::bind {

namespace {

using Doubles = py::array_t<double, py::array::c_style | py::array::forcecast>;

std::string shape_text(const py::array& a) {
  std::string s = "(";
  for (py::ssize_t i = 0; i < a.ndim(); ++i) s += (i ? ", " : "") + std::to_string(a.shape(i));
  return s + (a.ndim() == 1 ? ",)" : ")");
}

}  // namespace

void latency(py::module_& m) {
  py::class_<AdditiveCost, std::shared_ptr<AdditiveCost>>(
      m, "AdditiveCost",
      "a cost additive over a subnet's parts (a latency table): base[r] + one figure per active "
      "block slot, looked up by (slot, resolution, kernel, expand)")
      .def(py::init([](const SpaceSpec& space, const Doubles& base, const Doubles& slots) {
             const auto n_res = static_cast<py::ssize_t>(space.resolutions.size());
             const auto n_slots = static_cast<py::ssize_t>(space.n_slots());
             const auto n_k = static_cast<py::ssize_t>(space.kernels.size());
             const auto n_e = static_cast<py::ssize_t>(space.expands.size());
             if (base.ndim() != 1 || base.shape(0) != n_res)
               throw py::value_error("base must have shape (" + std::to_string(n_res) +
                                     ",) (one cost per resolution), got " + shape_text(base));
             if (slots.ndim() != 4 || slots.shape(0) != n_slots || slots.shape(1) != n_res ||
                 slots.shape(2) != n_k || slots.shape(3) != n_e)
               throw py::value_error(
                   "slots must have shape (n_slots, n_resolutions, n_kernels, n_expands) = (" +
                   std::to_string(n_slots) + ", " + std::to_string(n_res) + ", " +
                   std::to_string(n_k) + ", " + std::to_string(n_e) + "), got " +
                   shape_text(slots));
             std::vector<double> b(base.data(), base.data() + base.size());
             std::vector<double> s(slots.data(), slots.data() + slots.size());
             return std::make_shared<AdditiveCost>(space, std::move(b), std::move(s));
           }),
           py::arg("space"), py::arg("base"), py::arg("slots"))
      .def_property_readonly("space", &AdditiveCost::space, "the space whose rows it reads")
      .def_property_readonly("n_columns", &AdditiveCost::n_columns)
      .def(
          "costs",
          [](const AdditiveCost& c, const Rows& rows) {
            std::size_t n = 0;
            const uint8_t* data = rows_of(rows, c.space(), &n);
            py::array_t<double> out(static_cast<py::ssize_t>(n));
            double* o = out.mutable_data();
            {
              py::gil_scoped_release nogil;
              c.costs(data, n, o);
            }
            return out;
          },
          py::arg("rows"), "the cost of every encoded row (checked), float64")
      .def(
          "min_cost",
          [](const AdditiveCost& c) {
            int r = -1;
            const double v = c.min_cost(&r);
            return py::make_tuple(v, r);
          },
          "(smallest cost any subnet reaches, its resolution index; -1 when none is covered)");
}

}  // namespace moofa::bind
