// Multi-objective search: the front of predicted accuracy vs. peak memory (and
// optionally MFLOPs and/or memory uniformity) in one run, by NSGA-II (Deb et al. 2002) with the
// same constraint-aware operators as the single-objective evolution.
//
// Two additions over textbook NSGA-II: the initial population is stratified over peak
// budgets from the space's smallest peak (included) to its largest (random subnets would
// crowd the middle), and the returned front is the non-dominated set of *every* subnet scored
// during the run, not only of the last population.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <vector>

#include "moofa/memory.hpp"
#include "moofa/scorer.hpp"
#include "moofa/search_options.hpp"

namespace moofa {

struct ParetoResult {
  // The front, sorted by peak (then by score, best first): canonical rows.
  std::vector<uint8_t> rows;
  std::vector<float> scores;
  std::vector<int64_t> peaks;
  std::vector<double> mflops;
  std::vector<double> uniformity;  // Evaluator::uniformity of each front row
  int64_t evaluations = 0;
  int64_t candidates = 0;
  int64_t rejected = 0;
  int64_t duplicates = 0;
  int generations_run = 0;
  bool stopped = false;
};

ParetoResult nsga2(const Evaluator& evaluator, const Scorer& scorer, const Constraints& constraints,
                   const ParetoOptions& options,
                   const std::function<bool(int)>& on_generation = {});

// Non-dominated sorting (minimisation): the front index of each of n points of m
// objectives (objectives: n x m, row-major, no NaN). Front 0 holds the points nothing
// dominates, front k + 1 those only front 0..k dominate. O(n) extra memory; time
// O(n log n) for m = 2, at most O(n^2 m) beyond.
std::vector<int> front_ranks(const double* objectives, std::size_t n, int m);

// Indices of the points no other point dominates (higher score, lower peak, and, when
// given, lower MFLOPs and higher uniformity), ordered by peak then score (best first). Of
// points with identical objectives only the first (lowest index) is kept.
std::vector<std::size_t> non_dominated(const float* scores, const int64_t* peaks,
                                       const double* mflops, std::size_t n,
                                       const double* uniformity = nullptr);

}  // namespace moofa
