#include "moofa/search.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <stdexcept>
#include <string>

#include "breeding.hpp"

namespace moofa {

EvolutionResult evolve(const Evaluator& evaluator, const Scorer& scorer,
                       const Constraints& constraints, const EvolutionOptions& options,
                       const std::function<bool(int)>& on_generation) {
  options.validate();
  require_same_encoding(evaluator, scorer);
  const Variation var(evaluator, constraints, options.mutate_prob, options.resolution_mutate_prob);
  // After a restart the population works at one input resolution (no resolution mutation).
  const Variation var_focus(evaluator, constraints, options.mutate_prob, 0.0);
  const std::size_t n_res = evaluator.space().resolutions.size();
  const std::size_t cols = static_cast<std::size_t>(evaluator.n_columns());
  const int n_parents =
      std::max(1, static_cast<int>(std::lround(options.parent_ratio * options.population)));
  const int n_mutants = static_cast<int>(std::lround(options.mutation_ratio * options.population));
  const int64_t eval_limit = options.max_evaluations > 0 ? options.max_evaluations : INT64_MAX;

  EvolutionResult result;
  BreedStats stats;
  RowSet seen(static_cast<int>(cols));
  // At most population configs per generation are scored (capped: a reservation is only a hint).
  const int64_t expected = std::min<int64_t>(
      {int64_t{options.population} * (options.generations + 1), eval_limit, int64_t{1} << 21});
  seen.reserve(static_cast<std::size_t>(expected));
  const int threads = search_threads(options.threads, options.population);
  WorkerPool pool(threads);
  Brood brood;
  std::vector<float> child_scores;

  auto brood_size = [&]() {
    return static_cast<std::size_t>(
        std::min<int64_t>(options.population, eval_limit - result.evaluations));
  };
  // False when the scorer stopped the search (the brood is then dropped).
  auto score_brood = [&]() {
    child_scores.resize(brood.size);
    try {
      score_rows(scorer, brood.keys.data(), brood.size, child_scores.data(), pool,
                 options.parallel_scoring, threads);
    } catch (const SearchStopped&) {
      result.stopped = true;
      return false;
    }
    result.evaluations += static_cast<int64_t>(brood.size);
    return true;
  };

  // The population: rows as bred, canonical keys, scores; parents first, then children.
  std::vector<uint8_t> pop_rows, pop_keys;
  std::vector<float> pop_scores;
  std::vector<uint8_t> par_rows, par_keys;
  std::vector<float> par_scores;
  std::vector<std::size_t> order, picked;
  std::vector<int> per_res;
  std::vector<char> reserved;
  std::vector<float> res_best(n_res, -std::numeric_limits<float>::infinity());
  std::vector<int> epochs_at(n_res, 0);  // epochs spent on each resolution
  int focus = -1;                        // resolution of the current epoch (-1: all)
  // Best first; ties in population order, as a stable sort would leave them (std::sort
  // with the index as tie-break gives that order without a stable sort's buffer).
  auto better = [&](std::size_t a, std::size_t b) {
    return pop_scores[a] > pop_scores[b] || (pop_scores[a] == pop_scores[b] && a < b);
  };

  auto absorb_brood = [&]() {
    pop_rows.insert(pop_rows.end(), brood.rows.begin(), brood.rows.end());
    pop_keys.insert(pop_keys.end(), brood.keys.begin(), brood.keys.end());
    for (std::size_t i = 0; i < brood.size; ++i) {
      pop_scores.push_back(child_scores[i]);
      float& rb = res_best[brood.keys[i * cols]];
      rb = std::max(rb, child_scores[i]);
      // Strictly better only: among equal scores the first found stays the best.
      if (child_scores[i] > result.best_score || result.best_row.empty()) {
        result.best_score = child_scores[i];
        result.best_row.assign(brood.keys.begin() + i * cols, brood.keys.begin() + (i + 1) * cols);
      }
    }
    result.history.push_back(result.best_score);
  };

  const uint64_t seed = options.seed;
  breed(
      var, seen, brood_size(), seed, /*phase=*/1, 0, pool, options.max_tries,
      [&](std::size_t, Rng& rng, int, uint8_t* out) {
        return var.sample(rng, constraints.max_peak, out);
      },
      &brood, &stats);
  require_initial_population(brood.size);
  bool go_on = score_brood();  // when stopped here, nothing was scored: no best row
  if (go_on) {
    absorb_brood();
    go_on = !on_generation || on_generation(0);
  }
  result.stopped = !go_on;

  int last_better = 0;  // generation of the last new best
  float best_before = result.best_score;
  for (int g = 1; go_on && g <= options.generations && result.evaluations < eval_limit; ++g) {
    if (options.restart_patience > 0 && g - last_better > options.restart_patience) {
      // Stuck: a fresh random population (the best found stays in the result), so the
      // remaining generations try other basins instead of polishing a local optimum. The
      // budget ties every gene to the input resolution, and each resolution has its own
      // basins: the new population works at the resolution least tried so far (the
      // first epoch counts for its best's), the most promising first among equals.
      if (focus < 0 && !result.best_row.empty()) ++epochs_at[result.best_row[0]];
      focus = -1;
      for (int r : var.feasible_resolutions())
        if (focus < 0 || epochs_at[r] < epochs_at[focus] ||
            (epochs_at[r] == epochs_at[focus] && res_best[r] > res_best[focus]))
          focus = r;
      if (focus >= 0) ++epochs_at[focus];
      breed(
          var, seen, brood_size(), seed, /*phase=*/3, static_cast<uint64_t>(g), pool,
          options.max_tries,
          [&](std::size_t, Rng& rng, int, uint8_t* out) {
            return var.sample(rng, constraints.max_peak, out, focus);
          },
          &brood, &stats);
      if (brood.size == 0) break;
      if (!score_brood()) break;
      pop_rows.clear();
      pop_keys.clear();
      pop_scores.clear();
      absorb_brood();
      last_better = g;
      best_before = result.best_score;
      result.generations_run = g;
      if (on_generation && !on_generation(g)) {
        result.stopped = true;
        break;
      }
      continue;
    }
    // Truncation selection: the best n_parents survive (stable: older first on ties),
    // except that the best resolution_niche of each input resolution are kept first. The
    // budget ties every gene to the resolution, so a population tuned at one resolution
    // rarely crosses to another whose own optimum is better; niches keep those lineages.
    const std::size_t n_pop = pop_scores.size();
    order.resize(n_pop);
    std::iota(order.begin(), order.end(), std::size_t{0});
    std::sort(order.begin(), order.end(), better);
    const std::size_t n_par = std::min<std::size_t>(static_cast<std::size_t>(n_parents), n_pop);
    if (options.resolution_niche > 0) {
      per_res.assign(evaluator.space().resolutions.size(), 0);
      reserved.assign(n_pop, 0);
      picked.clear();
      for (std::size_t i : order) {
        if (picked.size() == n_par) break;
        if (per_res[pop_keys[i * cols]]++ < options.resolution_niche) {
          reserved[i] = 1;
          picked.push_back(i);
        }
      }
      for (std::size_t i : order) {
        if (picked.size() == n_par) break;
        if (!reserved[i]) picked.push_back(i);
      }
      // Stable by score (ties keep the pick order): insertion sort, n_par is small.
      for (std::size_t i = 1; i < picked.size(); ++i)
        for (std::size_t j = i; j > 0 && pop_scores[picked[j]] > pop_scores[picked[j - 1]]; --j)
          std::swap(picked[j], picked[j - 1]);
      std::copy(picked.begin(), picked.end(), order.begin());
    }
    par_rows.resize(n_par * cols);
    par_keys.resize(n_par * cols);
    par_scores.resize(n_par);
    for (std::size_t i = 0; i < n_par; ++i) {
      std::copy_n(pop_rows.begin() + order[i] * cols, cols, par_rows.begin() + i * cols);
      std::copy_n(pop_keys.begin() + order[i] * cols, cols, par_keys.begin() + i * cols);
      par_scores[i] = pop_scores[order[i]];
    }
    const int np = static_cast<int>(n_par);
    breed(
        var, seen, brood_size(), seed, /*phase=*/2, static_cast<uint64_t>(g), pool,
        options.max_tries,
        [&](std::size_t i, Rng& rng, int failures, uint8_t* out) {
          // A child that keeps landing on scored subnets mutates harder, so a converged
          // population still breeds new candidates instead of re-scoring old ones.
          const Variation& v = focus >= 0 ? var_focus : var;
          if (static_cast<int>(i) < n_mutants)
            return v.mutate(par_rows.data() + rng.below(np) * cols, rng, out, 1.0 + failures);
          const uint8_t* a = par_rows.data() + rng.below(np) * cols;
          const uint8_t* b = par_rows.data() + rng.below(np) * cols;
          return v.crossover(a, b, rng, out, failures);
        },
        &brood, &stats);
    if (brood.size == 0) break;  // every reachable subnet near the parents was scored already
    if (!score_brood()) break;
    pop_rows.swap(par_rows);
    pop_keys.swap(par_keys);
    pop_scores.swap(par_scores);
    absorb_brood();
    if (result.best_score > best_before) {
      best_before = result.best_score;
      last_better = g;
    }
    result.generations_run = g;
    if (on_generation && !on_generation(g)) {
      result.stopped = true;
      break;
    }
  }

  result.candidates = stats.candidates;
  result.rejected = stats.rejected;
  result.duplicates = stats.duplicates;
  if (!result.best_row.empty()) result.best_peak = evaluator.peak(result.best_row.data());
  return result;
}

}  // namespace moofa
