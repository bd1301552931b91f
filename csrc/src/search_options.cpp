#include "moofa/search_options.hpp"

#include <string>

#include "require.hpp"

namespace moofa {

using detail::require;

namespace {

std::string range(long long lo, long long hi) {
  return "[" + std::to_string(lo) + ", " + std::to_string(hi) + "]";
}

void require_probability(double p, const char* name) {
  require(p >= 0.0 && p <= 1.0, std::string(name) + " must be in [0, 1]");
}

}  // namespace

void Constraints::validate() const {
  require(max_peak >= 1, "max_peak must be at least 1 item");
  require(max_mflops > 0, "max_mflops must be a positive number (or infinity: no limit)");
  require(max_params >= 1, "max_params must be at least 1");
  require(min_uniformity >= 0.0 && min_uniformity <= 1.0,
          "min_uniformity must be in [0, 1] (0: no limit)");
  require(!limits_latency() || max_latency_ms > 0,
          "max_latency_ms must be a positive number of milliseconds (or infinity: no limit)");
}

void SearchOptions::validate_shared(int min_population, int max_population) const {
  require(population >= min_population && population <= max_population,
          "population must be in " + range(min_population, max_population));
  require(generations >= 0 && generations <= kMaxGenerations,
          "generations must be in " + range(0, kMaxGenerations));
  require_probability(mutation_ratio, "mutation_ratio");
  require_probability(mutate_prob, "mutate_prob");
  require_probability(resolution_mutate_prob, "resolution_mutate_prob");
  require(threads >= 0 && threads <= kMaxThreads,
          "threads must be in " + range(0, kMaxThreads) + " (0: auto)");
  require(max_tries >= 1, "max_tries must be at least 1");
  require(max_evaluations >= 0, "max_evaluations must be >= 0 (0: no limit)");
}

void EvolutionOptions::validate() const {
  validate_shared(kMinPopulation, kMaxPopulation);
  require(parent_ratio > 0.0 && parent_ratio <= 1.0, "parent_ratio must be in (0, 1]");
  require(resolution_niche >= 0, "resolution_niche must be >= 0");
  require(restart_patience >= 0, "restart_patience must be >= 0 (0: never restart)");
  require(depth_niche >= 0, "depth_niche must be >= 0 (0: no structure niche)");
  require(depth_niche_share >= 0.0 && depth_niche_share <= 1.0,
          "depth_niche_share must be in [0, 1]");
  require(polish_radius >= 0, "polish_radius must be >= 0 (0: no polish)");
  require(polish_keep >= 1, "polish_keep must be at least 1");
}

void ParetoOptions::validate() const { validate_shared(kMinPopulation, kMaxPopulation); }

}  // namespace moofa
