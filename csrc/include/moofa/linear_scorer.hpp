// A linear model on the one-hot encoding of the published OFA/MOOFA predictors:
// score = bias + w[resolution] + sum over active slots of w[kernel of slot] + w[expand of slot].
// A ridge regression fitted on a few hundred measured subnets already ranks them well,
// so it serves as a light predictor (user-defined spaces, tests, benchmarks).
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "moofa/scorer.hpp"
#include "moofa/space.hpp"

namespace moofa {

class LinearScorer : public Scorer {
 public:
  // weights: n_features(space) values, laid out as the published encoding:
  // [resolution one-hot][kernel one-hot per slot][expand one-hot per slot].
  LinearScorer(const SpaceSpec& space, std::vector<float> weights, float bias);

  static int n_features(const SpaceSpec& space) { return space.one_hot_size(); }
  void score(const uint8_t* rows, std::size_t n, float* out, int threads) const override;
  int n_columns() const override { return space_.n_columns(); }
  const SpaceSpec* space() const override { return &space_; }
  // Index of the first invalid row (the space's RowCheck) or -1, and its column.
  std::ptrdiff_t first_invalid(const uint8_t* rows, std::size_t n, int* column) const {
    return check_.first_invalid(rows, n, column);
  }
  const std::vector<float>& weights() const { return weights_; }
  float bias() const { return bias_; }

 private:
  float score_one(const uint8_t* row) const;

  SpaceSpec space_;
  RowCheck check_;
  std::vector<float> weights_;
  float bias_;
  std::vector<int> stage_first_slot_;
  int n_slots_ = 0, kernel_offset_ = 0, expand_offset_ = 0;
};

}  // namespace moofa
