// Exact optimum of a linear model or a ReLU MLP predictor under the constraints.
//
// Under a decomposable memory model ("full", "activations") the peak is a max over
// layers and every block slot's layers depend only on its own (kernel, expand), the
// resolution and its position: for one resolution the subnets fitting a peak budget
// are a product of per-slot choice sets (per stage: a depth, then a choice for each
// active slot). The predictor's first layer is a sum of one row per active slot, so
// a branch and bound over (resolution, stage depth, slot choice) with a separable upper
// bound finds the best subnet and proves it:
//
//   every first-layer unit's pre-activation z lies in an exact interval [l, u] over the
//   subnets below a node; w * relu(z) is then at most a linear function of z (the chord
//   of relu on [l, u] when w > 0, w * alpha * z with alpha in {0, 1} when w < 0), and a
//   linear function of the first layer is a sum of per-slot terms whose maximum is taken
//   stage by stage (best depth, then the best choice of each active slot). Deeper nets:
//   interval arithmetic carries [l, u] through the later layers, and one backward pass
//   from the output relaxes every ReLU the same way (by the sign of the coefficient that
//   reaches it) down to a linear function of the first layer.
//
// The search lists the structures (resolution and stage depths) whose bound beats the
// incumbent, makes one greedy descent into each (best bound first), then searches them
// in full, best bound first.
//
// MFLOPs and parameters are sums over the active slots: nodes that cannot meet them
// are cut, and every leaf is checked by the evaluator. Bounds are computed in double.
#pragma once

#include <cstdint>
#include <functional>
#include <limits>
#include <vector>

#include "moofa/memory.hpp"
#include "moofa/predictor.hpp"
#include "moofa/search_options.hpp"

namespace moofa {

struct OptimumOptions {
  double time_limit = 0.0;         // seconds, 0: none (the answer is then proven)
  int64_t max_nodes = 0;           // 0: no limit
  std::vector<uint8_t> start_row;  // empty, or a subnet to start from (an incumbent)
  // Called every 256 nodes when set; false stops the search (the answer is then not
  // proven). For Ctrl-C from a caller's event loop.
  std::function<bool()> keep_going;
};

struct OptimumResult {
  std::vector<uint8_t> best_row;  // canonical; empty when no subnet meets the constraints
  double best_score = -std::numeric_limits<double>::infinity();
  // True when the search finished: no subnet meeting the constraints scores higher.
  bool proven_optimal = false;
  // Upper bound on the score of any subnet meeting the constraints (== best_score when
  // proven; larger when the time or node limit stopped the search).
  double upper_bound = std::numeric_limits<double>::infinity();
  int64_t nodes = 0;  // branch-and-bound nodes visited
};

// The predictor: offset + scale * y with y a ReLU MLP of the one-hot input plus the sum
// of the selected skip weights: layers [W_0 (features x H_1), ..., W_n (H_n x 1)], ReLU
// after every layer but the last; one layer (features x 1) is a linear model. Throws
// std::invalid_argument for bad shapes, non-finite weights, an evaluator whose peak is
// not separable (the "tflm" model) or a bad start_row.
OptimumResult mlp_optimum(const Evaluator& evaluator, const Constraints& constraints,
                          const std::vector<DenseLayer>& layers, const std::vector<float>& skip,
                          float scale, float offset, const OptimumOptions& options = {});

}  // namespace moofa
