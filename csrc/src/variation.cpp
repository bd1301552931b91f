#include "variation.hpp"

#include <algorithm>
#include <cstring>
#include <functional>

#include "moofa/latency.hpp"
#include "require.hpp"

namespace moofa {

namespace {
// Row equality without a libc call (rows are a few dozen bytes).
inline bool same_row(const uint8_t* a, const uint8_t* b, std::size_t n) {
  uint64_t diff = 0;
  std::size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    uint64_t x, y;
    std::memcpy(&x, a + i, 8);
    std::memcpy(&y, b + i, 8);
    diff |= x ^ y;
  }
  for (; i < n; ++i) diff |= static_cast<uint64_t>(a[i] ^ b[i]);
  return diff == 0;
}
}  // namespace

Variation::Variation(const Evaluator& evaluator, const Constraints& constraints, double mutate_prob,
                     double resolution_mutate_prob)
    : ev_(evaluator),
      spec_(evaluator.space()),
      c_(constraints),
      mutate_prob_(mutate_prob),
      resolution_mutate_prob_(resolution_mutate_prob),
      col_(spec_.column_offsets()),
      n_cols_(col_.end),
      n_res_(static_cast<int>(spec_.resolutions.size())),
      n_k_(static_cast<int>(spec_.kernels.size())),
      n_e_(static_cast<int>(spec_.expands.size())),
      n_d_(static_cast<int>(spec_.depths.size())),
      n_stages_(spec_.n_stages()),
      n_slots_(spec_.n_slots()),
      coupled_(spec_.coupled()) {
  c_.validate();
  detail::require(mutate_prob >= 0.0 && mutate_prob <= 1.0, "mutate_prob must be in [0, 1]");
  detail::require(resolution_mutate_prob >= 0.0 && resolution_mutate_prob <= 1.0,
                  "resolution_mutate_prob must be in [0, 1]");
  detail::require(!c_.limits_latency() || same_space(c_.latency->space(), spec_),
                  "the latency table was built for another space than the one searched");
  first_slot_ = spec_.stage_first_slot();
  slot_stage_ = spec_.slot_stage();
  for (int r = 0; r < n_res_; ++r)
    for (int slot = 0; slot < n_slots_; ++slot)
      for (int k = 0; k < n_k_; ++k)
        for (int e = 0; e < n_e_; ++e)
          slot_ok_.push_back(slot_fits(slot, r, k, e, c_.max_peak) ? 1 : 0);

  const int deepest = *std::max_element(spec_.depths.begin(), spec_.depths.end());
  for (int r = 0; r < n_res_; ++r) {
    ceiling_ = std::max(ceiling_, ev_.fixed_peak(r));
    for (int s = 0; s < n_stages_; ++s)
      for (int j = 0; j < std::min(deepest, spec_.stages[s].max_depth); ++j)
        for (int k = 0; k < n_k_; ++k)
          for (int e = 0; e < n_e_; ++e) {
            if (coupled_ && std::find(spec_.expand_by_depth.begin(), spec_.expand_by_depth.end(),
                                      e) == spec_.expand_by_depth.end())
              continue;
            ceiling_ = std::max(ceiling_, ev_.slot_peak(first_slot_[s] + j, r, k, e));
          }
  }
  for (int r = 0; r < n_res_; ++r) {
    bool ok = ev_.fixed_peak(r) <= c_.max_peak;
    for (int s = 0; ok && s < n_stages_; ++s) {
      bool any_depth = false;
      for (int di = 0; di < n_d_ && !any_depth; ++di) any_depth = depth_fits(s, di, r, c_.max_peak);
      ok = any_depth;
    }
    if (ok) feasible_res_.push_back(static_cast<uint8_t>(r));
  }
  // Per (resolution, slot) and expand (any, or forced to one in coupled spaces): the
  // pairs fitting max_peak.
  fit_stride_ = coupled_ ? n_e_ + 1 : 1;
  for (int r = 0; r < n_res_; ++r)
    for (int slot = 0; slot < n_slots_; ++slot)
      for (int forced = -1; forced < fit_stride_ - 1; ++forced) {
        fit_begin_.push_back(static_cast<uint32_t>(fit_pairs_.size()));
        for (int k = 0; k < n_k_; ++k)
          for (int e = 0; e < n_e_; ++e)
            if ((forced < 0 || e == forced) && slot_fits(slot, r, k, e, c_.max_peak))
              fit_pairs_.push_back(static_cast<uint16_t>(k * n_e_ + e));
      }
  fit_begin_.push_back(static_cast<uint32_t>(fit_pairs_.size()));
}

bool Variation::draw_slot(Rng& rng, int slot, int r, int forced_e, int64_t cap,
                          uint8_t* row) const {
  if (cap == c_.max_peak) {
    // Precomputed list of the (kernel, expand) pairs that fit the budget.
    const std::size_t cell = (static_cast<std::size_t>(r) * n_slots_ + slot) * fit_stride_ +
                             static_cast<std::size_t>(forced_e >= 0 ? forced_e + 1 : 0);
    const uint32_t begin = fit_begin_[cell], count = fit_begin_[cell + 1] - begin;
    if (count == 0) return false;
    const uint16_t pair =
        fit_pairs_[begin + static_cast<uint32_t>(rng.below(static_cast<int>(count)))];
    row[col_kernel(slot)] = static_cast<uint8_t>(pair / n_e_);
    row[col_expand(slot)] = static_cast<uint8_t>(pair % n_e_);
    return true;
  }
  const int e_lo = forced_e >= 0 ? forced_e : 0, e_hi = forced_e >= 0 ? forced_e + 1 : n_e_;
  int count = 0;
  for (int k = 0; k < n_k_; ++k)
    for (int e = e_lo; e < e_hi; ++e) count += slot_fits(slot, r, k, e, cap);
  if (count == 0) return false;
  int pick = rng.below(count);
  for (int k = 0; k < n_k_; ++k)
    for (int e = e_lo; e < e_hi; ++e)
      if (slot_fits(slot, r, k, e, cap) && pick-- == 0) {
        row[col_kernel(slot)] = static_cast<uint8_t>(k);
        row[col_expand(slot)] = static_cast<uint8_t>(e);
        return true;
      }
  return false;  // unreachable
}

bool Variation::depth_fits(int stage, int depth_index, int r, int64_t cap) const {
  const int d = spec_.depths[depth_index];
  const int e_lo = coupled_ ? coupled_expand(depth_index) : 0;
  const int e_hi = coupled_ ? e_lo + 1 : n_e_;
  for (int j = 0; j < d; ++j) {
    bool any = false;
    for (int k = 0; k < n_k_ && !any; ++k)
      for (int e = e_lo; e < e_hi && !any; ++e)
        any = slot_fits(first_slot_[stage] + j, r, k, e, cap);
    if (!any) return false;
  }
  return true;
}

void Variation::set_depth(uint8_t* row, int stage, int depth_index) const {
  row[col_depth(stage)] = static_cast<uint8_t>(depth_index);
  if (!coupled_) return;
  const auto e = static_cast<uint8_t>(coupled_expand(depth_index));
  for (int j = 0; j < spec_.stages[stage].max_depth; ++j)
    row[col_expand(first_slot_[stage] + j)] = e;
}

bool Variation::fits(const uint8_t* row) const {
  if (ev_.peak(row) > c_.max_peak) return false;
  if (c_.limits_mflops() && ev_.mflops(row) > c_.max_mflops) return false;
  if (c_.limits_params() && ev_.params(row) > c_.max_params) return false;
  if (c_.limits_uniformity() && ev_.uniformity(row) < c_.min_uniformity) return false;
  if (c_.limits_latency() && c_.latency->cost(row) > c_.max_latency_ms) return false;
  return true;
}

void Variation::canonical(const uint8_t* row, uint8_t* out) const {
  if (out != row) std::memcpy(out, row, static_cast<std::size_t>(n_cols_));
  for (int s = 0; s < n_stages_; ++s) {
    const int di = row[col_depth(s)];
    const auto idle_e = static_cast<uint8_t>(coupled_ ? coupled_expand(di) : 0);
    for (int j = spec_.depths[di]; j < spec_.stages[s].max_depth; ++j) {
      out[col_kernel(first_slot_[s] + j)] = 0;
      out[col_expand(first_slot_[s] + j)] = idle_e;
    }
  }
}

void Variation::depth_neighbours(const uint8_t* row, int radius, std::vector<uint8_t>* out) const {
  const auto cols = static_cast<std::size_t>(n_cols_);
  const int r = row[0];
  const int n_ke = n_k_ * n_e_;
  const uint8_t* ok = slot_ok_.data() + static_cast<std::size_t>(r) * n_slots_ * n_ke;
  std::vector<int> depth(static_cast<std::size_t>(n_stages_));
  std::vector<uint8_t> cand(cols);
  // Depth vectors in lexicographic order of (changed stages, their new depths): row's own
  // first, then one change, then two, ...
  auto emit = [&]() {
    std::memcpy(cand.data(), row, cols);
    for (int s = 0; s < n_stages_; ++s) {
      if (depth[s] == row[col_depth(s)]) continue;
      set_depth(cand.data(), s, depth[s]);
      const int first = first_slot_[s];
      for (int slot = first + spec_.depths[row[col_depth(s)]];
           slot < first + spec_.depths[depth[s]]; ++slot) {
        if (ok[slot * n_ke + cand[col_kernel(slot)] * n_e_ + cand[col_expand(slot)]]) continue;
        const std::size_t cell =
            (static_cast<std::size_t>(r) * n_slots_ + slot) * fit_stride_ +
            static_cast<std::size_t>(coupled_ ? coupled_expand(depth[s]) + 1 : 0);
        if (fit_begin_[cell] == fit_begin_[cell + 1]) return;
        const uint16_t pair = fit_pairs_[fit_begin_[cell]];
        cand[col_kernel(slot)] = static_cast<uint8_t>(pair / n_e_);
        cand[col_expand(slot)] = static_cast<uint8_t>(pair % n_e_);
      }
    }
    const std::size_t at = out->size();
    out->resize(at + cols);
    canonical(cand.data(), out->data() + at);
  };
  for (int s = 0; s < n_stages_; ++s) depth[s] = row[col_depth(s)];
  // Changes at stages above `from`, `left` more allowed.
  std::function<void(int, int)> walk = [&](int from, int left) {
    for (int s = from; s < n_stages_; ++s) {
      const int own = row[col_depth(s)];
      for (int di = 0; di < n_d_; ++di) {
        if (di == own || !depth_fits(s, di, r, c_.max_peak)) continue;
        depth[s] = di;
        emit();
        if (left > 1) walk(s + 1, left - 1);
        depth[s] = own;
      }
    }
  };
  emit();
  if (radius > 0) walk(0, radius);
}

void Variation::slot_variants(const uint8_t* row, int slot, std::vector<uint8_t>* out) const {
  const auto cols = static_cast<std::size_t>(n_cols_);
  const int r = row[0];
  const int forced = coupled_ ? coupled_expand(row[col_depth(slot_stage_[slot])]) : -1;
  const std::size_t cell = (static_cast<std::size_t>(r) * n_slots_ + slot) * fit_stride_ +
                           static_cast<std::size_t>(forced >= 0 ? forced + 1 : 0);
  for (uint32_t i = fit_begin_[cell]; i < fit_begin_[cell + 1]; ++i) {
    const auto k = static_cast<uint8_t>(fit_pairs_[i] / n_e_);
    const auto e = static_cast<uint8_t>(fit_pairs_[i] % n_e_);
    if (k == row[col_kernel(slot)] && e == row[col_expand(slot)]) continue;
    const std::size_t at = out->size();
    out->insert(out->end(), row, row + cols);
    uint8_t* v = out->data() + at;
    v[col_kernel(slot)] = k;
    v[col_expand(slot)] = e;
    if (!fits(v)) out->resize(at);
  }
}

bool Variation::sample(Rng& rng, int64_t peak_cap, uint8_t* out, int resolution) const {
  const int64_t cap = std::min(peak_cap, c_.max_peak);
  uint8_t res[256];
  uint8_t depth_ok[256];
  int n_res_ok = 0;
  for (int r : feasible_res_) {
    if (resolution >= 0 && r != resolution) continue;
    bool ok = ev_.fixed_peak(r) <= cap;
    for (int s = 0; ok && s < n_stages_; ++s) {
      bool any = false;
      for (int di = 0; di < n_d_ && !any; ++di) any = depth_fits(s, di, r, cap);
      ok = any;
    }
    if (ok) res[n_res_ok++] = static_cast<uint8_t>(r);
  }
  if (n_res_ok == 0) return false;
  const int r = res[rng.below(n_res_ok)];
  out[0] = static_cast<uint8_t>(r);
  for (int s = 0; s < n_stages_; ++s) {
    int n_ok = 0;
    for (int di = 0; di < n_d_; ++di)
      if (depth_fits(s, di, r, cap)) depth_ok[n_ok++] = static_cast<uint8_t>(di);
    const int di = depth_ok[rng.below(n_ok)];
    set_depth(out, s, di);
    const int forced = coupled_ ? coupled_expand(di) : -1;
    for (int j = 0; j < spec_.stages[s].max_depth; ++j) {
      const int slot = first_slot_[s] + j;
      if (draw_slot(rng, slot, r, forced, cap, out)) continue;
      // Only idle slots can have no fitting choice (depth_fits checked the active ones);
      // their genes are latent until a deeper mutation, which repairs them.
      out[col_kernel(slot)] = static_cast<uint8_t>(rng.below(n_k_));
      out[col_expand(slot)] = static_cast<uint8_t>(forced >= 0 ? forced : rng.below(n_e_));
    }
  }
  if (fits(out)) return true;
  return (c_.limits_mflops() || c_.limits_params() || c_.limits_latency()) && shrink(out, rng);
}

bool Variation::repair(uint8_t* row, Rng& rng) const {
  const int r = row[0];
  if (ev_.fixed_peak(r) > c_.max_peak) return false;
  const int n_ke = n_k_ * n_e_;
  const uint8_t* ok = slot_ok_.data() + static_cast<std::size_t>(r) * n_slots_ * n_ke;
  const int* depths = spec_.depths.data();
  const int* first_slot = first_slot_.data();
  for (int s = 0; s < n_stages_; ++s) {
    const int di = row[col_depth(s)];
    const int first = first_slot[s], end = first + depths[di];
    for (int slot = first; slot < end; ++slot) {
      if (ok[slot * n_ke + row[col_kernel(slot)] * n_e_ + row[col_expand(slot)]]) continue;
      if (!draw_slot(rng, slot, r, coupled_ ? coupled_expand(di) : -1, c_.max_peak, row))
        return false;
    }
  }
  return true;
}

bool Variation::shrink(uint8_t* row, Rng& rng) const {
  // Candidate moves, re-listed after each step: lower resolution, lower depth, smaller
  // kernel or expand of an active slot. Choice lists are sorted ascending (moofa.Space
  // sorts them), so every move lowers MFLOPs and params.
  std::vector<int> moves;
  for (int step = 0; step < 4 * n_cols_; ++step) {
    if (fits(row)) return true;
    moves.clear();
    if (row[0] > 0) moves.push_back(0);
    for (int s = 0; s < n_stages_; ++s) {
      const int di = row[col_depth(s)];
      if (di > 0) moves.push_back(col_depth(s));
      for (int j = 0; j < spec_.depths[di]; ++j) {
        const int slot = first_slot_[s] + j;
        if (row[col_kernel(slot)] > 0) moves.push_back(col_kernel(slot));
        if (!coupled_ && row[col_expand(slot)] > 0) moves.push_back(col_expand(slot));
      }
    }
    if (moves.empty()) return false;
    const int col = moves[rng.below(static_cast<int>(moves.size()))];
    if (col >= col_depth(0) && col < col_depth(0) + n_stages_)
      set_depth(row, col - col_depth(0), row[col] - 1);
    else
      row[col] = static_cast<uint8_t>(row[col] - 1);
  }
  return fits(row);
}

void Variation::mutate_genes(uint8_t* out, Rng& rng, double prob, double resolution_prob) const {
  if (rng.chance(resolution_prob) && !feasible_res_.empty())
    out[0] = feasible_res_[rng.below(static_cast<int>(feasible_res_.size()))];
  const int r = out[0];
  // One coin per slot (in slot order), then one per stage depth. The coins are the
  // 16-bit slices of 64-bit draws, four per draw, each draw taken when its first coin
  // is needed (as Coins::flip does): only the hits are visited, about 3 of 25.
  const uint32_t threshold = Coins::threshold(prob);
  const int n_genes = n_slots_ + n_stages_;
  for (int base = 0; base < n_genes; base += 4) {
    uint64_t bits = rng.next();
    unsigned hits = 0;
    for (int i = 0; i < 4; ++i)
      hits |= static_cast<unsigned>(((bits >> (16 * i)) & 0xFFFFu) < threshold) << i;
    if (n_genes - base < 4) hits &= (1u << (n_genes - base)) - 1;
    static constexpr int8_t kLowest[16] = {0, 0, 1, 0, 2, 0, 1, 0, 3, 0, 1, 0, 2, 0, 1, 0};
    for (; hits != 0; hits &= hits - 1) {
      const int gene = base + kLowest[hits];
      if (gene >= n_slots_) {
        set_depth(out, gene - n_slots_, rng.below(n_d_));
        continue;
      }
      const int slot = gene;
      const int forced = coupled_ ? coupled_expand(out[col_depth(slot_stage_[slot])]) : -1;
      if (draw_slot(rng, slot, r, forced, c_.max_peak, out)) continue;
      out[col_kernel(slot)] = static_cast<uint8_t>(rng.below(n_k_));
      out[col_expand(slot)] = static_cast<uint8_t>(forced >= 0 ? forced : rng.below(n_e_));
    }
  }
}

bool Variation::mutate(const uint8_t* parent, Rng& rng, uint8_t* out, double strength) const {
  std::memcpy(out, parent, static_cast<std::size_t>(n_cols_));
  // A mutation that changed nothing would only re-breed its (already scored) parent.
  for (int round = 0; round < 8 && same_row(out, parent, static_cast<std::size_t>(n_cols_));
       ++round)
    mutate_genes(out, rng, std::min(1.0, mutate_prob_ * strength),
                 std::min(1.0, resolution_mutate_prob_ * strength));
  if (!repair(out, rng)) return false;
  // Over a latency limit (a sum, so no per-slot choice lists): step genes down until it fits,
  // unless the search is already straining against duplicates (a nearly exhausted space).
  return fits(out) || (c_.limits_latency() && strength <= 1.0 && shrink(out, rng));
}

namespace {
// 0xFF in byte i where bit i of b is set, else 0x00: eight coin flips as a byte mask.
inline uint64_t byte_mask(uint64_t b) {
  uint64_t y = ((b & 0xFFu) * 0x0101010101010101ull) & 0x8040201008040201ull;
  y = ((y | (y + 0x7F7F7F7F7F7F7F7Full)) & 0x8080808080808080ull) >> 7;
  return y * 0xFFu;
}
}  // namespace

bool Variation::crossover(const uint8_t* a, const uint8_t* b, Rng& rng, uint8_t* out,
                          double strength) const {
  // Uniform crossover, gene by gene, eight genes per step with byte masks (a branch per
  // coin flip would be mispredicted half the time); a coupled space's expands follow the
  // chosen depths.
  uint64_t bits = rng.next();
  int left = 64;
  for (int col = 0; col < n_cols_; col += 8) {
    if (left == 0) {
      bits = rng.next();
      left = 64;
    }
    const uint64_t m = byte_mask(bits);
    bits >>= 8;
    left -= 8;
    if (col + 8 <= n_cols_) {  // fixed-size copies compile to plain loads and stores
      uint64_t va, vb;
      std::memcpy(&va, a + col, 8);
      std::memcpy(&vb, b + col, 8);
      const uint64_t vo = (va & m) | (vb & ~m);
      std::memcpy(out + col, &vo, 8);
    } else {
      for (int i = 0; col + i < n_cols_; ++i) {
        const uint8_t mi = static_cast<uint8_t>(m >> (8 * i));
        out[col + i] = static_cast<uint8_t>((a[col + i] & mi) | (b[col + i] & ~mi));
      }
    }
  }
  if (coupled_)
    for (int s = 0; s < n_stages_; ++s) set_depth(out, s, out[col_depth(s)]);
  // A copy of a parent (similar parents, or the coins all fell one way) is already scored:
  // mutate it rather than hand back a certain duplicate.
  const auto cols = static_cast<std::size_t>(n_cols_);
  if (strength <= 0.0 && (same_row(out, a, cols) || same_row(out, b, cols))) strength = 1.0;
  for (int round = 0; round < 8 && strength > 0.0; ++round) {
    mutate_genes(out, rng, std::min(1.0, mutate_prob_ * strength),
                 std::min(1.0, resolution_mutate_prob_ * strength));
    if (!same_row(out, a, cols) && !same_row(out, b, cols)) break;
  }
  if (!repair(out, rng)) return false;
  return fits(out) || (c_.limits_latency() && strength <= 1.0 && shrink(out, rng));
}

}  // namespace moofa
