#include "bindings.hpp"

PYBIND11_MODULE(_core, m) {
  m.doc() = "moofa's C++ core (private: use the moofa package)";
  moofa::bind::memory(m);
}
