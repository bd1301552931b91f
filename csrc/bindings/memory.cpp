// Thin pybind11 layer over moofa/memory.hpp: shape checks under the GIL, loops without it.
#include "moofa/memory.hpp"

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <stdexcept>
#include <string>
#include <vector>

#include "bindings.hpp"

namespace py = pybind11;

namespace moofa::bind {

namespace {

// Reads n numbers from a list or tuple (None reads as 0); false for anything else.
bool read_numbers(PyObject* seq, std::size_t n, double* out) {
  if (seq == nullptr || !(PyList_Check(seq) || PyTuple_Check(seq))) return false;
  const bool list = PyList_Check(seq);
  if (static_cast<std::size_t>(list ? PyList_GET_SIZE(seq) : PyTuple_GET_SIZE(seq)) != n)
    return false;
  for (std::size_t i = 0; i < n; ++i) {
    PyObject* v = list ? PyList_GET_ITEM(seq, i) : PyTuple_GET_ITEM(seq, i);
    if (v == Py_None) {
      out[i] = 0;
    } else if (PyLong_CheckExact(v)) {
      out[i] = static_cast<double>(PyLong_AsLong(v));
      if (out[i] == -1 && PyErr_Occurred()) {
        PyErr_Clear();
        return false;
      }
    } else if (PyFloat_CheckExact(v)) {
      out[i] = PyFloat_AS_DOUBLE(v);
    } else {
      return false;  // bools, numpy scalars, strings...: the general path decides
    }
  }
  return true;
}

// The row of an OFA-style config dict (ks, e, d, image_size or r: [size]), or false when the
// dict is not in that plain form or holds a value that is not a choice.
bool config_row(const SpaceSpec& space, const py::handle& cfg, uint8_t* row) {
  PyObject* dict = cfg.ptr();
  if (!PyDict_Check(dict)) return false;
  const std::size_t slots = static_cast<std::size_t>(space.n_slots());
  std::vector<double> values(2 * slots + space.n_stages() + 1);
  double* ks = values.data();
  double* e = ks + slots;
  double* d = e + slots;
  double* size = d + space.n_stages();
  PyObject* r = PyDict_GetItemString(dict, "image_size");
  const bool as_list = r == nullptr;
  if (as_list) r = PyDict_GetItemString(dict, "r");
  if (!read_numbers(PyDict_GetItemString(dict, "ks"), slots, ks) ||
      !read_numbers(PyDict_GetItemString(dict, "e"), slots, e) ||
      !read_numbers(PyDict_GetItemString(dict, "d"), space.n_stages(), d))
    return false;
  if (as_list) {
    if (!read_numbers(r, 1, size)) return false;
  } else if (PyLong_CheckExact(r)) {
    *size = static_cast<double>(PyLong_AsLong(r));
    if (*size == -1 && PyErr_Occurred()) {
      PyErr_Clear();
      return false;
    }
  } else {
    return false;
  }
  return space.encode_values(ks, e, d, *size, row);
}

// The first invalid row of `rows` (row -1: none) and its column; `checker` (a SpaceSpec, or
// an Evaluator, which keeps its row check built) scans without the GIL.
struct Scan {
  const uint8_t* data;
  std::ptrdiff_t row;
  int column;
};

template <class Checker>
Scan scan_rows(const Checker& checker, const SpaceSpec& space, const Rows& rows) {
  std::size_t n;
  Scan s{rows_of(rows, space, &n), -1, -1};
  py::gil_scoped_release nogil;
  s.row = checker.first_invalid(s.data, n, &s.column);
  return s;
}

template <class Checker>
py::object first_invalid_or_none(const Checker& checker, const SpaceSpec& space, const Rows& rows) {
  const Scan s = scan_rows(checker, space, rows);
  if (s.row < 0) return py::none();
  return py::make_tuple(s.row, s.column);
}

}  // namespace

void memory(py::module_& m) {
  py::class_<StageSpec>(m, "StageSpec")
      .def(py::init([](int width, int stride, bool se, int max_depth, bool hard_swish) {
             return StageSpec{width, stride, se, max_depth, hard_swish};
           }),
           py::arg("width"), py::arg("stride"), py::arg("se"), py::arg("max_depth"),
           py::arg("hard_swish") = false)
      .def_readonly("hard_swish", &StageSpec::hard_swish)
      .def_readonly("width", &StageSpec::width)
      .def_readonly("stride", &StageSpec::stride)
      .def_readonly("se", &StageSpec::se)
      .def_readonly("max_depth", &StageSpec::max_depth);

  py::class_<SpaceSpec>(m, "SpaceSpec")
      .def(py::init([](std::vector<StageSpec> stages, std::vector<int> kernels,
                       std::vector<double> expands, std::vector<int> depths,
                       std::vector<int> resolutions, int in_channels, int first_conv_width,
                       int first_conv_kernel, int first_conv_stride, int first_block_width,
                       int final_expand_width, int feature_mix_width, int n_classes,
                       std::vector<int> expand_by_depth, std::string name,
                       bool first_conv_hard_swish, bool first_block_hard_swish,
                       bool head_hard_swish) {
             SpaceSpec s;
             s.name = std::move(name);
             s.stages = std::move(stages);
             s.kernels = std::move(kernels);
             s.expands = std::move(expands);
             s.depths = std::move(depths);
             s.resolutions = std::move(resolutions);
             s.in_channels = in_channels;
             s.first_conv_width = first_conv_width;
             s.first_conv_kernel = first_conv_kernel;
             s.first_conv_stride = first_conv_stride;
             s.first_block_width = first_block_width;
             s.final_expand_width = final_expand_width;
             s.feature_mix_width = feature_mix_width;
             s.n_classes = n_classes;
             s.expand_by_depth = std::move(expand_by_depth);
             s.first_conv_hard_swish = first_conv_hard_swish;
             s.first_block_hard_swish = first_block_hard_swish;
             s.head_hard_swish = head_hard_swish;
             s.validate();
             return s;
           }),
           py::kw_only(), py::arg("stages"), py::arg("kernels"), py::arg("expands"),
           py::arg("depths"), py::arg("resolutions"), py::arg("in_channels"),
           py::arg("first_conv_width"), py::arg("first_conv_kernel"), py::arg("first_conv_stride"),
           py::arg("first_block_width"), py::arg("final_expand_width"),
           py::arg("feature_mix_width"), py::arg("n_classes"), py::arg("expand_by_depth"),
           py::arg("name") = "", py::arg("first_conv_hard_swish") = false,
           py::arg("first_block_hard_swish") = false, py::arg("head_hard_swish") = false)
      .def_readonly("name", &SpaceSpec::name)
      .def_property_readonly("n_columns", &SpaceSpec::n_columns)
      .def_property_readonly("n_slots", &SpaceSpec::n_slots)
      .def_property_readonly("n_stages", &SpaceSpec::n_stages)
      .def_property_readonly(
          "column_offsets",
          [](const SpaceSpec& s) {
            const ColumnOffsets o = s.column_offsets();
            py::dict d;
            d["resolution"] = o.resolution;
            d["depth"] = o.depth;
            d["kernel"] = o.kernel;
            d["expand"] = o.expand;
            d["end"] = o.end;
            return d;
          },
          "first column of each block of the encoding (resolution, depth, kernel, expand) and "
          "end (= n_columns)")
      .def_property_readonly("column_limits", &SpaceSpec::column_limits,
                             "number of allowed indices of every column")
      .def_property_readonly("slot_stage", &SpaceSpec::slot_stage, "stage of every block slot")
      .def_property_readonly("stage_first_slot", &SpaceSpec::stage_first_slot,
                             "first block slot of every stage")
      .def_property_readonly("one_hot_size", &SpaceSpec::one_hot_size,
                             "length of the predictors' one-hot encoding")
      .def_property_readonly("table_cells", &SpaceSpec::table_cells)
      .def(
          "same_space",
          [](const SpaceSpec& a, const SpaceSpec& b, bool ignore_classes) {
            return same_space(a, b, ignore_classes);
          },
          py::arg("other"), py::arg("ignore_classes") = false,
          "same search space (every field but the name; optionally but the class count)")
      .def(
          "first_invalid",
          [](const SpaceSpec& s, const Rows& rows) { return first_invalid_or_none(s, s, rows); },
          py::arg("rows"), "(row, column) of the first invalid encoded config, or None")
      .def(
          "check_rows",
          [](const SpaceSpec& s, const Rows& rows) {
            const Scan scan = scan_rows(s, s, rows);
            raise_if_invalid(scan.row, scan.column, scan.data, s);
          },
          py::arg("rows"),
          "ValueError naming row, column and allowed indices of the first bad row");

  py::class_<Evaluator>(m, "Evaluator")
      .def(py::init([](const SpaceSpec& spec, const std::string& model) {
             return Evaluator(spec, memory_model_from_name(model));
           }),
           py::arg("space"), py::arg("memory_model") = "full")
      .def_property_readonly("n_columns", &Evaluator::n_columns)
      .def_property_readonly("space", &Evaluator::space, py::return_value_policy::copy)
      .def_property_readonly("max_layers", &Evaluator::max_layers)
      .def(
          "first_invalid",
          [](const Evaluator& ev, const Rows& rows) {
            return first_invalid_or_none(ev, ev.space(), rows);
          },
          py::arg("rows"), "(row, column) of the first invalid encoded config, or None")
      .def(
          "peaks",
          [](const Evaluator& ev, const Rows& rows, int threads) {
            std::size_t n;
            const uint8_t* p = rows_of(rows, ev.space(), &n);
            py::array_t<int64_t> out(static_cast<py::ssize_t>(n));
            int64_t* o = out.mutable_data();
            int col = -1;
            std::ptrdiff_t bad;
            {
              py::gil_scoped_release nogil;
              bad = ev.peaks(p, n, o, threads, &col);
            }
            raise_if_invalid(bad, col, p, ev.space());
            return out;
          },
          py::arg("rows"), py::arg("threads") = 0)
      .def(
          "config_peak",
          [](const Evaluator& ev, const py::handle& cfg) -> py::object {
            std::vector<uint8_t> row(ev.n_columns());
            if (!config_row(ev.space(), cfg, row.data())) return py::none();
            return py::int_(ev.peak(row.data()));
          },
          py::arg("config"),
          "Peak of one OFA-style config dict (plain lists of numbers; ks, e, d, image_size or "
          "r: [size]; idle slots 0, None or a choice; a coupled space's e not read), or None "
          "when it is not in that form or holds a value that is not a choice (a slow path names "
          "the error). For tools that ask one config at a time.")
      .def(
          "profiles",
          [](const Evaluator& ev, const Rows& rows, int threads, bool with_hist) {
            std::size_t n;
            const uint8_t* p = rows_of(rows, ev.space(), &n);
            const auto sn = static_cast<py::ssize_t>(n);
            py::array_t<int64_t> peak(sn), params(sn);
            py::array_t<double> avg(sn), std_dev(sn), mflops(sn), uniformity(sn);
            py::array_t<int32_t> n_layers(sn);
            py::array_t<int64_t> hist(with_hist ? std::vector<py::ssize_t>{sn, ev.max_layers()}
                                                : std::vector<py::ssize_t>{0, ev.max_layers()});
            int64_t* h = with_hist ? hist.mutable_data() : nullptr;
            int64_t *pk = peak.mutable_data(), *pr = params.mutable_data();
            double *av = avg.mutable_data(), *sd = std_dev.mutable_data(),
                   *mf = mflops.mutable_data(), *un = uniformity.mutable_data();
            int32_t* nl = n_layers.mutable_data();
            int col = -1;
            std::ptrdiff_t bad;
            {
              py::gil_scoped_release nogil;
              bad = ev.profiles(p, n, pk, av, sd, mf, pr, h, nl, threads, &col, un);
            }
            raise_if_invalid(bad, col, p, ev.space());
            py::dict out;
            out["peak"] = peak;
            out["avg"] = avg;
            out["std"] = std_dev;
            out["uniformity"] = uniformity;
            out["mflops"] = mflops;
            out["params"] = params;
            out["n_layers"] = n_layers;
            if (with_hist) out["hist"] = hist;
            return out;
          },
          py::arg("rows"), py::arg("threads") = 0, py::arg("with_hist") = true)
      .def(
          "peak_tables",
          [](const Evaluator& ev) {
            const SpaceSpec& sp = ev.space();
            const auto n_r = static_cast<py::ssize_t>(sp.resolutions.size());
            const auto n_k = static_cast<py::ssize_t>(sp.kernels.size());
            const auto n_e = static_cast<py::ssize_t>(sp.expands.size());
            const auto n_s = static_cast<py::ssize_t>(sp.n_slots());
            py::array_t<int64_t> fixed(n_r);
            py::array_t<int64_t> slots({n_s, n_r, n_k, n_e});
            int64_t* f = fixed.mutable_data();
            int64_t* t = slots.mutable_data();
            for (int r = 0; r < n_r; ++r) f[r] = ev.fixed_peak(r);
            for (int s = 0; s < n_s; ++s)
              for (int r = 0; r < n_r; ++r)
                for (int k = 0; k < n_k; ++k)
                  for (int e = 0; e < n_e; ++e) *t++ = ev.slot_peak(s, r, k, e);
            return py::make_tuple(fixed, slots);
          },
          "(fixed, slots): the peak is max(fixed[r], slots[slot, r, k, e] of every active slot); "
          "lower bounds of it under memory model 'tflm'")
      .def(
          "min_peak",
          [](const Evaluator& ev) {
            std::vector<uint8_t> row;
            int64_t peak = ev.min_peak(&row);
            py::array_t<uint8_t> arr(static_cast<py::ssize_t>(row.size()));
            std::copy(row.begin(), row.end(), arr.mutable_data());
            return py::make_tuple(peak, arr);
          },
          "(smallest peak of any subnet, the encoded subnet that has it)");

  m.def("make_divisible", &make_divisible, py::arg("v"), py::arg("divisor") = 8,
        "OFA's channel rounding; OverflowError when the result does not fit int64");
}

}  // namespace moofa::bind
