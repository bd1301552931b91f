#include "moofa/memory.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <mutex>
#include <stdexcept>

#include "parallel.hpp"

namespace moofa {

namespace {

struct BlockFigures {
  int64_t layers[3] = {0, 0, 0};  // expand (0 when absent), depthwise, project
  int64_t macs = 0;
  int64_t params = 0;
  int out_size = 0;
};

// Checked products and sums: a figure that does not fit int64 throws std::overflow_error.
int64_t mul(int64_t a, int64_t b) { return checked_mul(a, b); }
int64_t mul(int64_t a, int64_t b, int64_t c) { return checked_mul(checked_mul(a, b), c); }
int64_t mul(int64_t a, int64_t b, int64_t c, int64_t d) { return checked_mul(mul(a, b, c), d); }
int64_t add(int64_t a, int64_t b) { return checked_add(a, b); }
int64_t add(int64_t a, int64_t b, int64_t c) { return checked_add(checked_add(a, b), c); }

// One MBConv block: expand 1x1 (absent when e == 1) -> depthwise kxk (stride) -> SE -> project 1x1.
BlockFigures mbconv(int64_t c_in, int64_t c_out, int64_t k, double expand, int stride, bool se,
                    int f, bool with_weights) {
  BlockFigures b;
  const int64_t w = with_weights ? 1 : 0;
  const int64_t mid = middle_width(c_in, expand);
  const int64_t fi = f, fo = out_size(f, stride);
  const int64_t in_act = mul(c_in, fi, fi);
  b.out_size = static_cast<int>(fo);
  if (expand != 1.0) {
    b.layers[0] = add(in_act, mul(mid, fi, fi), mul(w, c_in, mid));
    b.macs = add(b.macs, mul(fi, fi, c_in, mid));
    b.params = add(b.params, mul(c_in, mid), mul(2, mid));  // conv + BN
  }
  b.layers[1] = add(mul(mid, fi, fi), mul(mid, fo, fo), mul(w, mid, mul(k, k)));
  // An identity shortcut keeps the block input alive through the depthwise layer.
  if (stride == 1 && c_in == c_out) b.layers[1] = add(b.layers[1], in_act);
  b.macs = add(b.macs, mul(mul(fo, fo), mid, mul(k, k)));
  b.params = add(b.params, mul(mid, k, k), mul(2, mid));
  if (se) {
    const int64_t se_mid = make_divisible(static_cast<double>(mid / 4), 8);
    b.macs = add(b.macs, mul(2, mid, se_mid));
    b.params = add(b.params, add(mul(2, mid, se_mid), mid, se_mid));  // two 1x1 convs with bias
  }
  b.layers[2] = add(mul(mid, fo, fo), mul(c_out, fo, fo), mul(w, mid, c_out));
  b.macs = add(b.macs, mul(fo, fo, mid, c_out));
  b.params = add(b.params, mul(mid, c_out), mul(2, c_out));
  return b;
}

// First invalid row seen by any worker of a batched call (the smallest index wins).
class FirstBad {
 public:
  void record(std::size_t row, int column) {
    std::lock_guard<std::mutex> lock(mutex_);
    if (row_ < 0 || static_cast<std::ptrdiff_t>(row) < row_) {
      row_ = static_cast<std::ptrdiff_t>(row);
      column_ = column;
    }
  }
  std::ptrdiff_t result(int* column) const {
    if (row_ >= 0 && column) *column = column_;
    return row_;
  }

 private:
  std::mutex mutex_;
  std::ptrdiff_t row_ = -1;
  int column_ = -1;
};

}  // namespace

MemoryModel memory_model_from_name(const std::string& name) {
  if (name == "full") return MemoryModel::kFull;
  if (name == "activations") return MemoryModel::kActivations;
  if (name == "tflm") return MemoryModel::kTflm;
  throw std::invalid_argument("memory_model must be 'full', 'activations' or 'tflm', got '" + name +
                              "'");
}

Evaluator::Evaluator(const SpaceSpec& space, MemoryModel model)
    : space_((space.validate(), space)), model_(model), check_(space) {
  const bool with_weights = model_ == MemoryModel::kFull;
  const int64_t w = with_weights ? 1 : 0;
  n_res_ = static_cast<int>(space_.resolutions.size());
  n_k_ = static_cast<int>(space_.kernels.size());
  n_e_ = static_cast<int>(space_.expands.size());
  n_slots_ = space_.n_slots();
  stage_first_slot_ = space_.stage_first_slot();

  const std::size_t cells = space_.table_cells();
  slot_layers_.assign(cells * 3, 0);
  slot_peak_.assign(cells, 0);
  slot_macs_.assign(cells, 0);
  slot_params_.assign(static_cast<std::size_t>(n_slots_) * n_k_ * n_e_, 0);
  head_layers_.resize(n_res_);
  tail_layer_.resize(n_res_);
  fixed_peak_.resize(n_res_);
  fixed_macs_.resize(n_res_);

  const int64_t c0 = space_.first_conv_width, k0 = space_.first_conv_kernel,
                cin0 = space_.in_channels;
  for (int r = 0; r < n_res_; ++r) {
    const int64_t res = space_.resolutions[r];
    const int64_t f0 = out_size(space_.resolutions[r], space_.first_conv_stride);
    int64_t macs = mul(mul(f0, f0), cin0, c0, mul(k0, k0));
    int64_t params = add(mul(cin0, c0, mul(k0, k0)), mul(2, c0));
    auto& head = head_layers_[r];
    head.push_back(add(mul(cin0, res, res), mul(c0, f0, f0), mul(w, mul(cin0, c0), mul(k0, k0))));
    BlockFigures first = mbconv(c0, space_.first_block_width, 3, 1.0, 1,
                                /*se=*/false, static_cast<int>(f0), with_weights);
    for (int64_t layer : first.layers)
      if (layer) head.push_back(layer);
    macs = add(macs, first.macs);
    params = add(params, first.params);

    // Every slot sees a fixed input width and feature size: those of its position.
    int f = first.out_size;
    int64_t c_in = space_.first_block_width;
    for (int s = 0; s < space_.n_stages(); ++s) {
      const StageSpec& st = space_.stages[s];
      for (int j = 0; j < st.max_depth; ++j) {
        const int slot = stage_first_slot_[s] + j;
        const int stride = j == 0 ? st.stride : 1;
        const int64_t cin = j == 0 ? c_in : st.width;
        int f_next = f;
        for (int k = 0; k < n_k_; ++k) {
          for (int e = 0; e < n_e_; ++e) {
            BlockFigures b = mbconv(cin, st.width, space_.kernels[k], space_.expands[e], stride,
                                    st.se, f, with_weights);
            const std::size_t i = slot_index(slot, r, k, e);
            std::copy(b.layers, b.layers + 3, slot_layers_.begin() + i * 3);
            slot_peak_[i] = std::max({b.layers[0], b.layers[1], b.layers[2]});
            slot_macs_[i] = b.macs;
            if (r == 0)
              slot_params_[(static_cast<std::size_t>(slot) * n_k_ + k) * n_e_ + e] = b.params;
            f_next = b.out_size;
          }
        }
        f = f_next;
      }
      c_in = st.width;
    }
    const int64_t fe = space_.final_expand_width, ff = f;
    tail_layer_[r] = add(mul(c_in, ff, ff), mul(fe, ff, ff), mul(w, c_in, fe));
    macs = add(macs, mul(ff, ff, c_in, fe));
    params = add(params, mul(c_in, fe), mul(2, fe));
    int64_t last = fe;
    if (space_.feature_mix_width > 0) {
      macs = add(macs, mul(fe, space_.feature_mix_width));
      params = add(params, mul(fe, space_.feature_mix_width));  // no bias, no BN
      last = space_.feature_mix_width;
    }
    macs = add(macs, mul(last, space_.n_classes));
    params = add(params, mul(last, space_.n_classes), space_.n_classes);
    fixed_macs_[r] = macs;
    fixed_params_ = params;
    fixed_peak_[r] = std::max(*std::max_element(head.begin(), head.end()), tail_layer_[r]);
  }
  max_layers_ = static_cast<int>(head_layers_[0].size()) + 3 * n_slots_ + 1;
  slot_layer_max_ = slot_peak_;
  fixed_layer_max_ = fixed_peak_;
  if (model_ == MemoryModel::kTflm) {
    // Peaks are the planner's; the separable figures become its lower bounds.
    tflm_ = std::make_shared<const TflmGraph>(space_);
    for (std::size_t i = 0; i < cells; ++i) slot_peak_[i] = tflm_->slot_bound(i);
    for (int r = 0; r < n_res_; ++r) fixed_peak_[r] = tflm_->fixed_bound(r);
  }

  // MACs and params of a subnet are sums over its active slots: refuse a space whose
  // largest subnet would not fit int64, so evaluating never overflows.
  int64_t most_params = fixed_params_;
  for (int slot = 0; slot < n_slots_; ++slot) {
    const auto first = slot_params_.begin() + static_cast<std::ptrdiff_t>(slot) * n_k_ * n_e_;
    most_params = add(most_params, *std::max_element(first, first + n_k_ * n_e_));
  }
  for (int r = 0; r < n_res_; ++r) {
    int64_t most_macs = fixed_macs_[r];
    for (int slot = 0; slot < n_slots_; ++slot) {
      const auto first =
          slot_macs_.begin() + static_cast<std::ptrdiff_t>(slot_index(slot, r, 0, 0));
      most_macs = add(most_macs, *std::max_element(first, first + n_k_ * n_e_));
    }
  }

  // Exact integer moments need n * sum(v^2) < 2^127: n < 2^14 layers, so v < 2^49.
  int64_t largest = 0;
  for (int r = 0; r < n_res_; ++r) largest = std::max(largest, fixed_peak_[r]);
  for (int64_t v : slot_peak_) largest = std::max(largest, v);
#ifdef __SIZEOF_INT128__
  moments_exact_ = max_layers_ < (1 << 14) && largest < (int64_t{1} << 49);
#endif
  slot_count_.resize(cells);
  slot_sum_.resize(cells);
  slot_sumsq_.resize(cells);
  fixed_count_.resize(n_res_);
  fixed_sum_.resize(n_res_);
  fixed_sumsq_.resize(n_res_);
  if (moments_exact_) {
    for (std::size_t i = 0; i < cells; ++i) {
      for (int l = 0; l < 3; ++l) {
        const int64_t v = slot_layers_[i * 3 + l];
        if (!v) continue;
        slot_count_[i] += 1;
        slot_sum_[i] += v;
        slot_sumsq_[i] += static_cast<Wide>(v) * v;
      }
    }
    for (int r = 0; r < n_res_; ++r) {
      std::vector<int64_t> fixed = head_layers_[r];
      fixed.push_back(tail_layer_[r]);
      fixed_count_[r] = static_cast<int32_t>(fixed.size());
      for (int64_t v : fixed) {
        fixed_sum_[r] += v;
        fixed_sumsq_[r] += static_cast<Wide>(v) * v;
      }
    }
  }

  for (const auto& st : space_.stages) stage_max_depth_.push_back(st.max_depth);
  depth_value_ = space_.depths;
  const std::size_t ke = static_cast<std::size_t>(n_k_) * n_e_;
  peak_by_res_.resize(cells);
  for (int r = 0; r < n_res_; ++r)
    for (int slot = 0; slot < n_slots_; ++slot)
      for (std::size_t c = 0; c < ke; ++c)
        peak_by_res_[(static_cast<std::size_t>(r) * n_slots_ + slot) * ke + c] =
            slot_peak_[slot_index(slot, r, 0, 0) + c];
}

int Evaluator::expand_of(const uint8_t* row, int stage, int slot) const {
  if (space_.coupled()) return space_.expand_by_depth[row[space_.col_depth(stage)]];
  return row[space_.col_expand(slot)];
}

// The hot loop: branch-free over every slot (inactive ones masked to 0), one
// contiguous table per resolution. Rows are assumed valid (checked by the caller).
template <bool Coupled>
int64_t Evaluator::peak_impl(const uint8_t* row) const {
  const int n_stages = static_cast<int>(stage_max_depth_.size());
  const uint8_t* depth_col = row + 1;
  const uint8_t* kernel_col = depth_col + n_stages;
  const uint8_t* expand_col = kernel_col + n_slots_;
  const int ke = n_k_ * n_e_;
  const int r = row[0];
  const int64_t* tab = peak_by_res_.data() + static_cast<std::size_t>(r) * n_slots_ * ke;
  int64_t best = fixed_peak_[r];
  for (int s = 0; s < n_stages; ++s) {
    const int di = depth_col[s];
    const int d = depth_value_[di];
    const int coupled_e = Coupled ? space_.expand_by_depth[di] : 0;
    const int first = stage_first_slot_[s];
    const int64_t* stage_tab = tab + first * ke;
    // Only active slots are read; d is small (2-4), so this loop is short and predictable.
    for (int j = 0; j < d; ++j) {
      const int e = Coupled ? coupled_e : expand_col[first + j];
      const int64_t v = stage_tab[j * ke + kernel_col[first + j] * n_e_ + e];
      best = v > best ? v : best;
    }
  }
  return best;
}

int64_t Evaluator::tflm_head(const uint8_t* row) const {
  thread_local TflmWork work;
  return tflm_->head(row, &work);
}

int64_t Evaluator::peak(const uint8_t* row) const {
  if (tflm_) return tflm_head(row);
  return space_.coupled() ? peak_impl<true>(row) : peak_impl<false>(row);
}

int64_t Evaluator::params(const uint8_t* row) const {
  int64_t total = fixed_params_;
  for (int s = 0; s < space_.n_stages(); ++s) {
    const int d = space_.depths[row[space_.col_depth(s)]];
    for (int j = 0; j < d; ++j) {
      const int slot = stage_first_slot_[s] + j;
      total += slot_params_[(static_cast<std::size_t>(slot) * n_k_ + row[space_.col_kernel(slot)]) *
                                n_e_ +
                            expand_of(row, s, slot)];
    }
  }
  return total;
}

double Evaluator::mflops(const uint8_t* row) const {
  const int r = row[0];
  int64_t macs = fixed_macs_[r];
  for (int s = 0; s < space_.n_stages(); ++s) {
    const int d = space_.depths[row[space_.col_depth(s)]];
    for (int j = 0; j < d; ++j) {
      const int slot = stage_first_slot_[s] + j;
      macs +=
          slot_macs_[slot_index(slot, r, row[space_.col_kernel(slot)], expand_of(row, s, slot))];
    }
  }
  return static_cast<double>(macs) / 1e6;
}

int Evaluator::histogram(const uint8_t* row, int64_t* hist) const {
  const int r = row[0];
  int n = 0;
  for (int64_t v : head_layers_[r]) hist[n++] = v;
  for (int s = 0; s < space_.n_stages(); ++s) {
    const int d = space_.depths[row[space_.col_depth(s)]];
    for (int j = 0; j < d; ++j) {
      const int slot = stage_first_slot_[s] + j;
      const int64_t* layers =
          &slot_layers_[slot_index(slot, r, row[space_.col_kernel(slot)], expand_of(row, s, slot)) *
                        3];
      for (int l = 0; l < 3; ++l)
        if (layers[l]) hist[n++] = layers[l];
    }
  }
  hist[n++] = tail_layer_[r];
  for (int i = n; i < max_layers_; ++i) hist[i] = 0;
  return n;
}

namespace {

// Population mean and std from exact integer moments:
// var = (n * sum(v^2) - sum(v)^2) / n^2, all in 128 bits (callers keep it in range).
void moments_to_mean_std(int64_t n, Wide sum, Wide sumsq, double* avg, double* std) {
  const double dn = static_cast<double>(n);
  *avg = static_cast<double>(sum) / dn;
  const Wide num = static_cast<Wide>(n) * sumsq - sum * sum;
  *std = num > 0 ? std::sqrt(static_cast<double>(num)) / dn : 0.0;
}

// The same from a histogram of any int64 figures: with S = sum(v), the deviations
// n * v - S are exact 128-bit integers, so no cancellation: var = sum((n v - S)^2) / n^3.
void mean_std(const int64_t* hist, int n, double* avg, double* std) {
  Wide sum = 0;
  for (int i = 0; i < n; ++i) sum += hist[i];
  double acc = 0.0;
  for (int i = 0; i < n; ++i) {
    const double t = static_cast<double>(static_cast<Wide>(n) * hist[i] - sum);
    acc += t * t;
  }
  const double dn = static_cast<double>(n);
  *avg = static_cast<double>(sum) / dn;
  *std = std::sqrt(acc / (dn * dn * dn));
}

// Uniformity of a histogram of n layers summing to sum, the largest being top:
// mean / max = sum / (n * top).
double uniformity_of(Wide sum, int64_t n, int64_t top) {
  return top > 0 && n > 0
             ? static_cast<double>(sum) / (static_cast<double>(n) * static_cast<double>(top))
             : 0.0;
}

double uniformity_of(const int64_t* hist, int n) {
  Wide sum = 0;
  int64_t top = 0;
  for (int i = 0; i < n; ++i) {
    sum += hist[i];
    top = std::max(top, hist[i]);
  }
  return uniformity_of(sum, n, top);
}

}  // namespace

double Evaluator::uniformity(const uint8_t* row) const {
  if (!moments_exact_) {
    thread_local std::vector<int64_t> scratch;
    scratch.resize(static_cast<std::size_t>(max_layers_));
    return uniformity_of(scratch.data(), histogram(row, scratch.data()));
  }
  double u = 0.0;
  summary(row, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, &u);
  return u;
}

Profile Evaluator::profile(const uint8_t* row) const {
  Profile p;
  p.hist.resize(max_layers_);
  const int n = histogram(row, p.hist.data());
  p.hist.resize(n);
  p.peak = tflm_ ? tflm_head(row) : *std::max_element(p.hist.begin(), p.hist.end());
  mean_std(p.hist.data(), n, &p.avg, &p.std);
  p.uniformity = uniformity_of(p.hist.data(), n);
  p.mflops = mflops(row);
  p.params = params(row);
  return p;
}

std::ptrdiff_t Evaluator::peaks(const uint8_t* rows, std::size_t n, int64_t* out, int threads,
                                int* column) const {
  const std::size_t cols = static_cast<std::size_t>(n_columns());
  FirstBad bad;
  parallel_for(n, threads, [&](std::size_t b, std::size_t e) {
    // Check then evaluate row by row: the row is in L1 for the look-ups.
    for (std::size_t i = b; i < e; ++i) {
      const uint8_t* row = rows + i * cols;
      const int c = check_.invalid_column(row);
      if (c >= 0) return bad.record(i, c);
      out[i] = tflm_ ? tflm_head(row)
                     : (space_.coupled() ? peak_impl<true>(row) : peak_impl<false>(row));
    }
  });
  return bad.result(column);
}

void Evaluator::summary(const uint8_t* row, int64_t* peak_out, double* avg, double* std_out,
                        double* mflops_out, int64_t* params_out, int32_t* n_layers,
                        double* uniformity_out) const {
  const int r = row[0];
  int64_t best = fixed_peak_[r], macs = fixed_macs_[r], params = fixed_params_;
  int64_t top = fixed_layer_max_[r];  // largest histogram entry (best is a bound under kTflm)
  int64_t sum = fixed_sum_[r];
  Wide sumsq = fixed_sumsq_[r];
  int32_t count = fixed_count_[r];
  for (int s = 0; s < space_.n_stages(); ++s) {
    const int d = space_.depths[row[space_.col_depth(s)]];
    for (int j = 0; j < d; ++j) {
      const int slot = stage_first_slot_[s] + j;
      const int k = row[space_.col_kernel(slot)], e = expand_of(row, s, slot);
      const std::size_t i = slot_index(slot, r, k, e);
      best = std::max(best, slot_peak_[i]);
      top = std::max(top, slot_layer_max_[i]);
      sum += slot_sum_[i];
      sumsq += slot_sumsq_[i];
      count += slot_count_[i];
      macs += slot_macs_[i];
      params += slot_params_[(static_cast<std::size_t>(slot) * n_k_ + k) * n_e_ + e];
    }
  }
  if (peak_out) *peak_out = best;
  if (avg || std_out) {
    double a, sd;
    moments_to_mean_std(count, sum, sumsq, &a, &sd);
    if (avg) *avg = a;
    if (std_out) *std_out = sd;
  }
  if (mflops_out) *mflops_out = static_cast<double>(macs) / 1e6;
  if (params_out) *params_out = params;
  if (n_layers) *n_layers = count;
  if (uniformity_out) *uniformity_out = uniformity_of(sum, count, top);
}

std::ptrdiff_t Evaluator::profiles(const uint8_t* rows, std::size_t n, int64_t* peak_out,
                                   double* avg, double* std_out, double* mflops_out,
                                   int64_t* params_out, int64_t* hist, int32_t* n_layers,
                                   int threads, int* column, double* uniformity_out) const {
  const std::size_t cols = static_cast<std::size_t>(n_columns());
  const std::size_t width = static_cast<std::size_t>(max_layers_);
  FirstBad bad;
  if (!hist && moments_exact_) {
    parallel_for(n, threads, [&](std::size_t b, std::size_t e) {
      for (std::size_t i = b; i < e; ++i) {
        const uint8_t* row = rows + i * cols;
        const int c = check_.invalid_column(row);
        if (c >= 0) return bad.record(i, c);
        summary(row, peak_out ? peak_out + i : nullptr, avg ? avg + i : nullptr,
                std_out ? std_out + i : nullptr, mflops_out ? mflops_out + i : nullptr,
                params_out ? params_out + i : nullptr, n_layers ? n_layers + i : nullptr,
                uniformity_out ? uniformity_out + i : nullptr);
        if (peak_out && tflm_) peak_out[i] = tflm_head(row);
      }
    });
    return bad.result(column);
  }
  parallel_for(
      n, threads,
      [&](std::size_t b, std::size_t e) {
        std::vector<int64_t> scratch(hist ? 0 : width);
        for (std::size_t i = b; i < e; ++i) {
          const uint8_t* row = rows + i * cols;
          const int c = check_.invalid_column(row);
          if (c >= 0) return bad.record(i, c);
          int64_t* h = hist ? hist + i * width : scratch.data();
          const int len = histogram(row, h);
          if (n_layers) n_layers[i] = len;
          if (peak_out) peak_out[i] = tflm_ ? tflm_head(row) : *std::max_element(h, h + len);
          if (avg || std_out) {
            double a, s;
            mean_std(h, len, &a, &s);
            if (avg) avg[i] = a;
            if (std_out) std_out[i] = s;
          }
          if (uniformity_out) uniformity_out[i] = uniformity_of(h, len);
          if (mflops_out) mflops_out[i] = mflops(row);
          if (params_out) params_out[i] = params(row);
        }
      },
      1024);
  return bad.result(column);
}

int64_t Evaluator::min_peak(std::vector<uint8_t>* best_row) const {
  int64_t best = std::numeric_limits<int64_t>::max();
  std::vector<uint8_t> row(n_columns(), 0), best_tflm;
  const int n_d = static_cast<int>(space_.depths.size());
  for (int r = 0; r < n_res_; ++r) {
    row[0] = static_cast<uint8_t>(r);
    int64_t peak_r = fixed_peak_[r];
    // Stages are independent given r: pick, per stage, the depth and per-slot
    // kernel/expand that minimise the stage's worst block.
    for (int s = 0; s < space_.n_stages(); ++s) {
      int64_t stage_best = std::numeric_limits<int64_t>::max();
      std::vector<uint8_t> stage_choice;
      for (int di = 0; di < n_d; ++di) {
        const int d = space_.depths[di];
        int64_t worst = 0;
        std::vector<uint8_t> choice(1 + 2 * d);
        choice[0] = static_cast<uint8_t>(di);
        for (int j = 0; j < d; ++j) {
          const int slot = stage_first_slot_[s] + j;
          int64_t slot_best = std::numeric_limits<int64_t>::max();
          for (int k = 0; k < n_k_; ++k) {
            for (int e = 0; e < n_e_; ++e) {
              if (space_.coupled() && e != space_.expand_by_depth[di]) continue;
              const int64_t v = slot_peak_[slot_index(slot, r, k, e)];
              if (v < slot_best) {
                slot_best = v;
                choice[1 + 2 * j] = static_cast<uint8_t>(k);
                choice[2 + 2 * j] = static_cast<uint8_t>(e);
              }
            }
          }
          worst = std::max(worst, slot_best);
        }
        if (worst < stage_best) {
          stage_best = worst;
          stage_choice = choice;
        }
      }
      peak_r = std::max(peak_r, stage_best);
      row[space_.col_depth(s)] = stage_choice[0];
      const int d = space_.depths[stage_choice[0]];
      const int coupled_e = space_.coupled() ? space_.expand_by_depth[stage_choice[0]] : 0;
      for (int j = 0; j < space_.stages[s].max_depth; ++j) {
        const int slot = stage_first_slot_[s] + j;
        row[space_.col_kernel(slot)] = j < d ? stage_choice[1 + 2 * j] : 0;
        row[space_.col_expand(slot)] =
            j < d ? stage_choice[2 + 2 * j] : static_cast<uint8_t>(coupled_e);
      }
    }
    if (peak_r < best) {
      best = peak_r;
      best_tflm = row;
      if (best_row) *best_row = row;
    }
  }
  if (tflm_) return tflm_head(best_tflm.data());
  return best;
}

}  // namespace moofa
