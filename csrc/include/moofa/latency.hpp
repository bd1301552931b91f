// Costs that are additive over a subnet's parts, such as a measured latency table: per input
// resolution a fixed part (stem and head), plus one figure per active block slot looked up by
// (slot, resolution, kernel, expand). A block's cost depends on its kernel and expand jointly,
// so the table is not separable into kernel and expand one-hots. Plain data: no Python, no I/O.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "moofa/space.hpp"

namespace moofa {

class AdditiveCost {
 public:
  // base: one value per resolution of the space, finite and >= 0, or +infinity for a
  // resolution the table does not cover (no subnet at that resolution fits any limit).
  // slot_cost: n_slots x n_resolutions x n_kernels x n_expands values, finite and >= 0, at
  // index ((slot * n_res + r) * n_k + k) * n_e + e. Throws std::invalid_argument naming
  // the field otherwise. Immutable afterwards: safe to share between threads.
  AdditiveCost(SpaceSpec space, std::vector<double> base, std::vector<double> slot_cost);

  const SpaceSpec& space() const { return space_; }
  int n_columns() const { return n_cols_; }
  double base(int r) const { return base_[static_cast<std::size_t>(r)]; }
  double slot(int slot, int r, int k, int e) const {
    return slot_[((static_cast<std::size_t>(slot) * n_res_ + r) * n_k_ + k) * n_e_ + e];
  }

  // Cost of one valid encoded row (not checked): base[r] + the active slots' figures.
  double cost(const uint8_t* row) const {
    const int r = row[0];
    double total = base_[static_cast<std::size_t>(r)];
    const double* table = slot_.data() + static_cast<std::size_t>(r) * n_ke_;
    for (int s = 0; s < n_stages_; ++s) {
      const int first = first_slot_[static_cast<std::size_t>(s)];
      const int end = first + depth_value_[row[1 + s]];
      for (int slot = first; slot < end; ++slot)
        total += table[static_cast<std::size_t>(slot) * slot_stride_ +
                       static_cast<std::size_t>(row[col_kernel_ + slot]) * n_e_ +
                       row[col_expand_ + slot]];
    }
    return total;
  }
  // Costs of n rows, each checked first (std::invalid_argument naming row and column).
  void costs(const uint8_t* rows, std::size_t n, double* out) const;
  // The smallest cost any subnet of the space reaches (coupled expands respected), and
  // its resolution index; +infinity when no resolution is covered.
  double min_cost(int* resolution = nullptr) const;

 private:
  SpaceSpec space_;
  std::vector<double> base_, slot_;
  int n_res_ = 0, n_k_ = 0, n_e_ = 0, n_ke_ = 0, n_stages_ = 0, n_cols_ = 0;
  int col_kernel_ = 0, col_expand_ = 0;
  std::size_t slot_stride_ = 0;  // n_res * n_k * n_e
  std::vector<int> first_slot_, depth_value_;
};

}  // namespace moofa
