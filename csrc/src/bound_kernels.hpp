// Private to the branch and bound: the loops of its bound over the layers after the first
// (double sums of float weights), compiled for the baseline ISA and with AVX2/AVX-512
// enabled per function (no -march flags); chosen once per solver by the CPU's ISA.
#pragma once

#include "moofa/predictor.hpp"

namespace moofa::detail {

struct BoundKernels {
  // lo[o] += c * w[o], rad[o] += r * abs_w[o] for o < n (the interval of one input).
  void (*interval)(double c, double r, const float* w, const float* abs_w, double* lo, double* rad,
                   int n);
  // y[o] += m * x[o] for o < n.
  void (*axpy)(double m, const float* x, double* y, int n);
};

BoundKernels bound_kernels(Isa isa);

}  // namespace moofa::detail
