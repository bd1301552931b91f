// Evolutionary search for the best-scoring subnet under constraints (OFA's evolution).
//
// Each generation keeps the best parent_ratio of the population, then breeds
// population children: mutation_ratio of them by mutating a random parent, the rest by
// uniform crossover of two random parents. Every child fits the constraints (checked
// by the Evaluator) and is new: configs already scored are never scored again. Each
// generation's children are scored together: one batch, or with parallel_scoring one
// part per thread. Parents are kept first per input resolution (resolution_niche) and,
// during the first depth_niche_share of the generations, per structure (resolution and the
// first two stage depths: depth_niche); with polish_radius > 0 a structure polish tunes the
// best subnets after the last generation (search_options.hpp, search.cpp).
//
// Deterministic for a seed whatever the thread count: child i of generation g draws
// from its own random stream (seed, g, i), and duplicates are resolved in child order.
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "moofa/memory.hpp"
#include "moofa/scorer.hpp"
#include "moofa/search_options.hpp"

namespace moofa {

struct EvolutionResult {
  std::vector<uint8_t> best_row;  // canonical encoding (idle slots reset)
  float best_score = 0.0f;
  int64_t best_peak = 0;
  std::vector<float> history;  // best score after the initial population and after each generation
  int64_t evaluations = 0;     // configs scored (all distinct)
  int64_t candidates = 0;      // configs generated and checked against the constraints
  int64_t rejected = 0;        // candidates that broke a constraint
  int64_t duplicates = 0;      // candidates already scored
  int generations_run = 0;     // < generations when stopped or when no new config could be bred
  bool stopped = false;        // on_generation or the scorer asked to stop
};

// on_generation(g) runs after generation g (0: the initial population); returning
// false stops the search with the best found so far, as does a scorer throwing
// SearchStopped (best_row stays empty when that happens to the initial population).
// With options.parallel_scoring (and more than one thread), a generation's batch is
// split across the search's threads: the scorer is called from several threads at once;
// without, once per generation from the calling thread.
EvolutionResult evolve(const Evaluator& evaluator, const Scorer& scorer,
                       const Constraints& constraints, const EvolutionOptions& options,
                       const std::function<bool(int)>& on_generation = {});

// Steepest ascent from a subnet over its single-gene neighbours: every other input
// resolution (the rest unchanged), every other depth of each stage (newly active slots take
// their first choice under the peak budget), every other (kernel, expand) of each active
// slot (kernel only in a coupled space). Neighbours that break a constraint are left out,
// and none is scored twice. Each step moves to the best strictly better neighbour (ties:
// the first in that order) until none is better or max_evaluations scores were spent (0:
// no limit). The search runs it after the evolution and the dive: both can stop one
// gene short of a better subnet (e.g. at another resolution).
struct ClimbResult {
  std::vector<uint8_t> row;  // canonical
  float score = 0.0f;
  int64_t evaluations = 0;  // scorer calls' rows, start included
  int steps = 0;            // moves made
  bool stopped = false;     // the scorer threw SearchStopped (row: the best before)
};
// start must be a valid row that meets the constraints; threads: 0 to
// SearchOptions::kMaxThreads.
ClimbResult climb(const Evaluator& evaluator, const Scorer& scorer, const Constraints& constraints,
                  const uint8_t* start, int64_t max_evaluations, int threads = 1);

// Independent evolutions ("islands"), one per seed, each on its own thread, and a race:
// every island runs race_generation generations, then only the survivors with the best
// scores at that point (ties: the first seed) go on to options.generations. With deep
// predictors an island settles in one basin early, and its best score after a few
// generations tells the good basins from the bad ones, so a race of many short starts
// finds the best basin more often than a few full evolutions for the same evaluations.
// survivors == seeds.size() (or race_generation 0 with it) runs every island to the end.
// Each island is evolve(options with its seed); options.max_evaluations caps each island.
struct IslandOptions {
  std::vector<uint64_t> seeds;  // one island per seed; 1 to kMaxIslands
  int race_generation = 0;      // 1 to options.generations when survivors < islands
  int survivors = 1;            // 1 to the number of islands

  static constexpr int kMaxIslands = 1024;
  // Throws std::invalid_argument naming the field and its allowed range.
  void validate(const EvolutionOptions& options) const;
};

// The best island's row and score; history: the best over the islands after each
// generation; evaluations, candidates, rejected and duplicates: sums over the islands;
// generations_run: the longest island's; stopped: on_generation or the scorer asked to
// stop (islands that lose the race do not count). on_generation is called from the
// islands' threads one at a time, with each island's own generation.
EvolutionResult evolve_islands(const Evaluator& evaluator, const Scorer& scorer,
                               const Constraints& constraints, const EvolutionOptions& options,
                               const IslandOptions& islands,
                               const std::function<bool(int)>& on_generation = {});

}  // namespace moofa
