// The predictor's forward kernels, compiled three times from predictor_kernels.inc:
// a portable version (plain C++ the compiler vectorises for the baseline ISA), an
// AVX2+FMA one and an AVX-512 one. No -march flags: the wider ones are enabled per
// function with target pragmas and only called after a CPU check (predictor.cpp).
#include "predictor_kernels.hpp"

#include <cstddef>
#include <cstdint>

#include "isa_target.hpp"

namespace moofa::detail {

namespace generic_isa {
// Eight floats in a plain struct: the loops below auto-vectorise on any target.
struct Vec {
  static constexpr int W = 8;
  struct T {
    float v[W];
  };
  static inline T zero() {
    T r;
    for (int i = 0; i < W; ++i) r.v[i] = 0.0f;
    return r;
  }
  static inline T load(const float* p) {
    T r;
    for (int i = 0; i < W; ++i) r.v[i] = p[i];
    return r;
  }
  static inline void store(float* p, const T& a) {
    for (int i = 0; i < W; ++i) p[i] = a.v[i];
  }
  static inline T set1(float x) {
    T r;
    for (int i = 0; i < W; ++i) r.v[i] = x;
    return r;
  }
  static inline T add(const T& a, const T& b) {
    T r;
    for (int i = 0; i < W; ++i) r.v[i] = a.v[i] + b.v[i];
    return r;
  }
  static inline T fma(const T& x, const T& w, const T& acc) {
    T r;
    for (int i = 0; i < W; ++i) r.v[i] = acc.v[i] + x.v[i] * w.v[i];
    return r;
  }
  static inline T relu(const T& a) {
    T r;
    for (int i = 0; i < W; ++i) r.v[i] = a.v[i] > 0.0f ? a.v[i] : 0.0f;
    return r;
  }
  static inline float hsum(const T& a) {
    float s = 0.0f;
    for (int i = 0; i < W; ++i) s += a.v[i];
    return s;
  }
};
// Sixteen int16 lanes; wrap-around adds cannot happen (the scales rule overflow out).
struct IVec {
  static constexpr int W = 16;
  struct T {
    int16_t v[W];
  };
  static inline T zero() {
    T r;
    for (int i = 0; i < W; ++i) r.v[i] = 0;
    return r;
  }
  static inline T load(const int16_t* p) {
    T r;
    for (int i = 0; i < W; ++i) r.v[i] = p[i];
    return r;
  }
  static inline T add(const T& a, const T& b) {
    T r;
    for (int i = 0; i < W; ++i) r.v[i] = static_cast<int16_t>(a.v[i] + b.v[i]);
    return r;
  }
  static inline void to_float_relu(const T& a, const float* scale, float* dst) {
    for (int i = 0; i < W; ++i) {
      const float x = static_cast<float>(a.v[i]) * scale[i];
      dst[i] = x > 0.0f ? x : 0.0f;
    }
  }
};
constexpr int kMR = 4;
#include "predictor_kernels.inc"
}  // namespace generic_isa

void forward_tile_generic(const TileWork& work) { generic_isa::forward_tile(work); }

#if MOOFA_HAS_TARGETS

MOOFA_TARGET_BEGIN("avx2,fma")
namespace avx2_isa {
#include "predictor_ivec_avx2.inc"
#include "predictor_vec_avx2.inc"
constexpr int kMR = 6;  // 12 accumulators + 2 weights + 1 broadcast of 16 registers
#include "predictor_kernels.inc"
}  // namespace avx2_isa
void forward_tile_avx2(const TileWork& work) { avx2_isa::forward_tile(work); }
MOOFA_TARGET_END

MOOFA_TARGET_BEGIN("avx512f,avx2,fma")
#if !defined(__clang__)
// GCC 12's own avx512fintrin.h (set1/reduce helpers built on _mm512_undefined_ps)
// trips -Wmaybe-uninitialized; the values are fully written before use.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
namespace avx512_isa {
struct Vec {
  static constexpr int W = 16;
  using T = __m512;
  static inline T zero() { return _mm512_setzero_ps(); }
  static inline T load(const float* p) { return _mm512_loadu_ps(p); }
  static inline void store(float* p, T a) { _mm512_storeu_ps(p, a); }
  static inline T set1(float x) { return _mm512_set1_ps(x); }
  static inline T add(T a, T b) { return _mm512_add_ps(a, b); }
  static inline T fma(T x, T w, T acc) { return _mm512_fmadd_ps(x, w, acc); }
  static inline T relu(T a) { return _mm512_max_ps(a, _mm512_setzero_ps()); }
  static inline float hsum(T a) { return _mm512_reduce_add_ps(a); }
};
#include "predictor_ivec_avx2.inc"
// 16 accumulators + 2 weights + 1 broadcast of 32 registers. Twelve rows (24
// accumulators) should fit as well, but GCC then keeps the two weight vectors on the stack
// and reloads them for every FMA: 1.1-1.4x slower than AVX2 on the same data.
constexpr int kMR = 8;
#include "predictor_kernels.inc"
}  // namespace avx512_isa
void forward_tile_avx512(const TileWork& work) { avx512_isa::forward_tile(work); }
#if !defined(__clang__)
#pragma GCC diagnostic pop
#endif
MOOFA_TARGET_END

#else  // not x86: the wide kernels are never selected (isa_supported says no)
void forward_tile_avx2(const TileWork& work) { generic_isa::forward_tile(work); }
void forward_tile_avx512(const TileWork& work) { generic_isa::forward_tile(work); }
#endif

}  // namespace moofa::detail
