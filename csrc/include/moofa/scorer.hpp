// What the search asks of an accuracy predictor: a batch of encoded configs in,
// one score per config out (higher is better). MlpPredictor and LinearScorer implement
// it; the binding layer wraps Python callables in it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "moofa/space.hpp"

namespace moofa {

class Scorer {
 public:
  virtual ~Scorer() = default;
  // Rows use the compact encoding of SpaceSpec (n_columns uint8 per row) and are valid.
  // Must be safe to call from several threads at once on disjoint outputs.
  virtual void score(const uint8_t* rows, std::size_t n, float* out, int threads) const = 0;
  virtual int n_columns() const = 0;
  // The space this scorer was built for, or nullptr when it reads rows of any space
  // with n_columns() columns (a wrapped callable).
  virtual const SpaceSpec* space() const { return nullptr; }
};

// Throws std::invalid_argument naming both spaces unless `scorer` reads rows of `space`
// (the class count may differ: it changes neither the encoding nor the scored body).
inline void require_same_space(const SpaceSpec& space, const Scorer& scorer) {
  const SpaceSpec* own = scorer.space();
  auto quoted = [](const SpaceSpec& s) { return "'" + (s.name.empty() ? "?" : s.name) + "'"; };
  auto described = [&](const SpaceSpec& s) {
    return quoted(s) + " (" + std::to_string(s.n_columns()) + " columns)";
  };
  if (own && !same_space(*own, space, /*ignore_classes=*/true))
    throw std::invalid_argument("predictor: built for space " + described(*own) +
                                ", but the search runs in space " + described(space) +
                                "; use a predictor of space " + quoted(space));
  if (!own && scorer.n_columns() != space.n_columns())
    throw std::invalid_argument("predictor: reads rows of " + std::to_string(scorer.n_columns()) +
                                " columns, but space " + quoted(space) + " has " +
                                std::to_string(space.n_columns()));
}

}  // namespace moofa
