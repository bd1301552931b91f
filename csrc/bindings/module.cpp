#include <pybind11/stl.h>

#include <optional>

#include "bindings.hpp"
#include "moofa/scorer.hpp"

#ifndef MOOFA_VERSION
#error "MOOFA_VERSION must be defined by the build (the version in pyproject.toml)"
#endif

PYBIND11_MODULE(_core, m) {
  m.doc() = "moofa's C++ core (private: use the moofa package)";
  m.attr("__version__") = MOOFA_VERSION;
  // Base of every C++ scorer (predictors); the search accepts any of them.
  pybind11::class_<moofa::Scorer>(m, "Scorer")
      .def_property_readonly("n_columns", &moofa::Scorer::n_columns)
      .def_property_readonly(
          "space",
          [](const moofa::Scorer& s) -> std::optional<moofa::SpaceSpec> {
            if (const moofa::SpaceSpec* spec = s.space()) return *spec;
            return std::nullopt;
          },
          "the space this scorer reads rows of");
  moofa::bind::memory(m);
  moofa::bind::predictor(m);
  moofa::bind::latency(m);
  moofa::bind::search(m);
  moofa::bind::optimum(m);
}
