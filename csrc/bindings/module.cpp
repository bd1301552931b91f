#include "bindings.hpp"

#include "moofa/scorer.hpp"

PYBIND11_MODULE(_core, m) {
  m.doc() = "moofa's C++ core (private: use the moofa package)";
  // Base of every C++ scorer (predictors); the search accepts any of them.
  pybind11::class_<moofa::Scorer>(m, "Scorer")
      .def_property_readonly("n_columns", &moofa::Scorer::n_columns);
  moofa::bind::memory(m);
  moofa::bind::predictor(m);
  moofa::bind::search(m);
}
