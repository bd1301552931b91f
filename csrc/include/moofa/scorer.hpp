// What the search asks of an accuracy predictor: a batch of encoded configs in,
// one score per config out (higher is better). The MLP predictor implements it;
// the binding layer wraps Python callables in it.
#pragma once

#include <cstddef>
#include <cstdint>

namespace moofa {

class Scorer {
 public:
  virtual ~Scorer() = default;
  // Rows use the compact encoding of SpaceSpec (n_columns uint8 per row) and are valid.
  // Must be safe to call from several threads at once on disjoint outputs.
  virtual void score(const uint8_t* rows, std::size_t n, float* out, int threads) const = 0;
  virtual int n_columns() const = 0;
};

}  // namespace moofa
