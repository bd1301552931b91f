#include "moofa/space.hpp"

#include <cmath>
#include <stdexcept>

namespace moofa {

namespace {
void require(bool ok, const std::string& message) {
  if (!ok) throw std::invalid_argument(message);
}
}  // namespace

int make_divisible(double v, int divisor) {
  int new_v = std::max(divisor, static_cast<int>(v + divisor / 2.0) / divisor * divisor);
  if (new_v < 0.9 * v) new_v += divisor;
  return new_v;
}

int middle_width(int c_in, double expand) {
  if (expand == 1.0) return c_in;  // no expansion layer: the depthwise runs on the input
  // Python's round() is round-half-to-even, which nearbyint gives in the default mode.
  return make_divisible(std::nearbyint(c_in * expand), 8);
}

int SpaceSpec::n_slots() const {
  int n = 0;
  for (const auto& s : stages) n += s.max_depth;
  return n;
}

void SpaceSpec::validate() const {
  require(!stages.empty(), "space: stages must not be empty");
  require(!kernels.empty() && kernels.size() <= 250, "space: kernels must hold 1..250 choices");
  require(!expands.empty() && expands.size() <= 250, "space: expands must hold 1..250 choices");
  require(!depths.empty() && depths.size() <= 250, "space: depths must hold 1..250 choices");
  require(!resolutions.empty() && resolutions.size() <= 250,
          "space: resolutions must hold 1..250 choices");
  for (int k : kernels) require(k >= 1 && k % 2 == 1, "space: kernels must be odd and positive");
  for (double e : expands) require(e >= 1.0, "space: expands must be >= 1");
  for (int r : resolutions) require(r >= 1, "space: resolutions must be positive");
  for (const auto& s : stages) {
    require(s.width >= 1, "space: stage width must be positive");
    require(s.stride == 1 || s.stride == 2, "space: stage stride must be 1 or 2");
    require(s.max_depth >= 1, "space: stage max_depth must be positive");
    for (int d : depths)
      require(d >= 1 && d <= s.max_depth, "space: every depth choice must fit every stage");
  }
  require(in_channels >= 1 && first_conv_width >= 1 && first_conv_kernel >= 1 &&
              first_conv_stride >= 1 && first_block_width >= 1 && final_expand_width >= 1 &&
              feature_mix_width >= 0 && n_classes >= 1,
          "space: layer widths must be positive");
  require(n_columns() <= 4096, "space: too many block slots");
  if (coupled()) {
    require(expand_by_depth.size() == depths.size(),
            "space: expand_by_depth needs one expand index per depth choice");
    for (int i : expand_by_depth)
      require(i >= 0 && i < static_cast<int>(expands.size()),
              "space: expand_by_depth index out of range");
  }
}

}  // namespace moofa
