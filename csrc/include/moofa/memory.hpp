// Exact peak-memory / FLOPs / parameter evaluator, table driven.
//
// Every block slot's figures depend only on (resolution, kernel, expand) of that
// slot, because the block's input/output widths and feature sizes are fixed by the
// space. So the constructor tabulates each slot once, and evaluating a subnet is a
// handful of table look-ups: tens of millions of configs per second.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "moofa/space.hpp"
#include "moofa/tflm.hpp"

namespace moofa {

// Sums of squares of layer figures need more than 64 bits.
#ifdef __SIZEOF_INT128__
__extension__ typedef __int128 Wide;
#else
typedef long double Wide;
#endif

enum class MemoryModel : int {
  kFull = 0,         // input + output + weights of each conv layer (the paper)
  kActivations = 1,  // input + output only; weights stay in flash (MCUNet)
  // TensorFlow Lite Micro's arena head (bytes) for the int8 graph moofa.export.tflite
  // writes (see tflm.hpp); the histogram, MFLOPs and params are those of kActivations.
  kTflm = 2,
};

struct Profile {
  int64_t peak = 0;
  std::vector<int64_t> hist;  // per layer, forward order
  double avg = 0.0;
  double std = 0.0;
  // avg / max(hist): how much of its largest layer the average layer uses, in (0, 1]
  // (1 when every layer needs the same memory). See docs/uniformity.md.
  double uniformity = 0.0;
  double mflops = 0.0;
  int64_t params = 0;
};

class Evaluator {
 public:
  Evaluator(const SpaceSpec& space, MemoryModel model);

  const SpaceSpec& space() const { return space_; }
  MemoryModel model() const { return model_; }
  int n_columns() const { return space_.n_columns(); }
  // Longest possible histogram (all slots active, every layer present).
  int max_layers() const { return max_layers_; }

  // Row checks (the space's RowCheck): -1 if the row is valid, else the first offending column.
  int invalid_column(const uint8_t* row) const { return check_.invalid_column(row); }
  // Batch check: index of the first invalid row (or -1) and its column.
  std::ptrdiff_t first_invalid(const uint8_t* rows, std::size_t n, int* column) const {
    return check_.first_invalid(rows, n, column);
  }

  int64_t peak(const uint8_t* row) const;
  int64_t params(const uint8_t* row) const;
  double mflops(const uint8_t* row) const;
  // mean(hist) / max(hist) of the row's histogram (Profile::uniformity), without building it
  // when the integer moments are exact.
  double uniformity(const uint8_t* row) const;
  Profile profile(const uint8_t* row) const;
  // Writes the histogram into hist (max_layers() entries, zero padded); returns its length.
  int histogram(const uint8_t* row, int64_t* hist) const;

  // Batched versions; threads <= 0 means all hardware threads. Each row is checked
  // before it is evaluated: the result is the index of the first invalid row (its column
  // in *column), whose output and the outputs after it are unspecified, or -1.
  std::ptrdiff_t peaks(const uint8_t* rows, std::size_t n, int64_t* out, int threads,
                       int* column) const;
  std::ptrdiff_t profiles(const uint8_t* rows, std::size_t n, int64_t* peak, double* avg,
                          double* std, double* mflops, int64_t* params, int64_t* hist,
                          int32_t* n_layers, int threads, int* column,
                          double* uniformity = nullptr) const;

  // Smallest peak any subnet of the space can have, and one subnet that has it. With
  // kTflm: the head of the subnet with the smallest lower bound (an achievable head, at
  // least the smallest one).
  int64_t min_peak(std::vector<uint8_t>* row = nullptr) const;

  // The peak is separable: max(fixed_peak(r), slot_peak(...) of every active slot).
  // The search uses these to keep its operators inside a peak budget. With kTflm they are
  // lower bounds (the most bytes alive at once in each part of the graph) and peak() is
  // the exact head: the search's final check is peak() itself.
  int64_t fixed_peak(int r) const { return fixed_peak_[r]; }
  int64_t slot_peak(int slot, int r, int k, int e) const {
    return slot_peak_[slot_index(slot, r, k, e)];
  }
  int stage_first_slot(int stage) const { return stage_first_slot_[stage]; }
  // MACs and parameters are sums too: fixed part plus one figure per active slot.
  int64_t fixed_macs(int r) const { return fixed_macs_[r]; }
  int64_t slot_macs(int slot, int r, int k, int e) const {
    return slot_macs_[slot_index(slot, r, k, e)];
  }
  int64_t fixed_params() const { return fixed_params_; }
  int64_t slot_params(int slot, int k, int e) const {
    return slot_params_[(static_cast<std::size_t>(slot) * n_k_ + k) * n_e_ + e];
  }

 private:
  std::size_t slot_index(int slot, int r, int k, int e) const {
    return ((static_cast<std::size_t>(slot) * n_res_ + r) * n_k_ + k) * n_e_ + e;
  }
  int expand_of(const uint8_t* row, int stage, int slot) const;
  template <bool Coupled>
  int64_t peak_impl(const uint8_t* row) const;
  // peak, avg, std, mflops, params and layer count in one pass over the row, no
  // histogram (only when moments_exact_).
  void summary(const uint8_t* row, int64_t* peak, double* avg, double* std, double* mflops,
               int64_t* params, int32_t* n_layers, double* uniformity = nullptr) const;

  int64_t tflm_head(const uint8_t* row) const;

  SpaceSpec space_;
  MemoryModel model_;
  std::shared_ptr<const TflmGraph> tflm_;  // kTflm only
  RowCheck check_;
  // Integer moments of the layer figures fit 128 bits (so avg and std come from tables).
  bool moments_exact_ = false;
  int n_res_ = 0, n_k_ = 0, n_e_ = 0, n_slots_ = 0, max_layers_ = 0;
  std::vector<int> stage_first_slot_;
  std::vector<int> stage_max_depth_;
  std::vector<int> depth_value_;  // depth choice index -> depth
  // Block peaks reordered [r][slot][k][e] so one config touches one contiguous block.
  std::vector<int64_t> peak_by_res_;
  // Per slot and (r, k, e): number, sum and sum of squares of the layer figures, so
  // avg and std come without building the histogram (exact integer moments).
  std::vector<int32_t> slot_count_;
  std::vector<int64_t> slot_sum_;
  std::vector<Wide> slot_sumsq_;
  std::vector<int32_t> fixed_count_;
  std::vector<int64_t> fixed_sum_;
  std::vector<Wide> fixed_sumsq_;
  // Per slot and (r, k, e): the three layer figures (0 where absent) and the max.
  std::vector<int64_t> slot_layers_;  // [slot][r][k][e][3]
  std::vector<int64_t> slot_peak_;    // [slot][r][k][e]
  // Largest layer figure per slot cell and fixed part per resolution: slot_peak_ and
  // fixed_peak_ before kTflm turns those into arena bounds (uniformity reads the histogram).
  std::vector<int64_t> slot_layer_max_;   // [slot][r][k][e]
  std::vector<int64_t> fixed_layer_max_;  // [r]
  std::vector<int64_t> slot_macs_;        // [slot][r][k][e]
  std::vector<int64_t> slot_params_;      // [slot][k][e] (params do not depend on r)
  // Fixed layers per resolution: first conv, first block (2-3 layers), final expand.
  std::vector<std::vector<int64_t>> head_layers_;  // [r] -> layers before the stages
  std::vector<int64_t> tail_layer_;                // [r] final expand
  std::vector<int64_t> fixed_peak_;                // [r] max of head and tail
  std::vector<int64_t> fixed_macs_;                // [r]
  int64_t fixed_params_ = 0;
};

MemoryModel memory_model_from_name(const std::string& name);

}  // namespace moofa
