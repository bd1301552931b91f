// Minimal static-partition parallel loop: deterministic chunking, no pool to manage.
#pragma once

#include <algorithm>
#include <cstddef>
#include <exception>
#include <mutex>
#include <new>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

namespace moofa {

inline int resolve_threads(int threads) {
  if (threads > 0) return threads;
  unsigned hw = std::thread::hardware_concurrency();
  return hw == 0 ? 1 : static_cast<int>(hw);
}

// Starts a thread running fn; false when the system refuses one (std::thread throws
// std::system_error when out of threads or of address space for its stack, or
// std::bad_alloc for its state). threads must have room for it (no reallocation).
template <class Fn>
bool start_thread(std::vector<std::thread>& threads, Fn&& fn) {
  try {
    threads.emplace_back(std::forward<Fn>(fn));
    return true;
  } catch (const std::system_error&) {
    return false;
  } catch (const std::bad_alloc&) {
    return false;
  }
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
  pool.reserve(static_cast<std::size_t>(t));
  std::exception_ptr error;
  std::mutex error_mutex;
  auto run = [&](std::size_t b, std::size_t e) {
    try {
      fn(b, e);
    } catch (...) {
      std::lock_guard<std::mutex> lock(error_mutex);
      if (!error) error = std::current_exception();
    }
  };
  // A thread that cannot start (out of threads or address space) leaves its chunk, and
  // the chunks after it, to the calling thread once the threads started have finished
  // (freeing their stacks for the work's own allocations): the same chunks, the same
  // results.
  const std::size_t chunk = (n + t - 1) / t;
  std::size_t inline_from = n;
  for (int i = 0; i < t; ++i) {
    const std::size_t b = i * chunk, e = std::min(n, b + chunk);
    if (b >= e) break;
    if (!start_thread(pool, [&run, b, e] { run(b, e); })) {
      inline_from = b;
      break;
    }
  }
  for (auto& th : pool) th.join();
  for (std::size_t b = inline_from; b < n; b += chunk) run(b, std::min(n, b + chunk));
  if (error) std::rethrow_exception(error);
}

}  // namespace moofa
