// TensorFlow Lite Micro's arena head for moofa's int8 graph of a subnet (the graph
// moofa.export.tflite writes), from the space and the encoded row alone.
//
// Every activation is one int8 buffer (1 byte per item) rounded up to 16 bytes; its
// lifetime runs from the op that writes it to the last op that reads it in TFLM's
// allocation scopes (graph start 0, op i at i + 1); int8 MEAN asks for a scratch buffer of
// one int32 per output element during its op. TFLM's greedy planner then places the
// buffers (tensors in tensor order, then scratch buffers) largest first, equal sizes in the
// reverse of that order, each at the lowest offset that fits between the placed buffers
// whose lifetimes overlap its own; the head is the highest end offset.
//
// The graph is a chain of segments: the stem (graph input, first conv, first block), one
// per active block slot, and the tail (final expand, pooling, feature mix, classifier).
// A slot's segment depends only on (slot, resolution, kernel, expand), so the tables hold
// every segment once; a row concatenates its segments and runs the planner. The placement
// order of a row's buffers does not depend on the row either: equal sizes are broken by
// the buffer's place in the graph (scratch after tensors, then segment, then local index),
// and a row's segments keep their relative order. So every buffer a resolution's segments
// hold is ranked once, and a row's order is a scan of the ranks it uses.
#pragma once

#include <cstdint>
#include <vector>

#include "moofa/space.hpp"

namespace moofa {

constexpr int64_t kTflmAlignment = 16;

// One buffer as the planner sees it: aligned size, first and last scope.
struct TflmBuffer {
  int64_t size = 0;
  int32_t first = 0;
  int32_t last = 0;
};

struct TflmSegment;

// Reusable work arrays of the planner (one per thread).
struct TflmWork {
  struct Run {
    const TflmSegment* segment;
    int32_t tensor_base, scratch_base;
  };
  std::vector<Run> segments;
  std::vector<TflmBuffer> buffers;
  std::vector<TflmBuffer> scratch;
  std::vector<uint64_t> keys, near, present;
  std::vector<int32_t> by_rank, adj, placed;
  std::vector<int64_t> offsets;
  std::vector<int32_t> count;
};

// TFLM's greedy placement of buffers (in the order they were added); the head in bytes.
// offsets (when not null) receives each buffer's offset. At most 2^20 buffers, sizes and
// offsets below 2^43 bytes.
int64_t tflm_plan(const std::vector<TflmBuffer>& buffers, TflmWork* work,
                  std::vector<int64_t>* offsets = nullptr);

// A piece of the graph with local op indices 0..n_ops-1 that reads one input tensor (the
// previous segment's output) and whose last tensor is its output.
struct TflmSegment {
  struct Tensor {
    int64_t size;  // aligned bytes
    int32_t first, last;
  };
  struct Scratch {
    int64_t size;  // aligned bytes
    int32_t op;
  };
  int32_t n_ops = 0;
  int32_t input_last = -1;  // last local op reading the input
  int64_t input_size = 0;   // aligned bytes of the input
  std::vector<Tensor> tensors;
  std::vector<Scratch> scratch;
  // Each local buffer's (tensors, then scratch) place in the placement order of all the
  // buffers its resolution's segments can hold (TflmGraph fills it).
  std::vector<int32_t> rank;
  // Most bytes alive at once during the segment (its input included): a lower bound of
  // the head of any graph that contains the segment.
  int64_t live_peak() const;
};

// The segments of a space, tabulated; the planner per row.
class TflmGraph {
 public:
  explicit TflmGraph(const SpaceSpec& space);
  int64_t head(const uint8_t* row, TflmWork* work) const;
  // Buffers of a row in TFLM's order (tensors, then scratch), lifetimes included.
  void buffers(const uint8_t* row, std::vector<TflmBuffer>* out, TflmWork* work) const;
  // Lower bounds of the head: max(fixed_bound(r), slot_bound(...) of every active slot).
  int64_t fixed_bound(int r) const { return fixed_bound_[r]; }
  int64_t slot_bound(std::size_t cell) const { return slots_[cell].live_peak_; }

 private:
  void assemble(const uint8_t* row, std::vector<TflmBuffer>* out, TflmWork* work) const;
  struct Cell {
    TflmSegment segment;
    int64_t live_peak_ = 0;
  };
  SpaceSpec space_;
  int n_res_ = 0, n_k_ = 0, n_e_ = 0, n_slots_ = 0;
  std::vector<int> stage_first_slot_;
  std::vector<int64_t> input_size_;       // [r] aligned bytes of the graph input
  std::vector<TflmSegment> stem_, tail_;  // [r]
  std::vector<Cell> slots_;               // [slot][r][k][e]
  std::vector<int64_t> fixed_bound_;      // [r]
  std::vector<int32_t> input_rank_;       // [r] the graph input's place in the order
  std::vector<int32_t> n_ranks_;          // [r] buffers the segments of resolution r hold
  void rank_buffers(int r);
};

}  // namespace moofa
