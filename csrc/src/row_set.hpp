// A set of fixed-length byte rows (encoded subnets) with stable ids: the search's
// memory of every config it has scored, so that no config is scored twice.
// Open addressing over one contiguous arena: no allocation per row. Each slot keeps 32
// bits of the hash beside the id, so a probe for an absent row (the common case) rarely
// reads the arena: the table outgrows the caches long before a search ends.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <utility>
#include <vector>

namespace moofa {

class RowSet {
 public:
  explicit RowSet(int row_length)
      : len_(static_cast<std::size_t>(row_length)), slots_(1024, kEmpty) {}

  // Slot layout: high 32 bits hash tag, low 32 bits id (kEmpty when free).

  // Room for n rows without rehashing or moving the arena (a search knows about how
  // many configs it will score; growing the table step by step rehashed every row
  // about twice, each a cache miss once the table outgrew the caches).
  void reserve(std::size_t n) {
    std::size_t slots = slots_.size();
    while (slots < 2 * n) slots *= 2;
    if (slots > slots_.size()) {
      slots_.assign(slots, kEmpty);
      for (std::size_t id = 0; id < count_; ++id) place(hash(row(id)), id);
    }
    arena_.reserve(n * len_);
  }

  std::size_t size() const { return count_; }
  const uint8_t* row(std::size_t id) const { return arena_.data() + id * len_; }

  // Id of row, or -1 when absent. Safe to call from several threads while nobody inserts.
  std::ptrdiff_t find(const uint8_t* row) const { return find(row, hash(row)); }
  // The same with the row's hash() already computed (the search hashes a candidate once).
  std::ptrdiff_t find(const uint8_t* row, uint64_t h) const {
    const uint64_t tag = h >> 32;
    const std::size_t mask = slots_.size() - 1;
    for (std::size_t i = h & mask;; i = (i + 1) & mask) {
      const uint64_t slot = slots_[i];
      if (slot == kEmpty) return -1;
      const std::size_t id = slot & 0xFFFFFFFFu;
      if ((slot >> 32) == tag && std::memcmp(arena_.data() + id * len_, row, len_) == 0)
        return static_cast<std::ptrdiff_t>(id);
    }
  }
  bool contains(const uint8_t* row) const { return find(row) >= 0; }

  uint64_t hash(const uint8_t* row) const {
    uint64_t h = 0x243F6A8885A308D3ull ^ len_;
    std::size_t i = 0;
    for (; i + 8 <= len_; i += 8) {
      uint64_t w;
      std::memcpy(&w, row + i, 8);
      h = (h ^ w) * 0x9E3779B97F4A7C15ull;
      h ^= h >> 29;
    }
    uint64_t tail = 0;
    for (std::size_t j = 0; i + j < len_; ++j) tail |= static_cast<uint64_t>(row[i + j]) << (8 * j);
    h = (h ^ tail) * 0xBF58476D1CE4E5B9ull;
    return h ^ (h >> 31);
  }

  // Adds row if absent; returns its id and whether it was new.
  std::pair<std::size_t, bool> insert(const uint8_t* row) { return insert(row, hash(row)); }
  std::pair<std::size_t, bool> insert(const uint8_t* row, uint64_t h) {
    if ((count_ + 1) * 2 > slots_.size()) grow();
    const uint64_t tag = h >> 32;
    const std::size_t mask = slots_.size() - 1;
    for (std::size_t i = h & mask;; i = (i + 1) & mask) {
      const uint64_t slot = slots_[i];
      if (slot == kEmpty) {
        slots_[i] = (tag << 32) | count_;
        arena_.insert(arena_.end(), row, row + len_);
        return {count_++, true};
      }
      const std::size_t id = slot & 0xFFFFFFFFu;
      if ((slot >> 32) == tag && std::memcmp(arena_.data() + id * len_, row, len_) == 0)
        return {id, false};
    }
  }

 private:
  static constexpr uint64_t kEmpty = ~uint64_t{0};

  void grow() {
    slots_.assign(slots_.size() * 2, kEmpty);
    for (std::size_t id = 0; id < count_; ++id) place(hash(row(id)), id);
  }

  // Puts id (known absent) into the first free slot of its probe sequence.
  void place(uint64_t h, std::size_t id) {
    const std::size_t mask = slots_.size() - 1;
    std::size_t i = h & mask;
    while (slots_[i] != kEmpty) i = (i + 1) & mask;
    slots_[i] = ((h >> 32) << 32) | id;
  }

  std::size_t len_;
  std::size_t count_ = 0;
  std::vector<uint8_t> arena_;
  std::vector<uint64_t> slots_;
};

}  // namespace moofa
