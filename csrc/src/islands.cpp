#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <exception>
#include <limits>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "moofa/search.hpp"
#include "parallel.hpp"

namespace moofa {

namespace {

// Passes scores through and keeps the largest: an island's best so far, read at the race.
class BestKeepingScorer final : public Scorer {
 public:
  explicit BestKeepingScorer(const Scorer& inner) : inner_(inner) {}
  void score(const uint8_t* rows, std::size_t n, float* out, int threads) const override {
    inner_.score(rows, n, out, threads);
    if (n == 0) return;
    const float top = *std::max_element(out, out + n);
    float cur = best_.load(std::memory_order_relaxed);
    while (top > cur && !best_.compare_exchange_weak(cur, top, std::memory_order_relaxed)) {
    }
  }
  int n_columns() const override { return inner_.n_columns(); }
  const SpaceSpec* space() const override { return inner_.space(); }
  float best() const { return best_.load(std::memory_order_relaxed); }

 private:
  const Scorer& inner_;
  mutable std::atomic<float> best_{-std::numeric_limits<float>::infinity()};
};

// Every island reports once: at the race generation (and waits for the verdict), or when
// it ends before it. The last report decides which islands go on.
class Race {
 public:
  Race(std::size_t islands, int survivors)
      : survivors_(survivors), score_(islands), reported_(islands, 0), go_on_(islands, 0) {}

  // True when island i goes on (after every island has reported).
  bool report(std::size_t i, float best, bool wait) {
    std::unique_lock<std::mutex> lock(mutex_);
    if (!reported_[i]) {
      reported_[i] = 1;
      score_[i] = best;
      if (++n_reported_ == score_.size()) decide();
    }
    if (wait) ready_.wait(lock, [&] { return decided_; });
    return go_on_[i] != 0;
  }

 private:
  void decide() {
    std::vector<std::size_t> order(score_.size());
    for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
    std::stable_sort(order.begin(), order.end(),
                     [&](std::size_t a, std::size_t b) { return score_[a] > score_[b]; });
    for (std::size_t k = 0; k < order.size() && k < static_cast<std::size_t>(survivors_); ++k)
      go_on_[order[k]] = 1;
    decided_ = true;
    ready_.notify_all();
  }

  const int survivors_;
  std::mutex mutex_;
  std::condition_variable ready_;
  std::vector<float> score_;
  std::vector<char> reported_, go_on_;
  std::size_t n_reported_ = 0;
  bool decided_ = false;
};

void add_counts(const EvolutionResult& from, EvolutionResult* to) {
  to->evaluations += from.evaluations;
  to->candidates += from.candidates;
  to->rejected += from.rejected;
  to->duplicates += from.duplicates;
  to->generations_run = std::max(to->generations_run, from.generations_run);
}

}  // namespace

void IslandOptions::validate(const EvolutionOptions& options) const {
  const auto n = static_cast<int>(std::min<std::size_t>(seeds.size(), kMaxIslands + 1));
  if (n < 1 || n > kMaxIslands)
    throw std::invalid_argument("islands: must be 1 to " + std::to_string(kMaxIslands) + ", got " +
                                std::to_string(seeds.size()));
  if (survivors < 1 || survivors > n)
    throw std::invalid_argument("survivors: must be 1 to the number of islands (" +
                                std::to_string(n) + "), got " + std::to_string(survivors));
  const bool racing = survivors < n;
  if (racing ? (race_generation < 1 || race_generation > options.generations)
             : (race_generation < 0 || race_generation > options.generations))
    throw std::invalid_argument("race_generation: must be " + std::string(racing ? "1" : "0") +
                                " to generations (" + std::to_string(options.generations) +
                                "), got " + std::to_string(race_generation));
}

EvolutionResult evolve_islands(const Evaluator& evaluator, const Scorer& scorer,
                               const Constraints& constraints, const EvolutionOptions& options,
                               const IslandOptions& islands,
                               const std::function<bool(int)>& on_generation) {
  options.validate();
  islands.validate(options);
  const std::size_t n = islands.seeds.size();
  const bool racing = islands.survivors < static_cast<int>(n);
  std::vector<EvolutionResult> results(n);
  std::vector<std::exception_ptr> errors(n);
  std::vector<char> raced_out(n, 0);
  Race race(n, islands.survivors);
  std::atomic<bool> stop_all{false};
  // The islands' generations, for on_generation on the calling thread (where a host
  // language can look for Ctrl-C, and where progress callbacks expect to run).
  std::mutex events_mutex;
  std::condition_variable events_ready;
  std::vector<int> events;
  std::size_t finished = 0;

  auto run = [&](std::size_t i, bool inline_hook) {
    BestKeepingScorer kept(scorer);
    EvolutionOptions own = options;
    own.seed = islands.seeds[i];
    try {
      results[i] = evolve(evaluator, kept, constraints, own, [&](int g) {
        if (inline_hook && on_generation && !on_generation(g)) stop_all.store(true);
        if (!inline_hook && on_generation) {
          const std::lock_guard<std::mutex> lock(events_mutex);
          events.push_back(g);
          events_ready.notify_one();
        }
        if (stop_all.load()) return false;
        if (racing && g == islands.race_generation && !race.report(i, kept.best(), true)) {
          raced_out[i] = 1;
          return false;
        }
        return true;
      });
      // Stopped by its scorer (Ctrl-C inside a Python predictor): the others stop too.
      if (results[i].stopped && !raced_out[i]) stop_all.store(true);
    } catch (...) {
      errors[i] = std::current_exception();
      stop_all.store(true);
    }
    // An island that ended before the race still reports, so that no other one waits.
    if (racing) race.report(i, kept.best(), false);
    const std::lock_guard<std::mutex> lock(events_mutex);
    ++finished;
    events_ready.notify_one();
  };

  std::size_t started = n;
  if (n == 1) {
    run(0, true);
  } else {
    // The race needs every island running at once: an island that cannot start (out of
    // threads or address space) stops the others, and the call fails with a clear error.
    std::vector<std::thread> threads;
    threads.reserve(n);
    for (std::size_t i = 0; i < n; ++i) {
      if (!start_thread(threads, [&run, i] { run(i, false); })) {
        started = i;
        stop_all.store(true);
        for (std::size_t j = i; j < n && racing; ++j)
          race.report(j, -std::numeric_limits<float>::infinity(), false);
        break;
      }
    }
    std::vector<int> batch;
    std::unique_lock<std::mutex> lock(events_mutex);
    while (finished < threads.size()) {
      events_ready.wait(lock, [&] { return finished >= threads.size() || !events.empty(); });
      batch.swap(events);
      lock.unlock();
      for (int g : batch)
        if (!stop_all.load() && !on_generation(g)) stop_all.store(true);
      batch.clear();
      lock.lock();
    }
    lock.unlock();
    for (auto& t : threads) t.join();
  }
  for (const auto& e : errors)
    if (e) std::rethrow_exception(e);
  if (started < n)
    throw std::runtime_error("islands: could not start " + std::to_string(n) +
                             " threads, one per island (" + std::to_string(started) +
                             " started; out of threads or address space); use fewer islands");

  EvolutionResult out;
  std::size_t best = n;
  std::size_t longest = 0;
  for (std::size_t i = 0; i < n; ++i) {
    const EvolutionResult& r = results[i];
    add_counts(r, &out);
    if (r.stopped && !raced_out[i]) out.stopped = true;
    longest = std::max(longest, r.history.size());
    if (!r.best_row.empty() && (best == n || r.best_score > results[best].best_score)) best = i;
  }
  if (best < n) {
    out.best_row = results[best].best_row;
    out.best_score = results[best].best_score;
    out.best_peak = results[best].best_peak;
  }
  // history[g]: the best over the islands after their generation g (an island that ended
  // keeps its last best).
  out.history.assign(longest, -std::numeric_limits<float>::infinity());
  for (const auto& r : results)
    for (std::size_t g = 0; g < longest && !r.history.empty(); ++g)
      out.history[g] = std::max(out.history[g], r.history[std::min(g, r.history.size() - 1)]);
  return out;
}

}  // namespace moofa
