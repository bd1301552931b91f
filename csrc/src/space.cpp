#include "moofa/space.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <sstream>
#include <stdexcept>

#include "require.hpp"

namespace moofa {

using detail::require;

namespace {

// The evaluator's tables hold about this many bytes per (slot, resolution, kernel, expand) cell.
constexpr std::size_t kBytesPerCell = 96;
constexpr std::size_t kMaxTableBytes = std::size_t{1} << 30;

std::string number(double v) {
  std::ostringstream s;
  s.precision(15);
  s << v;
  return s.str();
}

template <class T>
std::string list(const std::vector<T>& values) {
  std::string s = "[";
  for (std::size_t i = 0; i < values.size(); ++i) s += (i ? ", " : "") + number(values[i]);
  return s + "]";
}

}  // namespace

[[noreturn]] static void throw_overflow() {
  throw std::overflow_error(
      "space: a memory, FLOPs or parameter figure does not fit int64 (widths, kernels or "
      "resolutions too large)");
}

int64_t checked_add(int64_t a, int64_t b) {
  constexpr int64_t hi = std::numeric_limits<int64_t>::max(),
                    lo = std::numeric_limits<int64_t>::min();
  if ((b > 0 && a > hi - b) || (b < 0 && a < lo - b)) throw_overflow();
  return a + b;
}

int64_t checked_mul(int64_t a, int64_t b) {
  constexpr int64_t hi = std::numeric_limits<int64_t>::max(),
                    lo = std::numeric_limits<int64_t>::min();
  if (a == 0 || b == 0) return 0;
  const bool bad = a > 0 ? (b > 0 ? a > hi / b : b < lo / a) : (b > 0 ? a < lo / b : b < hi / a);
  if (bad) throw_overflow();
  return a * b;
}

int64_t make_divisible(double v, int64_t divisor) {
  if (divisor < 1) throw std::invalid_argument("make_divisible: divisor must be >= 1");
  if (std::isnan(v)) throw std::invalid_argument("make_divisible: v must be a number, got NaN");
  const double x = v + static_cast<double>(divisor) / 2.0;
  // 2**62 leaves room for the "+ divisor" below.
  if (!(x < 4611686018427387904.0))
    throw std::overflow_error("make_divisible: " + number(v) + " does not fit int64");
  // Python's int() truncates toward zero; so does the conversion.
  const int64_t t = x > -1.0 ? static_cast<int64_t>(x) : std::numeric_limits<int64_t>::min();
  int64_t new_v = std::max(divisor, t >= 0 ? t / divisor * divisor : divisor);
  if (static_cast<double>(new_v) < 0.9 * v) new_v = checked_add(new_v, divisor);
  return new_v;
}

int64_t middle_width(int64_t c_in, double expand) {
  if (expand == 1.0) return c_in;  // no expansion layer: the depthwise runs on the input
  // Python's round() is round-half-to-even, which nearbyint gives in the default mode.
  return make_divisible(std::nearbyint(static_cast<double>(c_in) * expand), 8);
}

int SpaceSpec::n_slots() const {
  int n = 0;
  for (const auto& s : stages) n += s.max_depth;
  return n;
}

ColumnOffsets SpaceSpec::column_offsets() const {
  ColumnOffsets o;
  o.kernel = 1 + n_stages();
  o.expand = o.kernel + n_slots();
  o.end = o.expand + n_slots();
  return o;
}

std::vector<int> SpaceSpec::slot_stage() const {
  std::vector<int> out;
  for (int s = 0; s < n_stages(); ++s) out.insert(out.end(), stages[s].max_depth, s);
  return out;
}

std::vector<int> SpaceSpec::stage_first_slot() const {
  std::vector<int> out;
  for (int s = 0, slot = 0; s < n_stages(); slot += stages[s].max_depth, ++s) out.push_back(slot);
  return out;
}

std::vector<int> SpaceSpec::column_limits() const {
  const ColumnOffsets o = column_offsets();
  std::vector<int> limit(o.end);
  limit[0] = static_cast<int>(resolutions.size());
  for (int c = o.depth; c < o.kernel; ++c) limit[c] = static_cast<int>(depths.size());
  for (int c = o.kernel; c < o.expand; ++c) limit[c] = static_cast<int>(kernels.size());
  for (int c = o.expand; c < o.end; ++c) limit[c] = static_cast<int>(expands.size());
  return limit;
}

int SpaceSpec::one_hot_size() const {
  return static_cast<int>(resolutions.size()) +
         n_slots() * static_cast<int>(kernels.size() + expands.size());
}

int SpaceSpec::one_hot_expand_offset() const {
  return one_hot_kernel_offset() + n_slots() * static_cast<int>(kernels.size());
}

std::size_t SpaceSpec::table_cells() const {
  return static_cast<std::size_t>(n_slots()) * resolutions.size() * kernels.size() * expands.size();
}

void SpaceSpec::validate() const {
  require(!stages.empty(), "space: stages must not be empty");
  require(!kernels.empty() && kernels.size() <= 250, "space: kernels must hold 1..250 choices");
  require(!expands.empty() && expands.size() <= 250, "space: expands must hold 1..250 choices");
  require(!depths.empty() && depths.size() <= 250, "space: depths must hold 1..250 choices");
  require(!resolutions.empty() && resolutions.size() <= 250,
          "space: resolutions must hold 1..250 choices");
  for (int k : kernels) require(k >= 1 && k % 2 == 1, "space: kernels must be odd and positive");
  for (double e : expands)
    require(std::isfinite(e) && e >= 1.0,
            "space: expands must be finite and >= 1, got " + number(e));
  for (int r : resolutions) require(r >= 1, "space: resolutions must be positive");
  for (const auto& s : stages) {
    require(s.width >= 1, "space: stage width must be positive");
    require(s.stride == 1 || s.stride == 2, "space: stage stride must be 1 or 2");
    require(s.max_depth >= 1 && s.max_depth <= 4096, "space: stage max_depth must be 1..4096");
    for (int d : depths)
      require(d >= 1 && d <= s.max_depth, "space: every depth choice must fit every stage");
  }
  require(in_channels >= 1 && first_conv_width >= 1 && first_conv_kernel >= 1 &&
              first_conv_stride >= 1 && first_block_width >= 1 && final_expand_width >= 1 &&
              feature_mix_width >= 0 && n_classes >= 1,
          "space: layer widths must be positive");
  require(stages.size() <= 4096 && n_columns() <= 4096,
          "space: too many block slots (at most 4096 columns), got " + std::to_string(n_columns()));
  if (coupled()) {
    require(expand_by_depth.size() == depths.size(),
            "space: expand_by_depth needs one expand index per depth choice");
    for (int i : expand_by_depth)
      require(i >= 0 && i < static_cast<int>(expands.size()),
              "space: expand_by_depth index out of range");
  }
  const std::size_t cells = table_cells();
  if (cells > kMaxTableBytes / kBytesPerCell) {
    std::ostringstream msg;
    msg << "space: its memory tables would need " << cells << " cells (" << n_slots() << " slots x "
        << resolutions.size() << " resolutions x " << kernels.size() << " kernels x "
        << expands.size() << " expands), about "
        << static_cast<double>(cells) * kBytesPerCell / (1 << 30) << " GiB; at most "
        << (kMaxTableBytes >> 30) << " GiB is allowed: use fewer choices";
    throw std::invalid_argument(msg.str());
  }
}

bool same_space(const SpaceSpec& a, const SpaceSpec& b, bool ignore_classes) {
  if (a.stages.size() != b.stages.size()) return false;
  for (std::size_t i = 0; i < a.stages.size(); ++i) {
    const StageSpec &x = a.stages[i], &y = b.stages[i];
    if (x.width != y.width || x.stride != y.stride || x.se != y.se || x.max_depth != y.max_depth)
      return false;
  }
  return a.in_channels == b.in_channels && a.first_conv_width == b.first_conv_width &&
         a.first_conv_kernel == b.first_conv_kernel && a.first_conv_stride == b.first_conv_stride &&
         a.first_block_width == b.first_block_width && a.kernels == b.kernels &&
         a.expands == b.expands && a.depths == b.depths && a.resolutions == b.resolutions &&
         a.final_expand_width == b.final_expand_width &&
         a.feature_mix_width == b.feature_mix_width &&
         (ignore_classes || a.n_classes == b.n_classes) && a.expand_by_depth == b.expand_by_depth;
}

int SpaceSpec::invalid_column(const uint8_t* row) const {
  return RowCheck(*this).invalid_column(row);
}

std::ptrdiff_t SpaceSpec::first_invalid(const uint8_t* rows, std::size_t n, int* column) const {
  return RowCheck(*this).first_invalid(rows, n, column);
}

std::string SpaceSpec::column_name(int column) const {
  const ColumnOffsets o = column_offsets();
  if (column == 0) return "image_size";
  if (column < o.kernel) return "d[" + std::to_string(column - o.depth) + "]";
  if (column < o.expand) return "ks[" + std::to_string(column - o.kernel) + "]";
  return "e[" + std::to_string(column - o.expand) + "]";
}

std::string SpaceSpec::invalid_message(std::size_t row, int column, const uint8_t* data) const {
  const ColumnOffsets o = column_offsets();
  const std::string where = "encoded config row " + std::to_string(row) + ", column " +
                            std::to_string(column) + " (" + column_name(column) + ")";
  const int value = data[column];
  const std::string space_name = "space '" + (name.empty() ? std::string("?") : name) + "'";
  std::string field, choices;
  std::size_t n = 0;
  if (column == 0) {
    field = "image_size", choices = list(resolutions), n = resolutions.size();
  } else if (column < o.kernel) {
    field = "d", choices = list(depths), n = depths.size();
  } else if (column < o.expand) {
    field = "ks", choices = list(kernels), n = kernels.size();
  } else {
    field = "e", choices = list(expands), n = expands.size();
  }
  if (field == "e" && coupled() && static_cast<std::size_t>(value) < n) {
    std::string coupling;
    for (std::size_t i = 0; i < depths.size(); ++i)
      coupling += (i ? ", d=" : "d=") + std::to_string(depths[i]) +
                  " -> e=" + number(expands[expand_by_depth[i]]);
    return where + " holds expand index " + std::to_string(value) + ", but " + space_name +
           " couples expand to depth (" + coupling + ")";
  }
  return where + " holds index " + std::to_string(value) + "; allowed indices 0.." +
         std::to_string(n - 1) + " for " + field + " in " + choices;
}

RowCheck::RowCheck(const SpaceSpec& space)
    : n_columns_(space.n_columns()),
      n_stages_(space.n_stages()),
      coupled_(space.coupled()),
      stage_first_slot_(space.stage_first_slot()),
      depth_value_(space.depths),
      expand_by_depth_(space.expand_by_depth),
      depth_col_(space.column_offsets().depth),
      expand_col_(space.column_offsets().expand) {
  for (int l : space.column_limits()) limit_.push_back(static_cast<uint8_t>(l));
}

int RowCheck::first_out_of_range(const uint8_t* row) const {
  for (int c = 0; c < n_columns_; ++c)
    if (row[c] >= limit_[c]) return c;
  return -1;
}

int RowCheck::coupled_column(const uint8_t* row) const {
  // The stored expand of active slots must agree with the coupling.
  for (int s = 0; s < n_stages_; ++s) {
    const int di = row[depth_col_ + s];
    const int d = depth_value_[di];
    const uint8_t e = static_cast<uint8_t>(expand_by_depth_[di]);
    const uint8_t* col = row + expand_col_ + stage_first_slot_[s];
    for (int j = 0; j < d; ++j)
      if (col[j] != e) return expand_col_ + stage_first_slot_[s] + j;
  }
  return -1;
}

std::ptrdiff_t RowCheck::first_invalid(const uint8_t* rows, std::size_t n, int* column) const {
  const std::size_t cols = static_cast<std::size_t>(n_columns_);
  for (std::size_t i = 0; i < n; ++i) {
    const int c = invalid_column(rows + i * cols);
    if (c >= 0) {
      if (column) *column = c;
      return static_cast<std::ptrdiff_t>(i);
    }
  }
  return -1;
}

namespace {

// Index of value among choices, or -1.
template <class T>
int choice_index(const std::vector<T>& choices, double value) {
  for (std::size_t i = 0; i < choices.size(); ++i)
    if (static_cast<double>(choices[i]) == value) return static_cast<int>(i);
  return -1;
}

}  // namespace

bool SpaceSpec::encode_values(const double* ks, const double* e, const double* d, double image_size,
                              uint8_t* row) const {
  std::fill(row, row + n_columns(), uint8_t{0});
  const int r = choice_index(resolutions, image_size);
  if (r < 0) return false;
  row[0] = static_cast<uint8_t>(r);
  int slot = 0;
  for (int s = 0; s < n_stages(); ++s) {
    const int di = choice_index(depths, d[s]);
    if (di < 0) return false;
    row[col_depth(s)] = static_cast<uint8_t>(di);
    const int depth = depths[di];
    const int idle_e = coupled() ? expand_by_depth[di] : 0;
    for (int j = 0; j < stages[s].max_depth; ++j, ++slot) {
      const int k = choice_index(kernels, ks[slot]);
      const int x = choice_index(expands, e[slot]);
      if (j < depth) {
        if (k < 0 || (x < 0 && !coupled())) return false;
        row[col_kernel(slot)] = static_cast<uint8_t>(k);
        row[col_expand(slot)] = static_cast<uint8_t>(coupled() ? idle_e : x);
      } else {
        if ((k < 0 && ks[slot] != 0) || (x < 0 && e[slot] != 0)) return false;
        row[col_expand(slot)] = static_cast<uint8_t>(idle_e);
      }
    }
  }
  return true;
}

}  // namespace moofa
