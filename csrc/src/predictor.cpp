#include "moofa/predictor.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <stdexcept>

#include "parallel.hpp"
#include "predictor_kernels.hpp"
#include "require.hpp"

namespace moofa {

using detail::require;

namespace {

int round_up(int v, int m) { return (v + m - 1) / m * m; }

// Padding unit of dense widths: two AVX-512 registers, so every kernel's column
// panel (two vectors) divides it.
constexpr int kPad = 32;
// Dense weight rows and activation rows get 16 extra floats (64 bytes) of stride: with
// a power-of-two stride (a 512-wide layer is 2 KB per row) the rows a k-block walks
// down would all map to the same few L1 sets and evict each other.
constexpr int kStrideSkew = 16;
static_assert(kPad % 16 == 0 && kStrideSkew % 16 == 0,
              "dense weight rows must start on 64-byte lines (the weights are 64-byte aligned)");

bool all_finite(const std::vector<float>& v) {
  return std::all_of(v.begin(), v.end(), [](float x) { return std::isfinite(x); });
}

using TileFn = void (*)(const detail::TileWork&);

TileFn tile_kernel(Isa isa) {
  switch (isa) {
    case Isa::kAvx512:
      return detail::forward_tile_avx512;
    case Isa::kAvx2:
      return detail::forward_tile_avx2;
    default:
      return detail::forward_tile_generic;
  }
}

// 64-byte aligned scratch of floats, not initialised (forward_tile zeroes the padding
// rows of a partial tile itself), kept per thread: the search scores ~100 configs per
// call, and allocating (and zeroing) two ~100 KB buffers per call cost more than that.
class Scratch {
 public:
  float* get(std::size_t n) {
    if (n > size_) {
      data_.reset(new float[n + 16]);
      size_ = n;
    }
    auto p = reinterpret_cast<std::uintptr_t>(data_.get());
    return reinterpret_cast<float*>((p + 63) & ~static_cast<std::uintptr_t>(63));
  }

 private:
  std::unique_ptr<float[]> data_;
  std::size_t size_ = 0;
};

}  // namespace

bool isa_supported(Isa isa) {
  switch (isa) {
    case Isa::kGeneric:
      return true;
#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
    case Isa::kAvx2:
      return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    case Isa::kAvx512:
      return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx2") &&
             __builtin_cpu_supports("fma");
#endif
    default:
      return false;
  }
}

std::string precision_name(Precision p) { return p == Precision::kInt16 ? "int16" : "fp32"; }

Precision precision_from_name(const std::string& name) {
  if (name == "fp32") return Precision::kFloat32;
  if (name == "int16") return Precision::kInt16;
  throw std::invalid_argument("precision must be 'fp32' or 'int16', got '" + name + "'");
}

Isa best_isa() {
  if (isa_supported(Isa::kAvx512)) return Isa::kAvx512;
  if (isa_supported(Isa::kAvx2)) return Isa::kAvx2;
  return Isa::kGeneric;
}

Isa default_isa() {
  // Read once: the environment the process started with (later changes are not seen).
  static const std::string value = [] {
    const char* v = std::getenv("MOOFA_ISA");
    return std::string(v ? v : "");
  }();
  if (value.empty() || value == "auto") return best_isa();
  const char* allowed = "allowed: 'auto', 'avx512', 'avx2', 'generic', or unset";
  Isa isa = Isa::kGeneric;
  if (value == "avx512")
    isa = Isa::kAvx512;
  else if (value == "avx2")
    isa = Isa::kAvx2;
  else
    require(value == "generic",
            "environment variable MOOFA_ISA='" + value + "' names no kernel set (" + allowed + ")");
  require(isa_supported(isa), "environment variable MOOFA_ISA='" + value +
                                  "': this CPU does not support it (it runs up to '" +
                                  isa_name(best_isa()) + "'; " + allowed + ")");
  return isa;
}

std::string isa_name(Isa isa) {
  switch (isa) {
    case Isa::kAvx512:
      return "avx512";
    case Isa::kAvx2:
      return "avx2";
    default:
      return "generic";
  }
}

Isa isa_from_name(const std::string& name) {
  if (name == "auto") return default_isa();
  if (name == "generic") return Isa::kGeneric;
  if (name == "avx2") return Isa::kAvx2;
  if (name == "avx512") return Isa::kAvx512;
  throw std::invalid_argument("isa must be one of 'auto', 'generic', 'avx2', 'avx512', got '" +
                              name + "'");
}

MlpPredictor::MlpPredictor(const SpaceSpec& space, std::vector<DenseLayer> layers,
                           std::vector<float> skip, float scale, float offset, Isa isa,
                           Precision precision)
    : space_((space.validate(), space)),
      check_(space),
      scale_(scale),
      offset_(offset),
      isa_(isa),
      precision_(precision) {
  require(isa_supported(isa), "isa: '" + isa_name(isa) + "' is not supported by this CPU");
  n_features_ = one_hot_size(space_);
  n_res_ = static_cast<int>(space_.resolutions.size());
  n_k_ = static_cast<int>(space_.kernels.size());
  n_e_ = static_cast<int>(space_.expands.size());
  n_slots_ = space_.n_slots();
  col_ = space_.column_offsets();
  const std::vector<int> slot_stage = space_.slot_stage(), first_slot = space_.stage_first_slot();
  for (int j = 0; j < n_slots_; ++j) {
    slot_depth_col_.push_back(space_.col_depth(slot_stage[j]));
    slot_pos_.push_back(j - first_slot[slot_stage[j]]);
  }
  depth_value_ = space_.depths;

  require(!layers.empty(), "layers: at least one layer is needed");
  require(std::isfinite(scale) && std::isfinite(offset), "scale/offset: must be finite");
  int expect_in = n_features_;
  for (std::size_t i = 0; i < layers.size(); ++i) {
    const DenseLayer& L = layers[i];
    const std::string name = "layers[" + std::to_string(i) + "]";
    require(L.in == expect_in,
            name + ": expected " + std::to_string(expect_in) + " inputs" +
                (i == 0 ? " (the one-hot size of this space)" : " (previous layer's outputs)") +
                ", got " + std::to_string(L.in));
    require(L.out >= 1, name + ": needs at least one output");
    require(L.weight.size() == static_cast<std::size_t>(L.in) * L.out,
            name + ": weight must hold in * out = " +
                std::to_string(static_cast<long long>(L.in) * L.out) + " values, got " +
                std::to_string(L.weight.size()));
    require(L.bias.size() == static_cast<std::size_t>(L.out),
            name + ": bias must hold " + std::to_string(L.out) + " values, got " +
                std::to_string(L.bias.size()));
    require(all_finite(L.weight) && all_finite(L.bias),
            name + ": weights must be finite (found NaN or inf)");
    expect_in = L.out;
  }
  require(precision == Precision::kFloat32 || layers.size() >= 2,
          "precision: 'int16' quantises the first hidden layer; a linear model has none");
  require(layers.back().out == 1,
          "layers: the last layer must have 1 output, got " + std::to_string(layers.back().out));
  require(skip.empty() || static_cast<int>(skip.size()) == n_features_,
          "skip: must be empty or hold one weight per one-hot feature (" +
              std::to_string(n_features_) + "), got " + std::to_string(skip.size()));
  require(all_finite(skip), "skip: weights must be finite (found NaN or inf)");
  skip_ = std::move(skip);

  // Pad every width to kPad with zero weights and biases: zero units stay zero after ReLU.
  const std::size_t n_layers = layers.size();
  int prev_pad = 0;
  for (std::size_t i = 0; i < n_layers; ++i) {
    const DenseLayer& L = layers[i];
    PaddedLayer P;
    P.in = L.in;
    P.out = L.out;
    const bool last = i + 1 == n_layers;
    P.in_pad = i == 0 ? L.in : prev_pad;
    P.out_pad = last ? 1 : round_up(L.out, kPad);
    P.ld = last ? 1 : P.out_pad + kStrideSkew;
    P.weight.assign(static_cast<std::size_t>(P.in_pad) * P.ld, 0.0f);
    P.bias.assign(P.out_pad, 0.0f);
    for (int r = 0; r < L.in; ++r)
      std::copy(L.weight.begin() + static_cast<std::ptrdiff_t>(r) * L.out,
                L.weight.begin() + static_cast<std::ptrdiff_t>(r + 1) * L.out,
                P.weight.begin() + static_cast<std::ptrdiff_t>(r) * P.ld);
    std::copy(L.bias.begin(), L.bias.end(), P.bias.begin());
    prev_pad = P.out_pad;
    max_width_ = std::max(max_width_, last ? 0 : P.ld);
    layers_.push_back(std::move(P));
  }
  build_gather_table();
}

void MlpPredictor::build_gather_table() {
  const PaddedLayer& L = layers_[0];
  const int per_slot = n_k_ * n_e_;
  int rows = 0;
  for (int j = 0; j < n_slots_; ++j) {
    slot_row_base_.push_back(rows);
    rows += j == 0 ? n_res_ * per_slot : per_slot;
  }
  require(
      static_cast<double>(rows) * L.out_pad <= 64.0 * 1024 * 1024,
      "space: too many kernel x expand (x resolution) choices for the predictor's per-slot table");
  // Chunk-major: [out_pad / kFirstChunk][rows][kFirstChunk] (see predictor_kernels.hpp).
  gather_rows_ = rows;
  gather_table_.assign(static_cast<std::size_t>(rows) * L.out_pad, 0.0f);
  if (!skip_.empty()) gather_skip_.assign(rows, 0.0f);
  zero_bias_.assign(L.out_pad, 0.0f);
  const int kernel_base = space_.one_hot_kernel_offset(),
            expand_base = space_.one_hot_expand_offset();
  const int chunk = layers_.size() == 1 ? 1 : detail::kFirstChunk;  // a linear model has one output
  for (int j = 0; j < n_slots_; ++j)
    for (int r = 0; r < (j == 0 ? n_res_ : 1); ++r)
      for (int k = 0; k < n_k_; ++k)
        for (int e = 0; e < n_e_; ++e) {
          const int g = slot_row_base_[j] + (r * n_k_ + k) * n_e_ + e;
          // Sum in double, round once: the table is at least as exact as the one-hot sum.
          int parts[3] = {kernel_base + j * n_k_ + k, expand_base + j * n_e_ + e, r};
          const int n_parts = j == 0 ? 3 : 2;
          for (int c = 0; c < L.out_pad; ++c) {
            double v = j == 0 ? L.bias[c] : 0.0;
            for (int p = 0; p < n_parts; ++p)
              v += L.weight[static_cast<std::size_t>(parts[p]) * L.ld + c];
            const std::size_t at =
                (static_cast<std::size_t>(c / chunk) * rows + g) * chunk + c % chunk;
            gather_table_[at] = static_cast<float>(v);
          }
          if (!skip_.empty()) {
            double v = 0.0;
            for (int p = 0; p < n_parts; ++p) v += skip_[parts[p]];
            gather_skip_[g] = static_cast<float>(v);
          }
        }
  if (precision_ == Precision::kInt16) quantise_gather_table();
}

void MlpPredictor::quantise_gather_table() {
  // Per output column c: the largest |sum| any config can reach is at most the sum over
  // slots of the slot's largest |entry|. Scaling that bound to 32767 - n_slots (room
  // for the rounding of each term) makes every partial sum fit in int16.
  const int out_pad = layers_[0].out_pad, rows = gather_rows_, chunk = detail::kFirstChunk;
  auto at = [&](int g, int c) {
    return (static_cast<std::size_t>(c / chunk) * rows + g) * chunk + c % chunk;
  };
  column_scale_.assign(out_pad, 1.0f);
  gather_i16_.assign(gather_table_.size(), 0);
  for (int c = 0; c < out_pad; ++c) {
    double bound = 0.0;
    for (int j = 0; j < n_slots_; ++j) {
      const int end = j + 1 < n_slots_ ? slot_row_base_[j + 1] : rows;
      double m = 0.0;
      for (int g = slot_row_base_[j]; g < end; ++g)
        m = std::max(m, std::fabs(double(gather_table_[at(g, c)])));
      bound += m;
    }
    if (bound == 0.0) continue;  // padding or dead column: all zeros
    const double scale = bound / (32767.0 - n_slots_);
    column_scale_[c] = static_cast<float>(scale);
    for (int g = 0; g < rows; ++g)
      gather_i16_[at(g, c)] = static_cast<int16_t>(std::lround(gather_table_[at(g, c)] / scale));
  }
}

int MlpPredictor::gather(const uint8_t* row, int32_t* out, int32_t stride) const {
  const uint8_t* kernels = row + col_.kernel;
  const uint8_t* expands = row + col_.expand;
  out[0] =
      (slot_row_base_[0] + (row[col_.resolution] * n_k_ + kernels[0]) * n_e_ + expands[0]) * stride;
  int n = 1;
  for (int j = 1; j < n_slots_; ++j) {
    if (slot_pos_[j] >= depth_value_[row[slot_depth_col_[j]]]) continue;  // inactive slot
    out[n++] = (slot_row_base_[j] + kernels[j] * n_e_ + expands[j]) * stride;
  }
  return n;
}

std::vector<int> MlpPredictor::layer_sizes() const {
  std::vector<int> sizes{n_features_};
  for (const auto& L : layers_) sizes.push_back(L.out);
  return sizes;
}

int MlpPredictor::features(const uint8_t* row, int32_t* out) const {
  int n = 0;
  out[n++] = row[col_.resolution];
  const int kernel_base = space_.one_hot_kernel_offset(),
            expand_base = space_.one_hot_expand_offset();
  const uint8_t* kernels = row + col_.kernel;
  const uint8_t* expands = row + col_.expand;
  for (int j = 0; j < n_slots_; ++j) {
    if (slot_pos_[j] >= depth_value_[row[slot_depth_col_[j]]]) continue;  // inactive slot
    out[n++] = kernel_base + j * n_k_ + kernels[j];
    out[n++] = expand_base + j * n_e_ + expands[j];
  }
  return n;
}

void MlpPredictor::score_range(const uint8_t* rows, std::size_t begin, std::size_t end,
                               float* out) const {
  const int cols = n_columns();
  const int max_features = n_slots_;
  std::vector<int32_t> feats(static_cast<std::size_t>(detail::kTileRows) * max_features);
  std::vector<int32_t> n_feats(detail::kTileRows);
  if (layers_.size() == 1) {  // a linear model: the gathered weights are the output
    for (std::size_t i = begin; i < end; ++i) {
      const int nf = gather(rows + i * cols, feats.data());
      float y = 0.0f;
      for (int k = 0; k < nf; ++k) y += gather_table_[feats[k]];
      for (int k = 0; k < nf && !skip_.empty(); ++k) y += gather_skip_[feats[k]];
      out[i] = offset_ + scale_ * y;
    }
    return;
  }
  const int16_t* work_i16 = nullptr;
  const float* work_scale = nullptr;
  std::vector<detail::LayerView> views;
  for (const auto& L : layers_)
    views.push_back({L.in_pad, L.out_pad, L.ld, L.weight.data(), L.bias.data()});
  views[0].in_pad = gather_rows_;
  views[0].weight = gather_table_.data();
  views[0].bias = zero_bias_.data();
  if (precision_ == Precision::kInt16) {
    work_i16 = gather_i16_.data();
    work_scale = column_scale_.data();
  }
  const int stride = max_width_;
  thread_local Scratch scratch0, scratch1;
  float* buf0 = scratch0.get(static_cast<std::size_t>(detail::kTileRows) * stride);
  float* buf1 = scratch1.get(static_cast<std::size_t>(detail::kTileRows) * stride);
  float y[detail::kTileRows];
  const TileFn kernel = tile_kernel(isa_);
  detail::TileWork work;
  work.features = feats.data();
  work.n_features = n_feats.data();
  work.max_features = max_features;
  work.layers = views.data();
  work.n_layers = static_cast<int>(views.size());
  work.buf0 = buf0;
  work.buf1 = buf1;
  work.stride = stride;
  work.y = y;
  work.first_i16 = work_i16;
  work.column_scale = work_scale;
  for (std::size_t t0 = begin; t0 < end; t0 += detail::kTileRows) {
    const int nt = static_cast<int>(std::min<std::size_t>(detail::kTileRows, end - t0));
    for (int r = 0; r < nt; ++r)
      n_feats[r] =
          gather(rows + (t0 + r) * cols,
                 feats.data() + static_cast<std::ptrdiff_t>(r) * max_features, detail::kFirstChunk);
    work.rows = nt;
    kernel(work);
    for (int r = 0; r < nt; ++r) {
      float v = y[r];
      if (!skip_.empty()) {
        const int32_t* f = feats.data() + static_cast<std::ptrdiff_t>(r) * max_features;
        for (int k = 0; k < n_feats[r]; ++k) v += gather_skip_[f[k] / detail::kFirstChunk];
      }
      out[t0 + r] = offset_ + scale_ * v;
    }
  }
}

void MlpPredictor::score(const uint8_t* rows, std::size_t n, float* out, int threads) const {
  // About a microsecond per config: chunks of 1024 keep thread start-up below 10%.
  parallel_for(
      n, threads, [&](std::size_t b, std::size_t e) { score_range(rows, b, e, out); }, 1024);
}

}  // namespace moofa
