#include "moofa/latency.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <utility>

#include "require.hpp"

namespace moofa {

using detail::require;

AdditiveCost::AdditiveCost(SpaceSpec space, std::vector<double> base, std::vector<double> slot_cost)
    : space_(std::move(space)), base_(std::move(base)), slot_(std::move(slot_cost)) {
  space_.validate();
  n_res_ = static_cast<int>(space_.resolutions.size());
  n_k_ = static_cast<int>(space_.kernels.size());
  n_e_ = static_cast<int>(space_.expands.size());
  n_ke_ = n_k_ * n_e_;
  n_stages_ = space_.n_stages();
  n_cols_ = space_.n_columns();
  col_kernel_ = space_.col_kernel(0);
  col_expand_ = space_.col_expand(0);
  slot_stride_ = static_cast<std::size_t>(n_res_) * static_cast<std::size_t>(n_ke_);
  const std::size_t cells = static_cast<std::size_t>(space_.n_slots()) * slot_stride_;
  require(base_.size() == static_cast<std::size_t>(n_res_),
          "base must hold one cost per resolution (" + std::to_string(n_res_) + "), got " +
              std::to_string(base_.size()));
  require(slot_.size() == cells,
          "slot_cost must hold n_slots x n_resolutions x n_kernels x n_expands = " +
              std::to_string(cells) + " costs, got " + std::to_string(slot_.size()));
  for (std::size_t r = 0; r < base_.size(); ++r)
    require(base_[r] >= 0 && !std::isnan(base_[r]),
            "base[" + std::to_string(r) +
                "] must be a number >= 0 (or infinity: resolution not covered), got " +
                std::to_string(base_[r]));
  for (std::size_t i = 0; i < slot_.size(); ++i)
    require(std::isfinite(slot_[i]) && slot_[i] >= 0, "slot_cost[" + std::to_string(i) +
                                                          "] must be a finite number >= 0, got " +
                                                          std::to_string(slot_[i]));
  first_slot_ = space_.stage_first_slot();
  depth_value_ = space_.depths;
}

void AdditiveCost::costs(const uint8_t* rows, std::size_t n, double* out) const {
  const RowCheck check(space_);
  const auto cols = static_cast<std::size_t>(n_cols_);
  for (std::size_t i = 0; i < n; ++i) {
    const uint8_t* row = rows + i * cols;
    const int bad = check.invalid_column(row);
    if (bad >= 0) throw std::invalid_argument(space_.invalid_message(i, bad, row));
    out[i] = cost(row);
  }
}

double AdditiveCost::min_cost(int* resolution) const {
  double best = std::numeric_limits<double>::infinity();
  int best_r = -1;
  const int n_d = static_cast<int>(space_.depths.size());
  for (int r = 0; r < n_res_; ++r) {
    if (!std::isfinite(base_[static_cast<std::size_t>(r)])) continue;
    double total = base_[static_cast<std::size_t>(r)];
    for (int s = 0; s < n_stages_; ++s) {
      double stage_best = std::numeric_limits<double>::infinity();
      for (int di = 0; di < n_d; ++di) {
        // Coupled spaces (CompOFA) fix the expand of every block of the stage by its depth.
        const int e_lo =
            space_.coupled() ? space_.expand_by_depth[static_cast<std::size_t>(di)] : 0;
        const int e_hi = space_.coupled() ? e_lo + 1 : n_e_;
        double sum = 0;
        for (int j = 0; j < depth_value_[static_cast<std::size_t>(di)]; ++j) {
          double cheapest = std::numeric_limits<double>::infinity();
          for (int k = 0; k < n_k_; ++k)
            for (int e = e_lo; e < e_hi; ++e)
              cheapest =
                  std::min(cheapest, slot(first_slot_[static_cast<std::size_t>(s)] + j, r, k, e));
          sum += cheapest;
        }
        stage_best = std::min(stage_best, sum);
      }
      total += stage_best;
    }
    if (total < best) {
      best = total;
      best_r = r;
    }
  }
  if (resolution != nullptr) *resolution = best_r;
  return best;
}

}  // namespace moofa
