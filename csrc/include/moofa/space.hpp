// Search-space description shared by the evaluator, the predictor and the search.
// Plain data: no Python, no I/O. Built by the binding layer from moofa.Space.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace moofa {

struct StageSpec {
  int width = 0;
  int stride = 1;
  bool se = false;
  int max_depth = 4;
};

struct SpaceSpec {
  int in_channels = 3;
  int first_conv_width = 16;
  int first_conv_kernel = 3;
  int first_conv_stride = 2;
  int first_block_width = 16;
  std::vector<StageSpec> stages;
  std::vector<int> kernels;
  std::vector<double> expands;
  std::vector<int> depths;
  std::vector<int> resolutions;
  int final_expand_width = 960;
  int feature_mix_width = 1280;  // 0: no feature-mix layer
  int n_classes = 1000;
  // Empty, or one expand index per depth choice (CompOFA couples e to depth).
  std::vector<int> expand_by_depth;

  // Throws std::invalid_argument naming the offending field.
  void validate() const;

  int n_stages() const { return static_cast<int>(stages.size()); }
  int n_slots() const;
  // Compact encoding of one subnet, one uint8 per column:
  //   [resolution index, depth index x n_stages, kernel index x n_slots, expand index x n_slots]
  int n_columns() const { return 1 + n_stages() + 2 * n_slots(); }
  int col_depth(int stage) const { return 1 + stage; }
  int col_kernel(int slot) const { return 1 + n_stages() + slot; }
  int col_expand(int slot) const { return 1 + n_stages() + n_slots() + slot; }
  bool coupled() const { return !expand_by_depth.empty(); }
};

// OFA's channel rounding (make_divisible with divisor 8).
int make_divisible(double v, int divisor = 8);
// Middle (expanded) width of an MBConv block.
int middle_width(int c_in, double expand);
// Spatial size after a layer of the given stride with "same" padding.
inline int out_size(int f, int stride) { return (f - 1) / stride + 1; }

}  // namespace moofa
