// Counter-based random streams: every (seed, stream) pair gives its own independent
// sequence, so work split across any number of threads draws the same numbers.
#pragma once

#include <cstdint>

namespace moofa {

// SplitMix64 finaliser: a bijective 64-bit mix with good avalanche.
inline uint64_t mix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

class Rng {
 public:
  Rng() : state_(0) {}
  Rng(uint64_t seed, uint64_t stream)
      : state_(mix64(seed ^ mix64(stream ^ 0x5851F42D4C957F2Dull))) {}

  uint64_t next() {
    state_ += 0x9E3779B97F4A7C15ull;
    uint64_t z = state_;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  // Uniform integer in [0, n) for n >= 1 (multiply-shift; the bias is below 2^-32 * n).
  int below(int n) { return static_cast<int>(((next() >> 32) * static_cast<uint64_t>(n)) >> 32); }
  // Uniform double in [0, 1).
  double uniform() { return static_cast<double>(next() >> 11) * (1.0 / 9007199254740992.0); }
  bool chance(double p) { return uniform() < p; }

 private:
  uint64_t state_;
};

// Coin flips of probability p (quantised to 1/65536) from 16-bit slices of 64-bit
// draws: four flips per draw, for the per-gene mutation decisions.
class Coins {
 public:
  Coins(Rng& rng, double p) : rng_(rng), threshold_(threshold(p)) {}
  // A slice below this is a hit.
  static uint32_t threshold(double p) { return static_cast<uint32_t>(p * 65536.0 + 0.5); }
  bool flip() {
    if (left_ == 0) {
      bits_ = rng_.next();
      left_ = 4;
    }
    const bool hit = (bits_ & 0xFFFFu) < threshold_;
    bits_ >>= 16;
    --left_;
    return hit;
  }

 private:
  Rng& rng_;
  uint32_t threshold_;
  uint64_t bits_ = 0;
  int left_ = 0;
};

// Stream ids of the search: one per (phase, generation, individual), never reused.
inline uint64_t stream_id(uint64_t phase, uint64_t generation, uint64_t individual) {
  return (phase << 56) ^ (generation << 28) ^ individual;
}

}  // namespace moofa
