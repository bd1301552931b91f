// Minimal static-partition parallel loop: deterministic chunking, no pool to manage.
#pragma once

#include <algorithm>
#include <cstddef>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

namespace moofa {

inline int resolve_threads(int threads) {
  if (threads > 0) return threads;
  unsigned hw = std::thread::hardware_concurrency();
  return hw == 0 ? 1 : static_cast<int>(hw);
}

// Calls fn(begin, end) on contiguous chunks of [0, n). Work below min_chunk per
// thread runs inline: spawning threads costs more than small batches take.
template <class Fn>
void parallel_for(std::size_t n, int threads, Fn&& fn, std::size_t min_chunk = 4096) {
  int t = resolve_threads(threads);
  std::size_t max_t = std::max<std::size_t>(1, n / std::max<std::size_t>(1, min_chunk));
  t = static_cast<int>(std::min<std::size_t>(static_cast<std::size_t>(t), max_t));
  if (t <= 1) {
    fn(std::size_t{0}, n);
    return;
  }
  std::vector<std::thread> pool;
  std::exception_ptr error;
  std::mutex error_mutex;
  std::size_t chunk = (n + t - 1) / t;
  for (int i = 0; i < t; ++i) {
    std::size_t b = i * chunk, e = std::min(n, b + chunk);
    if (b >= e) break;
    pool.emplace_back([&, b, e] {
      try {
        fn(b, e);
      } catch (...) {
        std::lock_guard<std::mutex> lock(error_mutex);
        if (!error) error = std::current_exception();
      }
    });
  }
  for (auto& th : pool) th.join();
  if (error) std::rethrow_exception(error);
}

}  // namespace moofa
