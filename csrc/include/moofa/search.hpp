// Evolutionary search for the best-scoring subnet under constraints (OFA's evolution).
//
// Each generation keeps the best parent_ratio of the population, then breeds
// population children: mutation_ratio of them by mutating a random parent, the rest by
// uniform crossover of two random parents. Every child fits the constraints (checked
// by the Evaluator) and is new: configs already scored are never scored again. The
// scorer sees each generation's children as one batch.
//
// Deterministic for a seed whatever the thread count: child i of generation g draws
// from its own random stream (seed, g, i), and duplicates are resolved in child order.
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "moofa/memory.hpp"
#include "moofa/scorer.hpp"
#include "moofa/variation.hpp"

namespace moofa {

struct EvolutionOptions {
  int population = 100;
  int generations = 500;
  double parent_ratio = 0.25;
  double mutation_ratio = 0.5;
  double mutate_prob = 0.1;             // per slot and per stage depth
  double resolution_mutate_prob = 0.5;  // input resolution
  uint64_t seed = 0;
  int threads = 0;  // <= 0: auto (all cores from population 512, else 1); see search_threads
  bool parallel_scoring =
      true;  // split batches across threads (false: call the scorer from this thread)
  int resolution_niche = 1;  // parents kept per input resolution before the rest by score (0: OFA)
  int max_tries = 100;       // draws per child before that child is given up
  int64_t max_evaluations = 0;  // stop once this many configs were scored (0: no limit)

  // Throws std::invalid_argument naming the field.
  void validate() const;
};

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
  bool stopped = false;        // on_generation asked to stop
};

// on_generation(g) runs after generation g (0: the initial population); returning
// false stops the search with the best found so far. The scorer is called from the
// calling thread only.
EvolutionResult evolve(const Evaluator& evaluator, const Scorer& scorer,
                       const Constraints& constraints, const EvolutionOptions& options,
                       const std::function<bool(int)>& on_generation = {});

}  // namespace moofa
