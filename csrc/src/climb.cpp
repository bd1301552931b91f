#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "moofa/search.hpp"
#include "row_set.hpp"
#include "variation.hpp"

namespace moofa {

ClimbResult climb(const Evaluator& evaluator, const Scorer& scorer, const Constraints& constraints,
                  const uint8_t* start, int64_t max_evaluations, int threads) {
  constraints.validate();
  require_same_space(evaluator.space(), scorer);
  if (max_evaluations < 0)
    throw std::invalid_argument("max_evaluations must be >= 0 (0: no limit), got " +
                                std::to_string(max_evaluations));
  if (threads < 0 || threads > SearchOptions::kMaxThreads)
    throw std::invalid_argument("threads must be in [0, " +
                                std::to_string(SearchOptions::kMaxThreads) + "], got " +
                                std::to_string(threads));
  const Variation var(evaluator, constraints, 0.0, 0.0);
  const auto cols = static_cast<std::size_t>(var.n_columns());
  const int64_t limit = max_evaluations > 0 ? max_evaluations : INT64_MAX;
  ClimbResult out;
  out.row.resize(cols);
  var.canonical(start, out.row.data());
  if (!var.fits(out.row.data()))
    throw std::invalid_argument("climb: the start subnet does not meet the constraints");
  try {
    scorer.score(out.row.data(), 1, &out.score, threads);
  } catch (const SearchStopped&) {
    out.stopped = true;
    return out;
  }
  out.evaluations = 1;
  RowSet seen(var.n_columns());
  seen.insert(out.row.data(), seen.hash(out.row.data()));

  const int n_res = static_cast<int>(evaluator.space().resolutions.size());
  std::vector<uint8_t> nb, fresh;
  std::vector<float> scores;
  // Canonical neighbours that meet the constraints and were never scored go to fresh.
  auto keep_new = [&](const uint8_t* row) {
    const uint64_t h = seen.hash(row);
    if (seen.find(row, h) >= 0 || !var.fits(row)) return;
    seen.insert(row, h);
    fresh.insert(fresh.end(), row, row + cols);
  };
  while (out.evaluations < limit) {
    const uint8_t* cur = out.row.data();
    fresh.clear();
    nb.assign(cur, cur + cols);
    for (int r = 0; r < n_res; ++r) {
      if (r == cur[0]) continue;
      nb[0] = static_cast<uint8_t>(r);
      keep_new(nb.data());
    }
    nb.clear();
    var.depth_neighbours(cur, 1, &nb);  // cur itself first: already seen
    for (std::size_t i = 0; i < nb.size(); i += cols) keep_new(nb.data() + i);
    for (int slot = 0; slot < var.n_slots(); ++slot) {
      if (!var.active(cur, slot)) continue;
      nb.clear();
      var.slot_variants(cur, slot, &nb);
      for (std::size_t i = 0; i < nb.size(); i += cols) keep_new(nb.data() + i);
    }
    auto n = static_cast<int64_t>(fresh.size() / cols);
    if (n == 0) break;
    n = std::min(n, limit - out.evaluations);
    scores.resize(static_cast<std::size_t>(n));
    try {
      scorer.score(fresh.data(), static_cast<std::size_t>(n), scores.data(), threads);
    } catch (const SearchStopped&) {
      out.stopped = true;
      break;
    }
    out.evaluations += n;
    std::size_t best = scores.size();
    for (std::size_t i = 0; i < scores.size(); ++i)
      if (scores[i] > out.score && (best == scores.size() || scores[i] > scores[best])) best = i;
    if (best == scores.size()) break;
    out.score = scores[best];
    std::memcpy(out.row.data(), fresh.data() + best * cols, cols);
    ++out.steps;
  }
  return out;
}

}  // namespace moofa
