#include "moofa/pareto.hpp"

#include <algorithm>
#include <limits>
#include <numeric>
#include <stdexcept>
#include <string>

#include "breeding.hpp"

namespace moofa {

namespace {

// Objectives to minimise, per individual: -score, peak, [mflops], [-uniformity].
struct Objectives {
  int m = 2;
  std::vector<double> f;  // n x m
  const double* at(std::size_t i) const { return f.data() + i * m; }
};

bool dominates(const double* a, const double* b, int m) {
  bool strictly = false;
  for (int j = 0; j < m; ++j) {
    if (a[j] > b[j]) return false;
    if (a[j] < b[j]) strictly = true;
  }
  return strictly;
}

// Non-dominated sorting: the fronts of n members (positions, each front in ascending
// order), as Deb's fast non-dominated sort defines them, in O(P) extra memory
// (Deb's keeps a list of the members each one dominates: O(P^2)).
//
// Members are visited in lexicographic order of their objectives: no member can then be
// dominated by a later one. A member goes to the first front none of whose members
// dominates it. If front k does not dominate a member, no later front does (whatever
// dominates it in front k + 1 is dominated by something of front k, visited earlier), so
// that first front is found by binary search. With two objectives, the last member put
// into a front dominates a newcomer whenever any of that front does (within a front, in
// this order, the second objective only decreases): one comparison per probe.
// objectives(p): the m objectives (to minimise) of member p.
template <class At>
std::vector<std::vector<std::size_t>> sort_fronts(std::size_t n, int m, At objectives) {
  std::vector<std::size_t> order(n);
  std::iota(order.begin(), order.end(), std::size_t{0});
  std::sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) {
    const double *fa = objectives(a), *fb = objectives(b);
    for (int j = 0; j < m; ++j)
      if (fa[j] != fb[j]) return fa[j] < fb[j];
    return a < b;
  });
  std::vector<std::vector<std::size_t>> fronts;  // positions in members, in visiting order
  auto dominated_by_front = [&](std::size_t k, const double* f) {
    const std::vector<std::size_t>& front = fronts[k];
    if (m == 2) return dominates(objectives(front.back()), f, m);
    // Later members of a front are closer in the order: more likely to dominate.
    for (auto it = front.rbegin(); it != front.rend(); ++it)
      if (dominates(objectives(*it), f, m)) return true;
    return false;
  };
  for (std::size_t p : order) {
    const double* f = objectives(p);
    std::size_t lo = 0, hi = fronts.size();  // first front not dominating p is in [lo, hi]
    while (lo < hi) {
      const std::size_t mid = lo + (hi - lo) / 2;
      if (dominated_by_front(mid, f))
        lo = mid + 1;
      else
        hi = mid;
    }
    if (lo == fronts.size()) fronts.emplace_back();
    fronts[lo].push_back(p);
  }
  for (auto& front : fronts) std::sort(front.begin(), front.end());
  return fronts;
}

// Crowding distance of each member of one front (positions into members).
std::vector<double> crowding(const Objectives& obj, const std::vector<std::size_t>& members,
                             const std::vector<std::size_t>& front) {
  const std::size_t n = front.size();
  std::vector<double> dist(n, 0.0);
  std::vector<std::size_t> idx(n);
  for (int j = 0; j < obj.m; ++j) {
    std::iota(idx.begin(), idx.end(), std::size_t{0});
    auto value = [&](std::size_t p) { return obj.at(members[front[p]])[j]; };
    std::stable_sort(idx.begin(), idx.end(),
                     [&](std::size_t a, std::size_t b) { return value(a) < value(b); });
    const double lo = value(idx.front()), hi = value(idx.back());
    dist[idx.front()] = dist[idx.back()] = std::numeric_limits<double>::infinity();
    if (hi <= lo) continue;
    for (std::size_t p = 1; p + 1 < n; ++p)
      dist[idx[p]] += (value(idx[p + 1]) - value(idx[p - 1])) / (hi - lo);
  }
  return dist;
}

}  // namespace

std::vector<int> front_ranks(const double* objectives, std::size_t n, int m) {
  if (m < 1) throw std::invalid_argument("front_ranks needs at least one objective");
  const auto fronts = sort_fronts(n, m, [&](std::size_t p) { return objectives + p * m; });
  std::vector<int> rank(n);
  for (std::size_t k = 0; k < fronts.size(); ++k)
    for (std::size_t p : fronts[k]) rank[p] = static_cast<int>(k);
  return rank;
}

std::vector<std::size_t> non_dominated(const float* scores, const int64_t* peaks,
                                       const double* mflops, std::size_t n,
                                       const double* uniformity) {
  std::vector<std::size_t> order(n);
  std::iota(order.begin(), order.end(), std::size_t{0});
  std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) {
    if (peaks[a] != peaks[b]) return peaks[a] < peaks[b];
    if (scores[a] != scores[b]) return scores[a] > scores[b];
    if (mflops && mflops[a] != mflops[b]) return mflops[a] < mflops[b];
    return uniformity && uniformity[a] > uniformity[b];
  });
  // In this order no point can dominate an earlier one, so one pass against the kept
  // points decides (a kept point weakly dominating the new one rules it out).
  std::vector<std::size_t> front;
  float best = -std::numeric_limits<float>::infinity();
  for (std::size_t i : order) {
    if (!mflops && !uniformity) {
      if (front.empty() || scores[i] > best) {
        front.push_back(i);
        best = scores[i];
      }
      continue;
    }
    bool covered = false;
    for (std::size_t q : front)
      if (scores[q] >= scores[i] && (!mflops || mflops[q] <= mflops[i]) &&
          (!uniformity || uniformity[q] >= uniformity[i])) {
        covered = true;
        break;
      }
    if (!covered) front.push_back(i);
  }
  return front;
}

ParetoResult nsga2(const Evaluator& evaluator, const Scorer& scorer, const Constraints& constraints,
                   const ParetoOptions& options, const std::function<bool(int)>& on_generation) {
  options.validate();
  require_same_encoding(evaluator, scorer);
  const Variation var(evaluator, constraints, options.mutate_prob, options.resolution_mutate_prob);
  const std::size_t cols = static_cast<std::size_t>(evaluator.n_columns());
  const std::size_t n_pop = static_cast<std::size_t>(options.population);
  const int n_mutants = static_cast<int>(std::lround(options.mutation_ratio * options.population));
  const bool with_mflops = options.minimize_mflops;
  const bool with_uniformity = options.maximize_uniformity;

  ParetoResult result;
  BreedStats stats;
  RowSet seen(static_cast<int>(cols));  // ids are archive indices: every kept child is scored
  const int threads = search_threads(options.threads, options.population);
  WorkerPool pool(threads);
  Brood brood;
  std::vector<float> arch_score;
  std::vector<int64_t> arch_peak;
  std::vector<double> arch_mflops;
  std::vector<double> arch_uniformity;
  Objectives obj;
  obj.m = 2 + (with_mflops ? 1 : 0) + (with_uniformity ? 1 : 0);

  // Population members: archive id, row as bred, NSGA rank and crowding.
  std::vector<std::size_t> pop_ids;
  std::vector<uint8_t> pop_rows;
  std::vector<int> pop_rank;
  std::vector<double> pop_crowd;

  // False when the scorer stopped the search (the brood is then dropped).
  auto score_brood = [&]() {
    std::vector<float> s(brood.size);
    try {
      score_rows(scorer, brood.keys.data(), brood.size, s.data(), pool, options.parallel_scoring,
                 threads);
    } catch (const SearchStopped&) {
      result.stopped = true;
      return false;
    }
    for (std::size_t i = 0; i < brood.size; ++i) {
      const uint8_t* key = brood.keys.data() + i * cols;
      arch_score.push_back(s[i]);
      arch_peak.push_back(evaluator.peak(key));
      arch_mflops.push_back(with_mflops ? evaluator.mflops(key) : 0.0);
      obj.f.push_back(-static_cast<double>(s[i]));
      obj.f.push_back(static_cast<double>(arch_peak.back()));
      if (with_mflops) obj.f.push_back(arch_mflops.back());
      if (with_uniformity) {
        arch_uniformity.push_back(evaluator.uniformity(key));
        obj.f.push_back(-arch_uniformity.back());
      }
    }
    result.evaluations += static_cast<int64_t>(brood.size);
    return true;
  };
  const int64_t eval_limit = options.max_evaluations > 0 ? options.max_evaluations : INT64_MAX;
  auto brood_size = [&]() {
    return static_cast<std::size_t>(
        std::min<int64_t>(options.population, eval_limit - result.evaluations));
  };

  // Survivors of members (archive ids with their rows): whole fronts while they fit,
  // then the least crowded of the front that overflows.
  auto select = [&](const std::vector<std::size_t>& ids, const std::vector<uint8_t>& rows) {
    const auto fronts =
        sort_fronts(ids.size(), obj.m, [&](std::size_t p) { return obj.at(ids[p]); });
    std::vector<std::size_t> next_ids;
    std::vector<uint8_t> next_rows;
    std::vector<int> next_rank;
    std::vector<double> next_crowd;
    for (std::size_t f = 0; f < fronts.size() && next_ids.size() < n_pop; ++f) {
      const auto dist = crowding(obj, ids, fronts[f]);
      std::vector<std::size_t> pos(fronts[f].size());
      std::iota(pos.begin(), pos.end(), std::size_t{0});
      if (next_ids.size() + pos.size() > n_pop)
        std::stable_sort(pos.begin(), pos.end(),
                         [&](std::size_t a, std::size_t b) { return dist[a] > dist[b]; });
      for (std::size_t p : pos) {
        if (next_ids.size() == n_pop) break;
        const std::size_t member = fronts[f][p];
        next_ids.push_back(ids[member]);
        next_rows.insert(next_rows.end(), rows.begin() + member * cols,
                         rows.begin() + (member + 1) * cols);
        next_rank.push_back(static_cast<int>(f));
        next_crowd.push_back(dist[p]);
      }
    }
    pop_ids.swap(next_ids);
    pop_rows.swap(next_rows);
    pop_rank.swap(next_rank);
    pop_crowd.swap(next_crowd);
  };

  // Initial population stratified over peak budgets, smallest to largest.
  const int64_t lo = evaluator.min_peak();
  const int64_t hi = std::min(constraints.max_peak, var.peak_ceiling());
  const std::size_t n_init = brood_size();  // < population only under max_evaluations
  breed(
      var, seen, n_init, options.seed, /*phase=*/3, 0, pool, options.max_tries,
      [&](std::size_t i, Rng& rng, int, uint8_t* out) {
        const double t =
            n_init > 1 ? static_cast<double>(i) / static_cast<double>(n_init - 1) : 1.0;
        const auto cap =
            static_cast<int64_t>(static_cast<double>(lo) + t * static_cast<double>(hi - lo));
        return var.sample(rng, std::max(lo, cap), out);
      },
      &brood, &stats);
  require_initial_population(brood.size);
  bool go_on = score_brood();  // when stopped here, nothing was scored: an empty front
  if (go_on) {
    std::vector<std::size_t> ids(brood.size);
    std::iota(ids.begin(), ids.end(), std::size_t{0});
    select(ids, brood.rows);
    go_on = !on_generation || on_generation(0);
  }
  result.stopped = !go_on;

  for (int g = 1; go_on && g <= options.generations && result.evaluations < eval_limit; ++g) {
    const int np = static_cast<int>(pop_ids.size());
    // Binary tournament: lower rank, then larger crowding distance, then older.
    auto tournament = [&](Rng& rng) {
      const int a = rng.below(np), b = rng.below(np);
      if (pop_rank[a] != pop_rank[b]) return pop_rank[a] < pop_rank[b] ? a : b;
      if (pop_crowd[a] != pop_crowd[b]) return pop_crowd[a] > pop_crowd[b] ? a : b;
      return std::min(a, b);
    };
    breed(
        var, seen, brood_size(), options.seed, /*phase=*/4, static_cast<uint64_t>(g), pool,
        options.max_tries,
        [&](std::size_t i, Rng& rng, int failures, uint8_t* out) {
          if (static_cast<int>(i) < n_mutants)
            return var.mutate(pop_rows.data() + tournament(rng) * cols, rng, out, 1.0 + failures);
          const uint8_t* a = pop_rows.data() + tournament(rng) * cols;
          const uint8_t* b = pop_rows.data() + tournament(rng) * cols;
          return var.crossover(a, b, rng, out, failures);
        },
        &brood, &stats);
    if (brood.size == 0) break;
    const std::size_t first_child = arch_score.size();
    if (!score_brood()) break;
    std::vector<std::size_t> ids = pop_ids;
    std::vector<uint8_t> rows = pop_rows;
    for (std::size_t i = 0; i < brood.size; ++i) ids.push_back(first_child + i);
    rows.insert(rows.end(), brood.rows.begin(), brood.rows.end());
    select(ids, rows);
    result.generations_run = g;
    if (on_generation && !on_generation(g)) {
      result.stopped = true;
      break;
    }
  }

  const auto front =
      non_dominated(arch_score.data(), arch_peak.data(), with_mflops ? arch_mflops.data() : nullptr,
                    arch_score.size(), with_uniformity ? arch_uniformity.data() : nullptr);
  for (std::size_t id : front) {
    result.rows.insert(result.rows.end(), seen.row(id), seen.row(id) + cols);
    result.scores.push_back(arch_score[id]);
    result.peaks.push_back(arch_peak[id]);
    result.mflops.push_back(evaluator.mflops(seen.row(id)));
    result.uniformity.push_back(evaluator.uniformity(seen.row(id)));
  }
  result.candidates = stats.candidates;
  result.rejected = stats.rejected;
  result.duplicates = stats.duplicates;
  return result;
}

}  // namespace moofa
