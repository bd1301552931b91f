// One generation's worth of new candidates, bred in parallel and de-duplicated,
// shared by the single-objective evolution and NSGA-II.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "moofa/scorer.hpp"
#include "rng.hpp"
#include "row_set.hpp"
#include "variation.hpp"
#include "worker_pool.hpp"

namespace moofa {

// A scorer's output must be finite: a NaN would silently win or lose every comparison.
// The predictor must read the same encoding as the space being searched.
inline void require_same_encoding(const Evaluator& evaluator, const Scorer& scorer) {
  if (scorer.n_columns() != evaluator.n_columns())
    throw std::invalid_argument("the predictor reads " + std::to_string(scorer.n_columns()) +
                                " columns but the space encodes subnets in " +
                                std::to_string(evaluator.n_columns()));
}

// The initial population could not be filled: no subnet meets the constraints.
inline void require_initial_population(std::size_t size) {
  if (size == 0)
    throw std::invalid_argument(
        "no subnet satisfying the constraints was found (max_peak, max_mflops, max_params, "
        "max_latency_ms): loosen them");
}

inline void check_scores(const float* scores, std::size_t n) {
  for (std::size_t i = 0; i < n; ++i)
    if (!std::isfinite(scores[i]))
      throw std::domain_error("the predictor returned a non-finite score (" +
                              std::to_string(scores[i]) + ") for config " + std::to_string(i) +
                              " of a batch of " + std::to_string(n));
}

// Threads for a search: an explicit count, or (threads == 0) all cores for populations of
// at least 512 and one thread below. A generation of ~100 children takes ~100 us, too
// little to share: on a busy 2-core machine the hand-offs cost more than they save.
inline int search_threads(int threads, int population) {
  if (threads > 0) return threads;
  return population >= 512 ? resolve_threads(0) : 1;
}

// Scores n rows; with parallel set, split across the pool (a Scorer must accept calls
// from several threads on disjoint outputs), else one call from this thread.
inline void score_rows(const Scorer& scorer, const uint8_t* rows, std::size_t n, float* out,
                       WorkerPool& pool, bool parallel, int threads) {
  const std::size_t cols = static_cast<std::size_t>(scorer.n_columns());
  if (parallel && pool.size() > 1)
    pool.run(
        n, [&](std::size_t b, std::size_t e) { scorer.score(rows + b * cols, e - b, out + b, 1); },
        /*min_items=*/16);
  else
    scorer.score(rows, n, out, threads);
  check_scores(out, n);
}

struct BreedStats {
  int64_t candidates = 0;
  int64_t rejected = 0;
  int64_t duplicates = 0;

  BreedStats& operator+=(const BreedStats& o) {
    candidates += o.candidates;
    rejected += o.rejected;
    duplicates += o.duplicates;
    return *this;
  }
};

struct Brood {
  std::vector<uint8_t> rows;  // as bred (idle slots keep latent genes for later mutations)
  std::vector<uint8_t> keys;  // canonical rows: what is scored and remembered
  std::size_t size = 0;
};

// Breeds up to n children. attempt(i, rng, failures, out) makes one candidate for
// child i (failures: its earlier candidates that broke a constraint or were already
// scored, so that it can explore further) and returns whether it fits the constraints. A child is
// kept once a candidate fits and is absent from seen; after max_tries candidates it is given up.
// Children draw from their own streams (seed, phase, generation, i) in parallel against a frozen
// seen, then a serial pass in child order adds them to seen and re-draws the ones that collided
// with an earlier sibling: the outcome does not depend on threads.
template <class Attempt>
void breed(const Variation& var, RowSet& seen, std::size_t n, uint64_t seed, uint64_t phase,
           uint64_t generation, WorkerPool& pool, int max_tries, Attempt&& attempt, Brood* brood,
           BreedStats* stats) {
  const std::size_t cols = static_cast<std::size_t>(var.n_columns());
  // Every candidate row is written in full before it is read: no need to clear them.
  brood->rows.resize(n * cols);
  brood->keys.resize(n * cols);
  std::vector<Rng> rngs(n);
  std::vector<int> tries(n, 0);
  std::vector<char> found(n, 0);
  std::vector<BreedStats> per_child(n);
  std::vector<uint64_t> hashes(n);  // of each child's key, for the insert after the draw

  auto draw = [&](std::size_t i) {
    uint8_t* row = brood->rows.data() + i * cols;
    uint8_t* key = brood->keys.data() + i * cols;
    BreedStats& st = per_child[i];
    while (tries[i] < max_tries) {
      ++tries[i];
      ++st.candidates;
      if (!attempt(i, rngs[i], tries[i] - 1, row)) {
        ++st.rejected;
        continue;
      }
      var.canonical(row, key);
      hashes[i] = seen.hash(key);
      if (seen.find(key, hashes[i]) >= 0) {
        ++st.duplicates;
        continue;
      }
      return true;
    }
    return false;
  };

  pool.run(
      n,
      [&](std::size_t b, std::size_t e) {
        for (std::size_t i = b; i < e; ++i) {
          rngs[i] = Rng(seed, stream_id(phase, generation, i));
          found[i] = draw(i);
        }
      },
      /*min_items=*/16);

  std::size_t kept = 0;
  for (std::size_t i = 0; i < n; ++i) {
    bool ok = found[i] != 0;
    while (ok && !seen.insert(brood->keys.data() + i * cols, hashes[i]).second) {
      ++per_child[i].duplicates;  // a sibling bred the same subnet first
      ok = draw(i);
    }
    *stats += per_child[i];
    if (!ok) continue;
    if (kept != i) {
      std::memcpy(brood->rows.data() + kept * cols, brood->rows.data() + i * cols, cols);
      std::memcpy(brood->keys.data() + kept * cols, brood->keys.data() + i * cols, cols);
    }
    ++kept;
  }
  brood->rows.resize(kept * cols);
  brood->keys.resize(kept * cols);
  brood->size = kept;
}

}  // namespace moofa
