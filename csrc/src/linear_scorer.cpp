#include "moofa/linear_scorer.hpp"

#include <cmath>
#include <string>
#include <utility>

#include "parallel.hpp"
#include "require.hpp"

namespace moofa {

using detail::require;

LinearScorer::LinearScorer(const SpaceSpec& space, std::vector<float> weights, float bias)
    : space_((space.validate(), space)), check_(space), weights_(std::move(weights)), bias_(bias) {
  require(static_cast<int>(weights_.size()) == n_features(space_),
          "weights must hold " + std::to_string(n_features(space_)) +
              " values for this space (resolution, kernel and expand one-hots), got " +
              std::to_string(weights_.size()));
  for (float w : weights_) require(std::isfinite(w), "weights must be finite");
  require(std::isfinite(bias_), "bias must be finite");
  stage_first_slot_ = space_.stage_first_slot();
  n_slots_ = space_.n_slots();
  kernel_offset_ = space_.one_hot_kernel_offset();
  expand_offset_ = space_.one_hot_expand_offset();
}

float LinearScorer::score_one(const uint8_t* row) const {
  const int n_k = static_cast<int>(space_.kernels.size()),
            n_e = static_cast<int>(space_.expands.size());
  const int n_stages = space_.n_stages();
  const uint8_t* kernels = row + space_.col_kernel(0);
  const uint8_t* expands = row + space_.col_expand(0);
  double total = static_cast<double>(bias_) + weights_[row[0]];
  for (int s = 0; s < n_stages; ++s) {
    const int d = space_.depths[row[space_.col_depth(s)]];
    for (int j = 0; j < d; ++j) {
      const int slot = stage_first_slot_[s] + j;
      total += weights_[kernel_offset_ + slot * n_k + kernels[slot]];
      total += weights_[expand_offset_ + slot * n_e + expands[slot]];
    }
  }
  return static_cast<float>(total);
}

void LinearScorer::score(const uint8_t* rows, std::size_t n, float* out, int threads) const {
  const std::size_t cols = static_cast<std::size_t>(n_columns());
  parallel_for(n, threads, [&](std::size_t b, std::size_t e) {
    for (std::size_t i = b; i < e; ++i) out[i] = score_one(rows + i * cols);
  });
}

}  // namespace moofa
