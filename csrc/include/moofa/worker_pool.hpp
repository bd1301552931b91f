// Threads kept for a whole search. One generation's work (breeding and scoring ~100
// children) takes about 100 microseconds: starting threads for it each time would cost
// as much as it saves, handing it to waiting threads costs a few microseconds.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include "moofa/parallel.hpp"

namespace moofa {

class WorkerPool {
 public:
  // threads: total, the calling thread included (<= 0: all hardware threads).
  explicit WorkerPool(int threads) {
    const int total = resolve_threads(threads);
    for (int i = 1; i < total; ++i) workers_.emplace_back([this, i] { work(i); });
  }
  ~WorkerPool() {
    {
      std::lock_guard<std::mutex> lock(m_);
      quit_ = true;
    }
    start_.notify_all();
    for (auto& t : workers_) t.join();
  }
  WorkerPool(const WorkerPool&) = delete;
  WorkerPool& operator=(const WorkerPool&) = delete;

  int size() const { return static_cast<int>(workers_.size()) + 1; }

  // fn(begin, end) over [0, n) in one contiguous chunk per thread, the caller taking the
  // first; below min_items per thread it all runs on the caller. Rethrows the first error.
  void run(std::size_t n, const std::function<void(std::size_t, std::size_t)>& fn, std::size_t min_items = 1) {
    std::size_t parts = std::min<std::size_t>(static_cast<std::size_t>(size()), n / std::max<std::size_t>(1, min_items));
    if (parts <= 1) {
      fn(0, n);
      return;
    }
    {
      std::lock_guard<std::mutex> lock(m_);
      job_ = &fn;
      n_ = n;
      parts_ = parts;
      pending_ = static_cast<int>(workers_.size());
      error_ = nullptr;
      ++epoch_;
    }
    start_.notify_all();
    try {
      chunk(0, fn);
    } catch (...) {
      std::lock_guard<std::mutex> lock(m_);
      if (!error_) error_ = std::current_exception();
    }
    std::unique_lock<std::mutex> lock(m_);
    done_.wait(lock, [this] { return pending_ == 0; });
    job_ = nullptr;
    if (error_) std::rethrow_exception(error_);
  }

 private:
  void chunk(std::size_t part, const std::function<void(std::size_t, std::size_t)>& fn) const {
    const std::size_t size = (n_ + parts_ - 1) / parts_;
    const std::size_t b = part * size, e = std::min(n_, b + size);
    if (b < e) fn(b, e);
  }

  void work(int index) {
    uint64_t seen = 0;
    for (;;) {
      const std::function<void(std::size_t, std::size_t)>* job;
      {
        std::unique_lock<std::mutex> lock(m_);
        start_.wait(lock, [&] { return quit_ || epoch_ != seen; });
        if (quit_) return;
        seen = epoch_;
        job = job_;
      }
      std::exception_ptr error;
      if (static_cast<std::size_t>(index) < parts_) {
        try {
          chunk(static_cast<std::size_t>(index), *job);
        } catch (...) {
          error = std::current_exception();
        }
      }
      std::lock_guard<std::mutex> lock(m_);
      if (error && !error_) error_ = error;
      if (--pending_ == 0) done_.notify_one();
    }
  }

  std::vector<std::thread> workers_;
  std::mutex m_;
  std::condition_variable start_, done_;
  uint64_t epoch_ = 0;
  int pending_ = 0;
  bool quit_ = false;
  const std::function<void(std::size_t, std::size_t)>* job_ = nullptr;
  std::size_t n_ = 0, parts_ = 1;
  std::exception_ptr error_;
};

}  // namespace moofa
