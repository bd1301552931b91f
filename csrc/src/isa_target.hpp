// Private: code compiled for a wider instruction set than the baseline, without -march
// flags. The functions between MOOFA_TARGET_BEGIN("avx2,fma") and MOOFA_TARGET_END are
// compiled for that target and may only run after a CPU check (isa_supported).
#pragma once

#if defined(__x86_64__) || defined(_M_X64) || defined(__i386__)
#define MOOFA_X86 1
#include <immintrin.h>
#else
#define MOOFA_X86 0
#endif

// Per-function targets need GCC or clang; elsewhere only the portable kernels are built.
#if MOOFA_X86 && (defined(__GNUC__) || defined(__clang__))
#define MOOFA_HAS_TARGETS 1
#else
#define MOOFA_HAS_TARGETS 0
#endif

#define MOOFA_PRAGMA(text) _Pragma(#text)
#if defined(__clang__)
#define MOOFA_TARGET_BEGIN(isa) \
  MOOFA_PRAGMA(clang attribute push(__attribute__((target(isa))), apply_to = function))
#define MOOFA_TARGET_END MOOFA_PRAGMA(clang attribute pop)
#elif defined(__GNUC__)
#define MOOFA_TARGET_BEGIN(isa) MOOFA_PRAGMA(GCC push_options) MOOFA_PRAGMA(GCC target(isa))
#define MOOFA_TARGET_END MOOFA_PRAGMA(GCC pop_options)
#endif
