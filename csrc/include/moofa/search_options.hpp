// What the single-objective evolution (search.hpp) and NSGA-II (pareto.hpp) share: the
// constraints a subnet must meet, the options both searches take (with their defaults:
// the bindings and the Python facade read them from here), and how a scorer stops a
// search early.
#pragma once

#include <cmath>
#include <cstdint>
#include <exception>
#include <limits>
#include <memory>

namespace moofa {

class AdditiveCost;  // moofa/latency.hpp

struct Constraints {
  int64_t max_peak = std::numeric_limits<int64_t>::max();  // items, in the evaluator's memory model
  double max_mflops = std::numeric_limits<double>::infinity();
  int64_t max_params = std::numeric_limits<int64_t>::max();
  // Smallest Evaluator::uniformity (mean / max of the layer histogram) allowed, in [0, 1].
  double min_uniformity = 0.0;

  bool limits_mflops() const { return std::isfinite(max_mflops); }
  bool limits_params() const { return max_params != std::numeric_limits<int64_t>::max(); }
  bool limits_uniformity() const { return min_uniformity > 0.0; }
  // Optional additive cost (a measured latency table, moofa/latency.hpp) and its limit in ms:
  // a subnet fits when latency->cost(row) <= max_latency_ms.
  std::shared_ptr<const AdditiveCost> latency;
  double max_latency_ms = std::numeric_limits<double>::infinity();
  bool limits_latency() const { return latency != nullptr; }
  // Throws std::invalid_argument naming the field and its allowed range.
  void validate() const;
};

// Options of both searches. Each search's own options derive from it.
struct SearchOptions {
  static constexpr int kMaxGenerations = (1 << 27) - 1;  // random stream ids hold 28 bits
  static constexpr int kMaxThreads = 4096;

  int population = 100;
  int generations = 500;
  double mutation_ratio = 0.5;          // share of children bred by mutation, the rest by crossover
  double mutate_prob = 0.1;             // per slot and per stage depth
  double resolution_mutate_prob = 0.5;  // input resolution
  uint64_t seed = 0;
  int threads = 0;  // 0: auto (all cores from population 512, else 1); see search_threads
  bool parallel_scoring = true;  // split batches across threads (false: one call from the caller)
  int max_tries = 100;           // draws per child before that child is given up
  int64_t max_evaluations = 0;   // stop once this many configs were scored (0: no limit)

 protected:
  // Throws std::invalid_argument naming the field and its allowed range.
  void validate_shared(int min_population, int max_population) const;
};

struct EvolutionOptions : SearchOptions {
  static constexpr int kMinPopulation = 1;
  static constexpr int kMaxPopulation = (1 << 27) - 1;

  double parent_ratio = 0.25;
  int resolution_niche = 1;  // parents kept per input resolution before the rest by score (0: OFA)
  // Generations without a better best after which the population is drawn afresh (the best
  // found is kept in the result): independent tries at other basins. 0: never.
  int restart_patience = 0;
  // Parents kept per structure (input resolution and the depths of the first two stages)
  // before the rest by score, during the first depth_niche_share of the generations; the
  // later ones tune the best structures by plain truncation (and the resolution niche).
  // 0: no structure niche.
  int depth_niche = 1;
  double depth_niche_share = 0.5;
  // After the last generation, the structure polish of the best subnet found at each input
  // resolution: every vector of stage depths within polish_radius stage changes of its own,
  // the best polish_keep of them per resolution tuned slot by slot (coordinate ascent over
  // the choices that fit; see search.cpp). 0: no polish.
  int polish_radius = 0;
  int polish_keep = 4;

  void validate() const;
};

struct ParetoOptions : SearchOptions {
  static constexpr int kMinPopulation = 2;
  // Each generation sorts 2 x population members into fronts: with three objectives about
  // 2 s a generation at this size on one core; far beyond it, minutes.
  static constexpr int kMaxPopulation = 100000;

  ParetoOptions() { generations = 200; }

  bool minimize_mflops = false;  // third objective
  // Another objective (maximised): Evaluator::uniformity.
  bool maximize_uniformity = false;

  void validate() const;
};

// A scorer may throw this to end a search early (e.g. on Ctrl-C inside a Python
// predictor): the batch it was scoring is dropped, and the search returns what it found
// before, with stopped set.
class SearchStopped : public std::exception {
 public:
  const char* what() const noexcept override { return "the search was stopped by its scorer"; }
};

}  // namespace moofa
