#include "moofa/tflm.hpp"

#include <algorithm>
#include <functional>
#include <initializer_list>
#include <utility>

namespace moofa {

namespace {

int64_t align(int64_t bytes) {
  return checked_mul((checked_add(bytes, kTflmAlignment - 1)) / kTflmAlignment, kTflmAlignment);
}

// Builds one segment the way moofa.export.tflite writes the ops; tensor -1 is the input.
class SegmentBuilder {
 public:
  SegmentBuilder(int64_t in_hw, int64_t in_c) : in_hw_(in_hw), in_c_(in_c) {
    seg_.input_size = align(checked_mul(checked_mul(in_hw, in_hw), in_c));
  }
  int64_t hw(int t) const { return t < 0 ? in_hw_ : hw_[t]; }
  int64_t channels(int t) const { return t < 0 ? in_c_ : c_[t]; }

  int op(std::initializer_list<int> inputs, int64_t hw, int64_t c) {
    const int32_t index = seg_.n_ops++;
    for (int t : inputs) {
      if (t < 0)
        seg_.input_last = index;
      else
        seg_.tensors[t].last = index;
    }
    seg_.tensors.push_back({align(checked_mul(checked_mul(hw, hw), c)), index, index});
    hw_.push_back(hw);
    c_.push_back(c);
    return static_cast<int>(seg_.tensors.size()) - 1;
  }
  int conv(int x, int64_t c_out, int stride, bool hard_swish) {
    const int64_t f = out_size(static_cast<int>(hw(x)), stride);
    const int y = op({x}, f, c_out);
    return hard_swish ? op({y}, f, c_out) : y;
  }
  int mean(int x) {
    const int64_t c = channels(x);
    const int y = op({x}, 1, c);
    seg_.scratch.push_back({align(checked_mul(4, c)), seg_.n_ops - 1});  // an int32 per output
    return y;
  }
  // expand (absent when mid == 0) -> depthwise -> [SE] -> project (+ identity ADD).
  int mbconv(int x, int64_t c_out, int64_t mid, int stride, bool hard_swish, bool se) {
    const int64_t c_in = channels(x);
    int y = mid == 0 ? x : conv(x, mid, 1, hard_swish);
    const int64_t c_mid = channels(y);
    y = conv(y, c_mid, stride, hard_swish);
    if (se) {
      const int s = mean(y);
      const int r = conv(s, make_divisible(static_cast<double>(c_mid / 4), 8), 1, false);
      const int gate = conv(r, c_mid, 1, false);
      y = op({y, gate}, hw(y), c_mid);
    }
    const int p = conv(y, c_out, 1, false);
    if (stride == 1 && c_in == c_out) return op({p, x}, hw(p), c_out);
    return p;
  }
  TflmSegment take() { return std::move(seg_); }

 private:
  int64_t in_hw_, in_c_;
  std::vector<int64_t> hw_, c_;
  TflmSegment seg_;
};

}  // namespace

int64_t TflmSegment::live_peak() const {
  int64_t best = 0;
  for (int32_t o = 0; o < n_ops; ++o) {
    int64_t live = o <= input_last ? input_size : 0;
    for (const Tensor& t : tensors)
      if (t.first <= o && o <= t.last) live += t.size;
    for (const Scratch& s : scratch)
      if (s.op == o) live += s.size;
    best = std::max(best, live);
  }
  return best;
}

namespace {

// The placement, buffers in placement order given by keys (size << 20 | id, descending).
// TFLM walks the placed buffers by offset, skipping those not alive with the new one: only
// the placed buffers alive at one of its scopes matter, so they are listed per scope (graph
// lifetimes are short: each buffer touches few entries).
int64_t plan_by_scope(const std::vector<TflmBuffer>& buffers, const std::vector<uint64_t>& keys,
                      TflmWork* work, std::vector<int64_t>* offsets_out) {
  const int n = static_cast<int>(buffers.size());
  int32_t n_scopes = 0;
  for (const TflmBuffer& b : buffers) n_scopes = std::max(n_scopes, b.last + 1);
  std::vector<int32_t>& count = work->count;
  count.assign(static_cast<std::size_t>(n_scopes) + 1, 0);
  for (const TflmBuffer& b : buffers) {
    ++count[b.first];
    --count[b.last + 1];
  }
  int32_t alive = 0, capacity = 1;  // most buffers alive at one scope
  for (int32_t t = 0; t < n_scopes; ++t) {
    alive += count[t];
    capacity = std::max(capacity, alive);
  }
  count.assign(static_cast<std::size_t>(n_scopes), 0);
  std::vector<int32_t>& at = work->adj;  // [scope][capacity] placed buffers
  at.resize(static_cast<std::size_t>(n_scopes) * capacity);
  std::vector<int32_t>& stamp = work->placed;
  stamp.assign(n, -1);
  std::vector<int64_t>& offsets = work->offsets;
  offsets.assign(n, 0);
  std::vector<uint64_t>& near = work->near;
  int64_t head = 0;
  for (int p = 0; p < n; ++p) {
    const int32_t id = static_cast<int32_t>(keys[p] & 0xFFFFF);
    const TflmBuffer& b = buffers[id];
    near.clear();
    for (int32_t t = b.first; t <= b.last; ++t) {
      const int32_t* list = &at[static_cast<std::size_t>(t) * capacity];
      for (int32_t q = 0; q < count[t]; ++q) {
        const int32_t j = list[q];
        if (stamp[j] == p) continue;
        stamp[j] = p;
        // Insertion keeps near sorted: it holds few entries.
        const uint64_t v = (static_cast<uint64_t>(offsets[j]) << 20) | static_cast<uint64_t>(j);
        near.push_back(v);
        std::size_t i = near.size() - 1;
        for (; i > 0 && near[i - 1] > v; --i) near[i] = near[i - 1];
        near[i] = v;
      }
    }
    int64_t candidate = 0;
    for (uint64_t v : near) {
      const int64_t off = static_cast<int64_t>(v >> 20);
      if (off - candidate >= b.size) break;
      candidate = std::max(candidate, off + buffers[v & 0xFFFFF].size);
    }
    offsets[id] = candidate;
    head = std::max(head, candidate + b.size);
    for (int32_t t = b.first; t <= b.last; ++t)
      at[static_cast<std::size_t>(t) * capacity + count[t]++] = id;
  }
  if (offsets_out) *offsets_out = offsets;
  return head;
}

}  // namespace

int64_t tflm_plan(const std::vector<TflmBuffer>& buffers, TflmWork* work,
                  std::vector<int64_t>* offsets_out) {
  const int n = static_cast<int>(buffers.size());
  if (offsets_out) offsets_out->assign(n, 0);
  if (n == 0) return 0;
  // Placement order: largest first; equal sizes in the reverse of the order they were added
  // (TFLM fills its sort array back to front, then sorts stably). Keys are unique.
  std::vector<uint64_t>& keys = work->keys;
  keys.resize(n);
  for (int i = 0; i < n; ++i)
    keys[i] = (static_cast<uint64_t>(buffers[i].size) << 20) | static_cast<uint64_t>(i);
  std::sort(keys.begin(), keys.end(), std::greater<uint64_t>());
  return plan_by_scope(buffers, keys, work, offsets_out);
}

TflmGraph::TflmGraph(const SpaceSpec& space) : space_(space) {
  n_res_ = static_cast<int>(space_.resolutions.size());
  n_k_ = static_cast<int>(space_.kernels.size());
  n_e_ = static_cast<int>(space_.expands.size());
  n_slots_ = space_.n_slots();
  stage_first_slot_ = space_.stage_first_slot();
  slots_.resize(space_.table_cells());
  for (int r = 0; r < n_res_; ++r) {
    const int64_t res = space_.resolutions[r];
    input_size_.push_back(align(checked_mul(checked_mul(res, res), space_.in_channels)));
    SegmentBuilder stem(res, space_.in_channels);
    int x = stem.conv(-1, space_.first_conv_width, space_.first_conv_stride,
                      space_.first_conv_hard_swish);
    x = stem.mbconv(x, space_.first_block_width, 0, 1, space_.first_block_hard_swish, false);
    int f = static_cast<int>(stem.hw(x));
    stem_.push_back(stem.take());
    int64_t c_in = space_.first_block_width;
    for (int s = 0; s < space_.n_stages(); ++s) {
      const StageSpec& st = space_.stages[s];
      for (int j = 0; j < st.max_depth; ++j) {
        const int slot = stage_first_slot_[s] + j;
        const int stride = j == 0 ? st.stride : 1;
        const int64_t cin = j == 0 ? c_in : st.width;
        for (int k = 0; k < n_k_; ++k) {
          for (int e = 0; e < n_e_; ++e) {
            const double expand = space_.expands[e];
            SegmentBuilder b(f, cin);
            b.mbconv(-1, st.width, expand == 1.0 ? 0 : middle_width(cin, expand), stride,
                     st.hard_swish, st.se);
            const std::size_t cell =
                ((static_cast<std::size_t>(slot) * n_res_ + r) * n_k_ + k) * n_e_ + e;
            slots_[cell].segment = b.take();
            slots_[cell].live_peak_ = slots_[cell].segment.live_peak();
          }
        }
        f = out_size(f, stride);
      }
      c_in = st.width;
    }
    SegmentBuilder tail(f, c_in);
    x = tail.conv(-1, space_.final_expand_width, 1, space_.head_hard_swish);
    x = tail.mean(x);
    if (space_.feature_mix_width > 0)
      x = tail.conv(x, space_.feature_mix_width, 1, space_.head_hard_swish);
    tail.op({x}, 1, space_.n_classes);  // FULLY_CONNECTED: (1, n_classes)
    tail_.push_back(tail.take());
    // The stem's bound with the graph input alive at scope 0 too.
    fixed_bound_.push_back(std::max({stem_[r].live_peak(), tail_[r].live_peak(), input_size_[r]}));
  }
  for (int r = 0; r < n_res_; ++r) rank_buffers(r);
}

void TflmGraph::rank_buffers(int r) {
  // TFLM places largest first; among equal sizes, later-added first: scratch (added after
  // every tensor), then the later segment, then the later local buffer. Cells of one slot
  // never meet in a row; the cell index only makes the order total.
  struct Entry {
    int64_t size;
    int32_t scratch, segment, cell, local;
    int32_t* rank;
  };
  std::vector<Entry> entries;
  int32_t input_rank = 0;
  entries.push_back({input_size_[r], 0, -1, 0, 0, &input_rank});
  auto add = [&](TflmSegment& seg, int32_t segment, int32_t cell) {
    const int32_t n_t = static_cast<int32_t>(seg.tensors.size());
    seg.rank.assign(seg.tensors.size() + seg.scratch.size(), 0);
    for (int32_t i = 0; i < static_cast<int32_t>(seg.rank.size()); ++i) {
      const int64_t size = i < n_t ? seg.tensors[i].size : seg.scratch[i - n_t].size;
      entries.push_back({size, i < n_t ? 0 : 1, segment, cell, i, &seg.rank[i]});
    }
  };
  add(stem_[r], 0, 0);
  for (int slot = 0; slot < n_slots_; ++slot)
    for (int c = 0; c < n_k_ * n_e_; ++c)
      add(slots_[(static_cast<std::size_t>(slot) * n_res_ + r) * n_k_ * n_e_ + c].segment, 1 + slot,
          c);
  add(tail_[r], 1 + n_slots_, 0);
  std::sort(entries.begin(), entries.end(), [](const Entry& a, const Entry& b) {
    if (a.size != b.size) return a.size > b.size;
    if (a.scratch != b.scratch) return a.scratch > b.scratch;
    if (a.segment != b.segment) return a.segment > b.segment;
    if (a.cell != b.cell) return a.cell > b.cell;
    return a.local > b.local;
  });
  for (std::size_t i = 0; i < entries.size(); ++i) *entries[i].rank = static_cast<int32_t>(i);
  input_rank_.push_back(input_rank);
  n_ranks_.push_back(static_cast<int32_t>(entries.size()));
}

void TflmGraph::assemble(const uint8_t* row, std::vector<TflmBuffer>* out, TflmWork* work) const {
  const int r = row[0];
  std::vector<TflmBuffer>& bufs = *out;
  std::vector<TflmBuffer>& scratch = work->scratch;
  bufs.clear();
  scratch.clear();
  work->segments.clear();
  bufs.push_back({input_size_[r], 0, 0});
  int32_t base = 0;
  std::size_t x = 0;
  auto append = [&](const TflmSegment& seg) {
    work->segments.push_back(
        {&seg, static_cast<int32_t>(bufs.size()), static_cast<int32_t>(scratch.size())});
    if (seg.input_last >= 0) bufs[x].last = std::max(bufs[x].last, base + seg.input_last + 1);
    for (const TflmSegment::Tensor& t : seg.tensors)
      bufs.push_back({t.size, base + t.first + 1, base + t.last + 1});
    for (const TflmSegment::Scratch& s : seg.scratch)
      scratch.push_back({s.size, base + s.op + 1, base + s.op + 1});
    base += seg.n_ops;
    x = bufs.size() - 1;
  };
  append(stem_[r]);
  const int n_stages = space_.n_stages();
  for (int s = 0; s < n_stages; ++s) {
    const int di = row[space_.col_depth(s)];
    const int d = space_.depths[di];
    for (int j = 0; j < d; ++j) {
      const int slot = stage_first_slot_[s] + j;
      const int e = space_.coupled() ? space_.expand_by_depth[di] : row[space_.col_expand(slot)];
      const int k = row[space_.col_kernel(slot)];
      append(slots_[((static_cast<std::size_t>(slot) * n_res_ + r) * n_k_ + k) * n_e_ + e].segment);
    }
  }
  append(tail_[r]);
  bufs.insert(bufs.end(), scratch.begin(), scratch.end());
}

void TflmGraph::buffers(const uint8_t* row, std::vector<TflmBuffer>* out, TflmWork* work) const {
  assemble(row, out, work);
}

int64_t TflmGraph::head(const uint8_t* row, TflmWork* work) const {
  std::vector<TflmBuffer>& bufs = work->buffers;
  assemble(row, &bufs, work);
  const int n = static_cast<int>(bufs.size());
  const int32_t n_tensors = n - static_cast<int32_t>(work->scratch.size());
  // Mark the ranks the row's buffers hold, then read them in rank order.
  const int r = row[0];
  const std::size_t words = (static_cast<std::size_t>(n_ranks_[r]) + 63) / 64;
  std::vector<uint64_t>& present = work->present;
  std::vector<int32_t>& by_rank = work->by_rank;
  present.assign(words, 0);
  by_rank.resize(static_cast<std::size_t>(n_ranks_[r]));
  auto mark = [&](int32_t rank, int32_t id) {
    present[static_cast<std::size_t>(rank) >> 6] |= uint64_t{1} << (rank & 63);
    by_rank[rank] = id;
  };
  mark(input_rank_[r], 0);
  for (const TflmWork::Run& run : work->segments) {
    const TflmSegment& seg = *run.segment;
    const int32_t n_t = static_cast<int32_t>(seg.tensors.size());
    for (int32_t local = 0; local < static_cast<int32_t>(seg.rank.size()); ++local)
      mark(seg.rank[local],
           local < n_t ? run.tensor_base + local : n_tensors + run.scratch_base + (local - n_t));
  }
  std::vector<uint64_t>& a = work->keys;
  a.resize(n);
  int o = 0;
  for (std::size_t w = 0; w < words; ++w) {
    for (uint64_t bits = present[w]; bits != 0; bits &= bits - 1) {
      const int32_t id = by_rank[w * 64 + static_cast<std::size_t>(__builtin_ctzll(bits))];
      a[o++] = (static_cast<uint64_t>(bufs[id].size) << 20) | static_cast<uint64_t>(id);
    }
  }
  return plan_by_scope(bufs, a, work, nullptr);
}

}  // namespace moofa
