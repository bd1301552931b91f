// Each area binds itself into the one private module moofa._core.
#pragma once

#include <pybind11/pybind11.h>

namespace moofa::bind {
void memory(pybind11::module_& m);
void predictor(pybind11::module_& m);
void search(pybind11::module_& m);
}  // namespace moofa::bind
