// Threads kept for a whole search. One generation's work (breeding and scoring ~100
// children) takes about 100 microseconds: starting threads for it each time would cost
// as much as it saves, handing it to waiting threads costs a few microseconds.
//
// Work is split into chunks that threads claim one at a time, the caller included: when
// the machine is busy and a worker is not scheduled in time, the caller does its chunks
// instead of waiting for it.
#pragma once

#include <algorithm>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include "parallel.hpp"

namespace moofa {

class WorkerPool {
 public:
  using Job = std::function<void(std::size_t, std::size_t)>;

  // threads: total, the calling thread included (<= 0: all hardware threads). Fewer when
  // the system refuses to start more (size() tells), down to the calling thread alone: a
  // refused thread means the process is at a limit (threads, address space), so half of
  // the workers already started are let go again to leave the search room to allocate.
  explicit WorkerPool(int threads) {
    const int total = resolve_threads(threads);
    workers_.reserve(static_cast<std::size_t>(total - 1));
    for (int i = 1; i < total; ++i) {
      if (start_thread(workers_, [this] { work(); })) continue;
      stop_all();
      const std::size_t keep = workers_.size() / 2;
      workers_.clear();
      quit_ = false;
      while (workers_.size() < keep && start_thread(workers_, [this] { work(); })) {
      }
      break;
    }
  }
  ~WorkerPool() { stop_all(); }
  WorkerPool(const WorkerPool&) = delete;
  WorkerPool& operator=(const WorkerPool&) = delete;

  int size() const { return static_cast<int>(workers_.size()) + 1; }

  // fn(begin, end) over contiguous chunks of [0, n), one chunk per thread at most; below
  // min_items per chunk it all runs on the caller. Rethrows the first exception.
  void run(std::size_t n, const Job& fn, std::size_t min_items = 1) {
    const std::size_t parts = std::min<std::size_t>(static_cast<std::size_t>(size()),
                                                    n / std::max<std::size_t>(1, min_items));
    if (parts <= 1) {
      fn(0, n);
      return;
    }
    {
      std::lock_guard<std::mutex> lock(m_);
      job_ = &fn;
      n_ = n;
      parts_ = parts;
      next_ = 0;
      busy_ = 0;
      error_ = nullptr;
    }
    start_.notify_all();
    std::size_t part;
    while (claim(&part)) finish(part);
    std::unique_lock<std::mutex> lock(m_);
    done_.wait(lock, [this] { return busy_ == 0; });
    job_ = nullptr;
    if (error_) std::rethrow_exception(error_);
  }

 private:
  // Takes the next chunk of the current job, if any is left.
  bool claim(std::size_t* part) {
    std::lock_guard<std::mutex> lock(m_);
    if (job_ == nullptr || next_ >= parts_) return false;
    *part = next_++;
    ++busy_;
    return true;
  }

  void finish(std::size_t part) {
    std::exception_ptr error;
    try {
      const std::size_t size = (n_ + parts_ - 1) / parts_;
      const std::size_t b = part * size, e = std::min(n_, b + size);
      if (b < e) (*job_)(b, e);
    } catch (...) {
      error = std::current_exception();
    }
    std::lock_guard<std::mutex> lock(m_);
    if (error && !error_) error_ = error;
    if (--busy_ == 0) done_.notify_all();
  }

  void work() {
    for (;;) {
      {
        std::unique_lock<std::mutex> lock(m_);
        start_.wait(lock, [this] { return quit_ || (job_ != nullptr && next_ < parts_); });
        if (quit_) return;
      }
      std::size_t part;
      while (claim(&part)) finish(part);
    }
  }

  void stop_all() {
    {
      std::lock_guard<std::mutex> lock(m_);
      quit_ = true;
    }
    start_.notify_all();
    for (auto& t : workers_) t.join();
  }

  std::vector<std::thread> workers_;
  std::mutex m_;
  std::condition_variable start_, done_;
  bool quit_ = false;
  const Job* job_ = nullptr;
  std::size_t n_ = 0, parts_ = 1, next_ = 0;
  int busy_ = 0;
  std::exception_ptr error_;
};

}  // namespace moofa
