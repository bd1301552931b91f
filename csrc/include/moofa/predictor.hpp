// Batched MLP accuracy predictor over the compact uint8 encoding.
//
// The published predictors (OFA, CompOFA, MOOFA) feed a one-hot vector to an MLP:
// resolution one-hot, then per block slot a kernel one-hot, then per slot an expand
// one-hot, inactive slots (beyond the stage depth) all zero. A one-hot input times a
// matrix is a sum of selected matrix rows, so the first layer here never builds the
// one-hot vector: it adds the bias and the weight rows that a config selects.
//
//   h_1 = relu(b_0 + sum_{f in features(row)} W_0[f])
//   h_i = relu(h_{i-1} W_{i-1} + b_{i-1})                (hidden dense layers)
//   y   = h_L W_L + b_L + sum_{f in features(row)} skip[f]  (optional linear skip)
//   out = offset + scale * y
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "moofa/aligned.hpp"
#include "moofa/scorer.hpp"
#include "moofa/space.hpp"

namespace moofa {

// One dense layer in the x @ W + b convention: weight holds in x out floats, row-major.
struct DenseLayer {
  int in = 0;
  int out = 0;
  std::vector<float> weight;
  std::vector<float> bias;
};

// Instruction sets the kernels are compiled for; chosen at run time.
enum class Isa : int { kGeneric = 0, kAvx2 = 1, kAvx512 = 2 };

// Number format of the first layer's gather table. kInt16 halves its memory traffic;
// the hidden and output layers stay fp32. Accuracy against fp32 is measured in tests.
enum class Precision : int { kFloat32 = 0, kInt16 = 1 };
std::string precision_name(Precision p);
Precision precision_from_name(const std::string& name);  // "fp32", "int16"

// The widest kernel set this CPU runs.
Isa best_isa();
// The kernel set "auto" means: the environment variable MOOFA_ISA ("avx512", "avx2",
// "generic"; unset, empty or "auto": best_isa()), read at the first call. Throws
// std::invalid_argument naming the variable for another value or one this CPU lacks.
Isa default_isa();
bool isa_supported(Isa isa);
std::string isa_name(Isa isa);
Isa isa_from_name(const std::string& name);  // "auto" (default_isa()), "generic", "avx2", "avx512"

class MlpPredictor : public Scorer {
 public:
  // layers: first layer in == one_hot_size(space), last layer out == 1, ReLU between.
  // skip: empty, or one weight per one-hot feature. Throws std::invalid_argument
  // naming the field on bad shapes or non-finite values.
  MlpPredictor(const SpaceSpec& space, std::vector<DenseLayer> layers, std::vector<float> skip = {},
               float scale = 1.0f, float offset = 0.0f, Isa isa = default_isa(),
               Precision precision = Precision::kFloat32);

  void score(const uint8_t* rows, std::size_t n, float* out, int threads) const override;
  int n_columns() const override { return space_.n_columns(); }

  // Index of the first invalid row (the space's RowCheck) or -1, and its column.
  std::ptrdiff_t first_invalid(const uint8_t* rows, std::size_t n, int* column) const {
    return check_.first_invalid(rows, n, column);
  }

  const SpaceSpec* space() const override { return &space_; }
  int n_features() const { return n_features_; }
  std::vector<int> layer_sizes() const;  // n_features, hidden widths..., 1
  Isa isa() const { return isa_; }
  Precision precision() const { return precision_; }
  float scale() const { return scale_; }
  float offset() const { return offset_; }

  // Length of the one-hot encoding of a space: resolutions + slots * (kernels + expands).
  static int one_hot_size(const SpaceSpec& space) { return space.one_hot_size(); }
  // The one-hot feature indices a row selects (resolution, then kernel and expand of
  // each active slot); returns how many were written (at most 1 + 2 * n_slots).
  int features(const uint8_t* row, int32_t* out) const;

 private:
  // Weights padded to whole vector blocks so the kernels need no edge cases; 64-byte
  // aligned, and ld is a multiple of 16 floats (but 1 in the last layer, a single
  // column), so every weight row starts a cache line.
  struct PaddedLayer {
    int in = 0, out = 0;          // true sizes
    int in_pad = 0, out_pad = 0;  // padded sizes (zeros in the padding)
    int ld = 0;                   // row stride of weight (floats)
    AlignedVector<float> weight;  // in_pad rows of ld floats (first layer: in rows)
    AlignedVector<float> bias;    // out_pad
  };
  void score_range(const uint8_t* rows, std::size_t begin, std::size_t end, float* out) const;
  void build_gather_table();
  void quantise_gather_table();
  // Rows of the gather table a config adds up (one per active slot), each times
  // `stride` (the kernels take element offsets: no multiply in their inner loop);
  // returns how many.
  int gather(const uint8_t* row, int32_t* out, int32_t stride = 1) const;

  SpaceSpec space_;
  RowCheck check_;
  int n_features_ = 0;
  int n_res_ = 0, n_k_ = 0, n_e_ = 0, n_slots_ = 0;
  ColumnOffsets col_;  // the space's column layout
  // Per slot: the column of its stage's depth and its position in the stage (the slot
  // is active when that position is below the depth).
  std::vector<int> slot_depth_col_, slot_pos_, depth_value_;
  std::vector<PaddedLayer> layers_;
  std::vector<float> skip_;
  float scale_ = 1.0f, offset_ = 0.0f;
  Isa isa_ = Isa::kGeneric;
  Precision precision_ = Precision::kFloat32;
  int max_width_ = 0;
  // First layer regrouped per slot: row (k, e) of slot j is W_0[kernel k of j] +
  // W_0[expand e of j]; slot 0 (always active) also folds in the resolution row and
  // the bias. A config then adds one row per active slot instead of two plus one.
  int gather_rows_ = 0;
  // The tables are 64-byte aligned: a chunk row (32 floats, or 32 int16) then spans whole
  // cache lines, which the AVX-512 kernel's 64-byte loads need to run at full speed.
  AlignedVector<float> gather_table_;  // chunk-major, see predictor_kernels.hpp
  std::vector<float> gather_skip_;     // rows (empty without a skip)
  AlignedVector<int16_t> gather_i16_;  // the same table quantised (Precision::kInt16 only)
  std::vector<float> column_scale_;    // its per-output scale
  std::vector<float> zero_bias_;       // layers_[0].out_pad zeros (the bias is folded in)
  std::vector<int> slot_row_base_;     // first gather row of each slot
};

}  // namespace moofa
