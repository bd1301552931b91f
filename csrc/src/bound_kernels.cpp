// The bound's loops, compiled once per ISA from bound_kernels.inc (see bound_kernels.hpp).
#include "bound_kernels.hpp"

#include "isa_target.hpp"

namespace moofa::detail {

namespace generic_bound {
#include "bound_kernels.inc"
}  // namespace generic_bound

#if MOOFA_HAS_TARGETS
MOOFA_TARGET_BEGIN("avx2,fma")
namespace avx2_bound {
#include "bound_kernels.inc"
}  // namespace avx2_bound
MOOFA_TARGET_END

MOOFA_TARGET_BEGIN("avx512f,avx2,fma")
namespace avx512_bound {
#include "bound_kernels.inc"
}  // namespace avx512_bound
MOOFA_TARGET_END
#endif

BoundKernels bound_kernels(Isa isa) {
#if MOOFA_HAS_TARGETS
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
