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
  TflmSegment take() {
    seg_.finish();
    return std::move(seg_);
  }

 private:
  int64_t in_hw_, in_c_;
  std::vector<int64_t> hw_, c_;
  TflmSegment seg_;
};

}  // namespace

void TflmSegment::finish() {
  const int n_t = static_cast<int>(tensors.size());
  const int n = n_t + static_cast<int>(scratch.size());
  order.resize(n);
  for (int i = 0; i < n; ++i) order[i] = i;
  // Scratch buffers come after every tensor in TFLM's order, so locally too.
  auto size = [&](int i) { return i < n_t ? tensors[i].size : scratch[i - n_t].size; };
  std::sort(order.begin(), order.end(),
            [&](int a, int b) { return size(a) != size(b) ? size(a) > size(b) : a > b; });
}

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
  const std::vector<int32_t>& rank = work->rank;
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
        near.push_back((static_cast<uint64_t>(offsets[j]) << 20) | static_cast<uint64_t>(rank[j]));
      }
    }
    std::sort(near.begin(), near.end());
    int64_t candidate = 0;
    for (uint64_t v : near) {
      const int64_t off = static_cast<int64_t>(v >> 20);
      if (off - candidate >= b.size) break;
      const int32_t j = static_cast<int32_t>(keys[v & 0xFFFFF] & 0xFFFFF);
      candidate = std::max(candidate, off + buffers[j].size);
    }
    offsets[id] = candidate;
    head = std::max(head, candidate + b.size);
    for (int32_t t = b.first; t <= b.last; ++t)
      at[static_cast<std::size_t>(t) * capacity + count[t]++] = id;
  }
  if (offsets_out) *offsets_out = offsets;
  return head;
}

// The placement itself, buffers in placement order given by keys (size << 20 | id, descending).
int64_t plan_sorted(const std::vector<TflmBuffer>& buffers, const std::vector<uint64_t>& keys,
                    TflmWork* work, std::vector<int64_t>* offsets_out) {
  const int n = static_cast<int>(buffers.size());
  std::vector<int32_t>& rank = work->rank;
  rank.resize(n);
  for (int p = 0; p < n; ++p) rank[keys[p] & 0xFFFFF] = p;
  return plan_by_scope(buffers, keys, work, offsets_out);
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
  return plan_sorted(buffers, keys, work, offsets_out);
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
  // Each segment's buffers are already in placement order (ids ascend with the segment's
  // position in both the tensor and the scratch part): merge the runs instead of sorting.
  std::vector<uint64_t>& a = work->keys;
  std::vector<uint64_t>& b = work->near;
  std::vector<int32_t>& bounds = work->begin;
  a.resize(n);
  bounds.clear();
  a[0] = static_cast<uint64_t>(bufs[0].size) << 20;  // the graph input, id 0
  bounds.push_back(0);
  int o = 1;
  for (const TflmWork::Run& run : work->segments) {
    bounds.push_back(o);
    const int32_t n_t = static_cast<int32_t>(run.segment->tensors.size());
    for (int32_t local : run.segment->order) {
      const int32_t id =
          local < n_t ? run.tensor_base + local : n_tensors + run.scratch_base + (local - n_t);
      a[o++] = (static_cast<uint64_t>(bufs[id].size) << 20) | static_cast<uint64_t>(id);
    }
  }
  bounds.push_back(n);
  b.resize(n);
  while (bounds.size() > 2) {
    std::size_t w = 0;
    for (std::size_t i = 0; i + 1 < bounds.size(); i += 2) {
      const int lo = bounds[i], mid = bounds[i + 1];
      const int hi = i + 2 < bounds.size() ? bounds[i + 2] : mid;
      std::merge(a.begin() + lo, a.begin() + mid, a.begin() + mid, a.begin() + hi, b.begin() + lo,
                 std::greater<uint64_t>());
      bounds[w++] = lo;
    }
    bounds[w++] = n;
    bounds.resize(w);
    a.swap(b);
  }
  return plan_sorted(bufs, a, work, nullptr);
}

}  // namespace moofa
