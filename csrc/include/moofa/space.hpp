// Search-space description shared by the evaluator, the predictor and the search, and
// the one owner of the compact row encoding: its column layout, its checks and the
// one-hot layout of the predictors. Plain data: no Python, no I/O.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace moofa {

struct StageSpec {
  int width = 0;
  int stride = 1;
  bool se = false;
  int max_depth = 4;
  // h-swish activations (a separate op in the int8 graph): only the "tflm" memory model
  // reads them; they change neither the encoding nor the other figures.
  bool hard_swish = false;
};

// Where a column block of the encoding starts: [resolution | depths | kernels | expands].
struct ColumnOffsets {
  int resolution = 0;
  int depth = 1;
  int kernel = 0;
  int expand = 0;
  int end = 0;  // == n_columns
};

struct SpaceSpec {
  std::string name;  // for messages only; not part of the space's identity
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
  // h-swish after the first conv, the first block's depthwise, and the final expand and
  // feature mix (see StageSpec::hard_swish).
  bool first_conv_hard_swish = false;
  bool first_block_hard_swish = false;
  bool head_hard_swish = false;

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
  ColumnOffsets column_offsets() const;
  bool coupled() const { return !expand_by_depth.empty(); }
  // Stage of every block slot, and the first slot of every stage.
  std::vector<int> slot_stage() const;
  std::vector<int> stage_first_slot() const;
  // Number of allowed indices of every column (choices of its field).
  std::vector<int> column_limits() const;
  // Length of the predictors' one-hot encoding: resolutions + slots * (kernels + expands);
  // kernel one-hots start at one_hot_kernel_offset(), expand one-hots after them.
  int one_hot_size() const;
  int one_hot_kernel_offset() const { return static_cast<int>(resolutions.size()); }
  int one_hot_expand_offset() const;
  // Cells of the evaluator's per-slot tables (slots x resolutions x kernels x expands).
  std::size_t table_cells() const;

  // Row checks (see RowCheck): the first bad column of a row, or -1.
  int invalid_column(const uint8_t* row) const;
  // Index of the first invalid row of a batch (or -1), and its column.
  std::ptrdiff_t first_invalid(const uint8_t* rows, std::size_t n, int* column) const;
  // Message for a bad (row, column): the field, the value and the allowed indices.
  std::string invalid_message(std::size_t row, int column, const uint8_t* row_data) const;
  // Field name of a column: "image_size", "d[i]", "ks[j]" or "e[j]".
  std::string column_name(int column) const;

  // The canonical row of a config given by its values, as OFA-style tools write them:
  // ks and e per slot (n_slots() each), d per stage, the input resolution. A slot beyond
  // its stage's depth may hold 0 or any choice (it is reset); in a coupled space every
  // active slot takes the expand its stage's depth dictates, whatever e says (the finders
  // draw e on its own). False, row unspecified, when a value is not a choice.
  bool encode_values(const double* ks, const double* e, const double* d, double image_size,
                     uint8_t* row) const;
};

// Same search space: every field but the name (and, with ignore_classes, the class
// count, which changes neither the encoding nor the body a predictor scores).
bool same_space(const SpaceSpec& a, const SpaceSpec& b, bool ignore_classes = false);

// The row check of a space, precomputed for the hot paths: every column index must be
// below its field's number of choices, and in a coupled space the expand of every
// active slot must be the one its stage's depth dictates.
class RowCheck {
 public:
  explicit RowCheck(const SpaceSpec& space);
  int invalid_column(const uint8_t* row) const {
    // Branch-free over the columns (byte compares the compiler vectorises), then locate.
    const uint8_t* limit = limit_.data();
    uint8_t bad = 0;
    for (int c = 0; c < n_columns_; ++c) bad |= static_cast<uint8_t>(row[c] >= limit[c]);
    if (bad) return first_out_of_range(row);
    return coupled_ ? coupled_column(row) : -1;
  }
  std::ptrdiff_t first_invalid(const uint8_t* rows, std::size_t n, int* column) const;

 private:
  int first_out_of_range(const uint8_t* row) const;
  int coupled_column(const uint8_t* row) const;
  int n_columns_ = 0, n_stages_ = 0;
  bool coupled_ = false;
  std::vector<uint8_t> limit_;  // per column (a column's limit is at most 250)
  std::vector<int> stage_first_slot_, depth_value_, expand_by_depth_;
  int depth_col_ = 0, expand_col_ = 0;
};

// Thrown (as std::overflow_error) when a figure of a space does not fit int64.
int64_t checked_add(int64_t a, int64_t b);
int64_t checked_mul(int64_t a, int64_t b);

// OFA's channel rounding (make_divisible with divisor 8). Throws std::overflow_error
// when the result does not fit int64, std::invalid_argument for divisor < 1 or NaN.
int64_t make_divisible(double v, int64_t divisor = 8);
// Middle (expanded) width of an MBConv block.
int64_t middle_width(int64_t c_in, double expand);
// Spatial size after a layer of the given stride with "same" padding.
inline int out_size(int f, int stride) { return (f - 1) / stride + 1; }

}  // namespace moofa
