#include "moofa/search.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <numeric>
#include <stdexcept>
#include <string>

#include "breeding.hpp"

namespace moofa {

namespace {

// Stages whose depths (with the input resolution) make a structure of the depth niche.
constexpr std::size_t kNicheStages = 2;

// The structure polish. Bases: the best subnet found at each input resolution. From each,
// every depth vector within radius stage changes (same resolution) is scored, and the
// best `keep` of them per base are improved by coordinate ascent over their active slots
// (per slot, the best of its choices that fit, the others fixed; sweeps until none moves,
// at most kSweeps), all together so that each slot's candidates form one batch. While it
// finds a better best, again from that one. The population's basins differ in the
// resolution and the depths of several stages at once, and a depth change moves a coupled
// space's expands too: jumps that single-gene mutations rarely make good. Deterministic:
// no random draws, and ties keep the first found.
void polish(const Variation& var, const Scorer& scorer, RowSet& seen,
            std::vector<float>& seen_scores, const std::vector<std::vector<uint8_t>>& bases,
            int radius, int keep, int64_t eval_limit, WorkerPool& pool, bool parallel, int threads,
            EvolutionResult* result) {
  constexpr int kSweeps = 3, kRounds = 4;
  constexpr float kNone = -std::numeric_limits<float>::infinity();
  const auto cols = static_cast<std::size_t>(var.n_columns());
  std::vector<uint8_t> cur, cand, fresh;
  std::vector<float> cur_score, cand_score, fresh_score;
  std::vector<std::size_t> owner, fresh_at;
  bool go_on = true;
  // Scores of the n rows (each fits the constraints): known ones from seen, the others
  // scored in one batch and remembered; rows past the evaluation limit stay kNone.
  auto score = [&](const std::vector<uint8_t>& rows, std::vector<float>* out) {
    const std::size_t n = rows.size() / cols;
    out->assign(n, kNone);
    fresh.clear();
    fresh_at.clear();
    for (std::size_t i = 0; i < n; ++i) {
      const uint8_t* row = rows.data() + i * cols;
      const uint64_t h = seen.hash(row);
      const std::ptrdiff_t id = seen.find(row, h);
      if (id >= 0) {
        (*out)[i] = seen_scores[static_cast<std::size_t>(id)];
      } else if (result->evaluations + static_cast<int64_t>(fresh_at.size()) < eval_limit) {
        seen.insert(row, h);
        fresh.insert(fresh.end(), row, row + cols);
        fresh_at.push_back(i);
      } else {
        go_on = false;
      }
    }
    if (fresh_at.empty()) return;
    fresh_score.resize(fresh_at.size());
    try {
      score_rows(scorer, fresh.data(), fresh_at.size(), fresh_score.data(), pool, parallel,
                 threads);
    } catch (const SearchStopped&) {
      result->stopped = true;
      go_on = false;
      fresh_score.assign(fresh_at.size(), kNone);  // not scored: the search reports what it had
    }
    seen_scores.insert(seen_scores.end(), fresh_score.begin(), fresh_score.end());
    result->evaluations += static_cast<int64_t>(fresh_at.size());
    for (std::size_t j = 0; j < fresh_at.size(); ++j) (*out)[fresh_at[j]] = fresh_score[j];
  };

  std::vector<uint8_t> nb;
  std::vector<float> nb_score;
  std::vector<std::size_t> idx;
  std::vector<std::vector<uint8_t>> from = bases;
  for (int round = 0; round < kRounds && go_on && !from.empty(); ++round) {
    cur.clear();
    cur_score.clear();
    for (const auto& base : from) {
      nb.clear();
      var.depth_neighbours(base.data(), radius, &nb);
      const std::size_t m = nb.size() / cols;
      // Rows that break a constraint other than the peak stay unscored (left out).
      cand.clear();
      owner.clear();
      for (std::size_t i = 0; i < m; ++i)
        if (var.fits(nb.data() + i * cols)) {
          cand.insert(cand.end(), nb.begin() + i * cols, nb.begin() + (i + 1) * cols);
          owner.push_back(i);
        }
      score(cand, &nb_score);
      idx.resize(owner.size());
      std::iota(idx.begin(), idx.end(), std::size_t{0});
      std::stable_sort(idx.begin(), idx.end(),
                       [&](std::size_t x, std::size_t y) { return nb_score[x] > nb_score[y]; });
      for (std::size_t j = 0; j < idx.size() && j < static_cast<std::size_t>(keep); ++j) {
        if (nb_score[idx[j]] == kNone) break;
        cur.insert(cur.end(), cand.begin() + idx[j] * cols, cand.begin() + (idx[j] + 1) * cols);
        cur_score.push_back(nb_score[idx[j]]);
      }
    }
    const std::size_t m = cur_score.size();
    for (int sweep = 0; sweep < kSweeps && go_on; ++sweep) {
      bool moved = false;
      for (int slot = 0; slot < var.n_slots() && go_on; ++slot) {
        cand.clear();
        owner.clear();
        for (std::size_t i = 0; i < m; ++i) {
          const uint8_t* row = cur.data() + i * cols;
          if (!var.active(row, slot)) continue;
          const std::size_t before = cand.size() / cols;
          var.slot_variants(row, slot, &cand);
          owner.insert(owner.end(), cand.size() / cols - before, i);
        }
        score(cand, &cand_score);
        for (std::size_t j = 0; j < owner.size(); ++j) {
          const std::size_t i = owner[j];
          if (cand_score[j] > cur_score[i]) {
            cur_score[i] = cand_score[j];
            std::copy_n(cand.begin() + j * cols, cols, cur.begin() + i * cols);
            moved = true;
          }
        }
      }
      if (!moved) break;
    }
    std::size_t top = m;
    for (std::size_t i = 0; i < m; ++i)
      if (cur_score[i] > result->best_score && (top == m || cur_score[i] > cur_score[top])) top = i;
    if (top == m) break;
    result->best_score = cur_score[top];
    result->best_row.assign(cur.begin() + top * cols, cur.begin() + (top + 1) * cols);
    from.assign(1, result->best_row);
  }
}

}  // namespace

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
  const std::size_t depth_col = static_cast<std::size_t>(evaluator.space().column_offsets().depth);
  const std::size_t niche_stages =
      std::min<std::size_t>(kNicheStages, static_cast<std::size_t>(evaluator.space().n_stages()));
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
  std::vector<std::vector<uint8_t>> res_best_row(n_res);  // the best subnet at each resolution
  std::vector<int> epochs_at(n_res, 0);                   // epochs spent on each resolution
  int focus = -1;  // resolution of the current epoch (-1: all)
  // Best first; ties in population order, as a stable sort would leave them (std::sort
  // with the index as tie-break gives that order without a stable sort's buffer).
  auto better = [&](std::size_t a, std::size_t b) {
    return pop_scores[a] > pop_scores[b] || (pop_scores[a] == pop_scores[b] && a < b);
  };

  // Scores of the rows in seen, by id (breed adds the kept children in order, and every
  // kept child is scored): the polish reads them instead of scoring a row twice.
  std::vector<float> seen_scores;
  seen_scores.reserve(static_cast<std::size_t>(expected));

  auto absorb_brood = [&]() {
    seen_scores.insert(seen_scores.end(), child_scores.begin(),
                       child_scores.begin() + static_cast<std::ptrdiff_t>(brood.size));
    pop_rows.insert(pop_rows.end(), brood.rows.begin(), brood.rows.end());
    pop_keys.insert(pop_keys.end(), brood.keys.begin(), brood.keys.end());
    for (std::size_t i = 0; i < brood.size; ++i) {
      pop_scores.push_back(child_scores[i]);
      const uint8_t r = brood.keys[i * cols];
      if (child_scores[i] > res_best[r] || res_best_row[r].empty()) {
        res_best[r] = child_scores[i];
        res_best_row[r].assign(brood.keys.begin() + i * cols, brood.keys.begin() + (i + 1) * cols);
      }
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
    // The structure niche holds for the first depth_niche_share of the generations; the
    // rest tune the best structures by plain truncation.
    const bool structure_niche =
        options.depth_niche > 0 &&
        g <= static_cast<int>(std::lround(options.depth_niche_share * options.generations));
    if (options.resolution_niche > 0 || structure_niche) {
      per_res.assign(evaluator.space().resolutions.size(), 0);
      reserved.assign(n_pop, 0);
      picked.clear();
      if (options.resolution_niche > 0)
        for (std::size_t i : order) {
          if (picked.size() == n_par) break;
          if (per_res[pop_keys[i * cols]]++ < options.resolution_niche) {
            reserved[i] = 1;
            picked.push_back(i);
          }
        }
      // Then the best depth_niche of each structure (input resolution and the depths of the
      // first kNicheStages stages, which hold the largest activations and so set the peak)
      // not yet kept: with the published deep predictors the basins differ in these, and a
      // population tuned on one rarely crosses to another whose own optimum is better.
      if (structure_niche)
        for (std::size_t i : order) {
          if (picked.size() == n_par) break;
          if (reserved[i]) continue;
          const uint8_t* key = pop_keys.data() + i * cols;
          int same = 0;
          for (std::size_t j : picked) {
            const uint8_t* other = pop_keys.data() + j * cols;
            same += key[0] == other[0] &&
                    std::memcmp(key + depth_col, other + depth_col, niche_stages) == 0;
          }
          if (same >= options.depth_niche) continue;
          reserved[i] = 1;
          picked.push_back(i);
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

  if (options.polish_radius > 0 && !result.stopped && !result.best_row.empty() &&
      seen_scores.size() == seen.size()) {
    std::vector<std::vector<uint8_t>> bases;
    for (std::size_t r = 0; r < n_res; ++r)
      if (!res_best_row[r].empty()) bases.push_back(res_best_row[r]);
    polish(var, scorer, seen, seen_scores, bases, options.polish_radius, options.polish_keep,
           eval_limit, pool, options.parallel_scoring, threads, &result);
  }

  result.candidates = stats.candidates;
  result.rejected = stats.rejected;
  result.duplicates = stats.duplicates;
  if (!result.best_row.empty()) result.best_peak = evaluator.peak(result.best_row.data());
  return result;
}

}  // namespace moofa
