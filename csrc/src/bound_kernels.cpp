// The bound's loops, compiled once per ISA from bound_kernels.inc (see bound_kernels.hpp).
#include "bound_kernels.hpp"

#if defined(__x86_64__) || defined(_M_X64) || defined(__i386__)
#define MOOFA_BOUND_X86 1
#else
#define MOOFA_BOUND_X86 0
#endif

namespace moofa::detail {

namespace generic_bound {
#include "bound_kernels.inc"
}  // namespace generic_bound

#if MOOFA_BOUND_X86 && (defined(__GNUC__) || defined(__clang__))
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,fma"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx2,fma")
#endif
namespace avx2_bound {
#include "bound_kernels.inc"
}  // namespace avx2_bound
#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif

#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx512f,avx2,fma"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx512f,avx2,fma")
#endif
namespace avx512_bound {
#include "bound_kernels.inc"
}  // namespace avx512_bound
#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif
#endif

BoundKernels bound_kernels(Isa isa) {
#if MOOFA_BOUND_X86 && (defined(__GNUC__) || defined(__clang__))
  if (isa == Isa::kAvx512 && isa_supported(Isa::kAvx512))
    return {avx512_bound::interval, avx512_bound::axpy};
  if (isa != Isa::kGeneric && isa_supported(Isa::kAvx2))
    return {avx2_bound::interval, avx2_bound::axpy};
#else
  (void)isa;
#endif
  return {generic_bound::interval, generic_bound::axpy};
}

}  // namespace moofa::detail
