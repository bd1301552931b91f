#include "moofa/optimum.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <stdexcept>
#include <string>
#include <utility>

#include "bound_kernels.hpp"

namespace moofa {

namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

struct Choice {
  int k = 0, e = 0;
  int64_t macs = 0, params = 0;
};

// A hidden layer after the first (x @ W + b), with |W| and W transposed: the bound runs
// interval arithmetic forward (|W|) and a linear bound backward (W^T). The weights stay
// float (the predictor's own values); every sum is in double.
struct Hidden {
  int in = 0, out = 0;
  std::vector<float> w, abs_w, wt;
  std::vector<double> b;
};

class Solver {
 public:
  Solver(const Evaluator& ev, const Constraints& c, const std::vector<DenseLayer>& layers,
         const std::vector<float>& skip, float scale, float offset, const OptimumOptions& opt)
      : ev_(ev), sp_(ev.space()), c_(c), opt_(opt) {
    c_.validate();
    if (ev.model() == MemoryModel::kTflm)
      throw std::invalid_argument(
          "memory_model: the exact optimum needs a peak that is a max over layers ('full' or "
          "'activations'/'mcu'); 'tflm' plans the arena over the whole graph: use the search");
    const int n_f = sp_.one_hot_size();
    if (layers.empty())
      throw std::invalid_argument("layers: the exact optimum needs at least one layer");
    for (std::size_t i = 0; i < layers.size(); ++i) {
      const DenseLayer& L = layers[i];
      const int want_in = i == 0 ? n_f : layers[i - 1].out;
      const int want_out = i + 1 == layers.size() ? 1 : L.out;
      if (L.in != want_in || L.out != want_out || L.out < 1 ||
          L.weight.size() != static_cast<std::size_t>(L.in) * L.out ||
          L.bias.size() != static_cast<std::size_t>(L.out))
        throw std::invalid_argument(
            "layers[" + std::to_string(i) + "]: shape does not match (expected in " +
            std::to_string(want_in) + ", out " + std::to_string(want_out) + ")");
    }
    if (!skip.empty() && skip.size() != static_cast<std::size_t>(n_f))
      throw std::invalid_argument("skip: expected " + std::to_string(n_f) + " weights, got " +
                                  std::to_string(skip.size()));
    if (!std::isfinite(scale) || !std::isfinite(offset))
      throw std::invalid_argument("scale and offset must be finite");
    n_k_ = static_cast<int>(sp_.kernels.size());
    n_e_ = static_cast<int>(sp_.expands.size());
    n_d_ = static_cast<int>(sp_.depths.size());
    n_res_ = static_cast<int>(sp_.resolutions.size());
    n_slots_ = sp_.n_slots();
    S_ = sp_.n_stages();
    first_slot_ = sp_.stage_first_slot();
    slot_stage_ = sp_.slot_stage();
    for (int st = 0; st < S_; ++st)
      for (int p = 0; p < sp_.stages[st].max_depth; ++p) slot_pos_.push_back(p);
    for (const StageSpec& st : sp_.stages) max_depth_.push_back(st.max_depth);
    k_base_ = sp_.one_hot_kernel_offset();
    e_base_ = sp_.one_hot_expand_offset();
    const double sc = scale;
    lin_.assign(static_cast<std::size_t>(n_f), 0.0);
    for (int f = 0; f < n_f && !skip.empty(); ++f) lin_[f] = sc * skip[f];
    if (layers.size() == 1) {
      H_ = 0;
      for (int f = 0; f < n_f; ++f) lin_[f] += sc * layers[0].weight[f];
      c0_ = offset + sc * layers[0].bias[0];
    } else {
      H_ = layers[0].out;
      W0_.assign(layers[0].weight.begin(), layers[0].weight.end());
      b0_.assign(layers[0].bias.begin(), layers[0].bias.end());
      for (std::size_t i = 1; i + 1 < layers.size(); ++i) {
        const DenseLayer& L = layers[i];
        Hidden h;
        h.in = L.in;
        h.out = L.out;
        h.w.assign(L.weight.begin(), L.weight.end());
        h.b.assign(L.bias.begin(), L.bias.end());
        h.abs_w.resize(h.w.size());
        h.wt.resize(h.w.size());
        for (int a = 0; a < L.in; ++a)
          for (int o = 0; o < L.out; ++o) {
            const float x = h.w[static_cast<std::size_t>(a) * L.out + o];
            h.abs_w[static_cast<std::size_t>(a) * L.out + o] = std::abs(x);
            h.wt[static_cast<std::size_t>(o) * L.in + a] = x;
          }
        deep_.push_back(std::move(h));
      }
      const DenseLayer& last = layers.back();
      w2_.resize(last.in);
      for (int j = 0; j < last.in; ++j) w2_[j] = sc * last.weight[j];
      c0_ = offset + sc * last.bias[0];
    }
    for (const DenseLayer& L : layers)
      for (float x : L.weight)
        if (!std::isfinite(x)) throw std::invalid_argument("layers: weights must be finite");
    for (const DenseLayer& L : layers)
      for (float x : L.bias)
        if (!std::isfinite(x)) throw std::invalid_argument("layers: biases must be finite");
    for (double x : W0_)
      if (!std::isfinite(x)) throw std::invalid_argument("layers: weights must be finite");
    for (double x : lin_)
      if (!std::isfinite(x)) throw std::invalid_argument("skip: weights must be finite");
    if (!opt_.start_row.empty()) {
      if (opt_.start_row.size() != static_cast<std::size_t>(sp_.n_columns()) ||
          ev_.invalid_column(opt_.start_row.data()) >= 0)
        throw std::invalid_argument("start_row: not a valid encoded subnet of the space");
    }
  }

  OptimumResult run() {
    start_ = std::chrono::steady_clock::now();
    row_.assign(static_cast<std::size_t>(sp_.n_columns()), 0);
    if (!opt_.start_row.empty() && fits(opt_.start_row.data())) {
      best_ = score_row(opt_.start_row.data());
      best_row_ = canonical(opt_.start_row.data());
    }
    // Root bound of every resolution that can fit, then the resolutions best bound first.
    std::vector<std::pair<double, int>> roots;
    for (int r = 0; r < n_res_; ++r) {
      if (!prepare(r)) continue;
      roots.emplace_back(root_bound(), r);
    }
    std::sort(roots.begin(), roots.end(), [](const auto& a, const auto& b) {
      return a.first > b.first || (a.first == b.first && a.second < b.second);
    });
    // Phase 1 lists the structures (resolution and stage depths) whose bound beats the
    // incumbent; phase 2 chooses the slots of each, best bound first over all
    // resolutions, so the most promising structure is searched first wherever it is.
    double open = -kInf;  // largest bound of a part of the space left unsearched
    for (const auto& [root, r] : roots) {
      if (root <= best_) continue;
      if (stop_) {
        open = std::max(open, root);
        continue;
      }
      prepare(r);
      depth_dfs(0);
      if (stop_) open = std::max(open, root);
    }
    std::stable_sort(structures_.begin(), structures_.end(),
                     [](const Structure& a, const Structure& b) { return a.bound > b.bound; });
    int prepared = -1;
    auto enter = [&](const Structure& x) {
      if (x.r != prepared) {
        prepare(x.r);
        prepared = x.r;
      }
      for (int st = 0; st < S_; ++st) set_depth(st, x.depth[st]);
      setup_slots();
    };
    // A greedy descent into each structure first (the most promising choice of every
    // slot, no backtracking): a good incumbent early, for at most half the node limit.
    greedy_ = true;
    for (const Structure& x : structures_) {
      if (stop_ || x.bound <= best_) break;
      if (opt_.max_nodes > 0 && 2 * nodes_ > opt_.max_nodes) break;
      enter(x);
      slot_dfs(0);
    }
    greedy_ = false;
    for (const Structure& x : structures_) {
      if (x.bound <= best_) break;  // sorted: no structure left can beat the incumbent
      if (stop_) {
        open = std::max(open, x.bound);
        break;
      }
      enter(x);
      slot_dfs(0);
      if (stop_) open = std::max(open, x.bound);
    }
    OptimumResult out;
    out.nodes = nodes_;
    out.best_row = best_row_;
    out.best_score = best_row_.empty() ? -kInf : best_;
    out.proven_optimal = !stop_;
    out.upper_bound = stop_ ? std::max(open, out.best_score) : out.best_score;
    return out;
  }

 private:
  int na(int st, int di) const { return std::min(sp_.depths[di], max_depth_[st]); }
  std::size_t sd(int s, int di) const { return static_cast<std::size_t>(s) * n_d_ + di; }

  bool fits(const uint8_t* row) const {
    return ev_.peak(row) <= c_.max_peak && ev_.mflops(row) <= c_.max_mflops &&
           ev_.params(row) <= c_.max_params;
  }

  std::vector<uint8_t> canonical(const uint8_t* row) const {
    std::vector<uint8_t> out(row, row + sp_.n_columns());
    for (int st = 0; st < S_; ++st) {
      const int di = row[sp_.col_depth(st)];
      for (int p = na(st, di); p < max_depth_[st]; ++p) {
        const int s = first_slot_[st] + p;
        out[sp_.col_kernel(s)] = 0;
        out[sp_.col_expand(s)] = static_cast<uint8_t>(sp_.coupled() ? sp_.expand_by_depth[di] : 0);
      }
    }
    return out;
  }

  // The model's score of a row, in double (the bound's arithmetic).
  double score_row(const uint8_t* row) const {
    const int r = row[0];
    std::vector<double> z(b0_);
    double lin = c0_ + lin_[r];
    auto add = [&](int f) {
      lin += lin_[f];
      for (int j = 0; j < H_; ++j) z[j] += W0_[static_cast<std::size_t>(f) * H_ + j];
    };
    if (H_ > 0)
      for (int j = 0; j < H_; ++j) z[j] += W0_[static_cast<std::size_t>(r) * H_ + j];
    for (int st = 0; st < S_; ++st) {
      const int di = row[sp_.col_depth(st)];
      for (int p = 0; p < na(st, di); ++p) {
        const int s = first_slot_[st] + p;
        add(k_base_ + s * n_k_ + row[sp_.col_kernel(s)]);
        add(e_base_ + s * n_e_ + row[sp_.col_expand(s)]);
      }
    }
    return lin + head(z);
  }

  // w2 . relu(...) of the layers above the first, from the first layer's pre-activations.
  double head(const std::vector<double>& z1) const {
    if (H_ == 0) return 0.0;
    std::vector<double> h(z1), z;
    for (double& x : h) x = std::max(x, 0.0);
    for (const Hidden& L : deep_) {
      z = L.b;
      for (int a = 0; a < L.in; ++a) {
        if (h[a] == 0.0) continue;
        kern_.axpy(h[a], &L.w[static_cast<std::size_t>(a) * L.out], z.data(), L.out);
      }
      h.resize(z.size());
      for (std::size_t o = 0; o < z.size(); ++o) h[o] = std::max(z[o], 0.0);
    }
    double y = 0.0;
    for (std::size_t j = 0; j < h.size(); ++j) y += w2_[j] * h[j];
    return y;
  }

  // Tables of resolution r; false when no subnet can fit there.
  bool prepare(int r) {
    r_ = r;
    if (ev_.fixed_peak(r) > c_.max_peak) return false;
    const auto H = static_cast<std::size_t>(H_);
    ch_.assign(n_slots_, {});
    G_.assign(n_slots_, {});
    T_.assign(n_slots_, {});
    voff_.assign(n_slots_ + 1, 0);
    allow_.assign(static_cast<std::size_t>(n_slots_) * n_d_, {});
    for (int s = 0; s < n_slots_; ++s) {
      for (int k = 0; k < n_k_; ++k)
        for (int e = 0; e < n_e_; ++e) {
          if (ev_.slot_peak(s, r, k, e) > c_.max_peak) continue;
          ch_[s].push_back({k, e, ev_.slot_macs(s, r, k, e), ev_.slot_params(s, k, e)});
          const int kf = k_base_ + s * n_k_ + k, ef = e_base_ + s * n_e_ + e;
          T_[s].push_back(lin_[kf] + lin_[ef]);
          for (std::size_t j = 0; j < H; ++j) G_[s].push_back(W0_[kf * H + j] + W0_[ef * H + j]);
        }
      voff_[s + 1] = voff_[s] + static_cast<int>(ch_[s].size());
    }
    // Allowed choices of each slot under each depth (active slots only), feasible depths.
    feas_.assign(static_cast<std::size_t>(S_) * n_d_, 0);
    smin_suf_.assign(static_cast<std::size_t>(n_slots_) * n_d_ * H, 0.0);
    smax_suf_.assign(smin_suf_.size(), 0.0);
    smin1_.assign(smin_suf_.size(), 0.0);
    smax1_.assign(smin_suf_.size(), 0.0);
    macs1_.assign(static_cast<std::size_t>(n_slots_) * n_d_, 0);
    params1_.assign(macs1_.size(), 0);
    macs_suf_.assign(static_cast<std::size_t>(n_slots_) * n_d_, 0);
    params_suf_.assign(macs_suf_.size(), 0);
    stmin_.assign(static_cast<std::size_t>(S_ + 1) * H, 0.0);
    stmax_.assign(stmin_.size(), 0.0);
    st_macs_.assign(S_ + 1, 0);
    st_params_.assign(S_ + 1, 0);
    bool any_stage_infeasible = false;
    for (int st = 0; st < S_; ++st) {
      bool any = false;
      std::vector<double> smin(H), smax(H);
      std::vector<double> best_min(H, kInf), best_max(H, -kInf);
      int64_t best_macs = INT64_MAX, best_params = INT64_MAX;
      for (int di = 0; di < n_d_; ++di) {
        const int n = na(st, di);
        bool ok = true;
        for (int p = 0; p < n; ++p) {
          const int s = first_slot_[st] + p;
          std::vector<int>& a = allow_[sd(s, di)];
          for (int c = 0; c < static_cast<int>(ch_[s].size()); ++c)
            if (!sp_.coupled() || ch_[s][c].e == sp_.expand_by_depth[di]) a.push_back(c);
          ok = ok && !a.empty();
        }
        if (!ok) continue;
        feas_[static_cast<std::size_t>(st) * n_d_ + di] = 1;
        any = true;
        // Suffix (within the stage) sums of per-slot minima and maxima.
        std::fill(smin.begin(), smin.end(), 0.0);
        std::fill(smax.begin(), smax.end(), 0.0);
        int64_t m = 0, q = 0;
        for (int p = n - 1; p >= 0; --p) {
          const int s = first_slot_[st] + p;
          int64_t mm = INT64_MAX, qq = INT64_MAX;
          for (std::size_t j = 0; j < H; ++j) {
            double lo = kInf, hi = -kInf;
            for (int c : allow_[sd(s, di)]) {
              const double g = G_[s][c * H + j];
              lo = std::min(lo, g);
              hi = std::max(hi, g);
            }
            smin[j] += lo;
            smax[j] += hi;
            smin1_[sd(s, di) * H + j] = lo;
            smax1_[sd(s, di) * H + j] = hi;
          }
          for (int c : allow_[sd(s, di)]) {
            mm = std::min(mm, ch_[s][c].macs);
            qq = std::min(qq, ch_[s][c].params);
          }
          m += mm;
          q += qq;
          macs1_[sd(s, di)] = mm;
          params1_[sd(s, di)] = qq;
          std::copy(smin.begin(), smin.end(), smin_suf_.begin() + sd(s, di) * H);
          std::copy(smax.begin(), smax.end(), smax_suf_.begin() + sd(s, di) * H);
          macs_suf_[sd(s, di)] = m;
          params_suf_[sd(s, di)] = q;
        }
        for (std::size_t j = 0; j < H; ++j) {
          best_min[j] = std::min(best_min[j], smin[j]);
          best_max[j] = std::max(best_max[j], smax[j]);
        }
        best_macs = std::min(best_macs, m);
        best_params = std::min(best_params, q);
      }
      if (!any) {
        any_stage_infeasible = true;
        continue;
      }
      std::copy(best_min.begin(), best_min.end(), stmin_.begin() + st * H);
      std::copy(best_max.begin(), best_max.end(), stmax_.begin() + st * H);
      st_macs_[st] = best_macs;
      st_params_[st] = best_params;
    }
    if (any_stage_infeasible) return false;
    // Stage sums become suffix sums over the stages (entry S stays 0).
    for (int st = S_ - 1; st >= 0; --st) {
      for (std::size_t j = 0; j < H; ++j) {
        stmin_[st * H + j] += stmin_[(st + 1) * H + j];
        stmax_[st * H + j] += stmax_[(st + 1) * H + j];
      }
      st_macs_[st] += st_macs_[st + 1];
      st_params_[st] += st_params_[st + 1];
    }
    // The fixed part: bias, resolution row, fixed MACs and parameters.
    F_.assign(H, 0.0);
    for (std::size_t j = 0; j < H; ++j) F_[j] = b0_[j] + W0_[static_cast<std::size_t>(r) * H + j];
    lin_acc_ = c0_ + lin_[r];
    macs_ = ev_.fixed_macs(r);
    params_ = ev_.fixed_params();
    if (!macs_fit(macs_ + st_macs_[0]) || params_ + st_params_[0] > c_.max_params) return false;
    std::fill(row_.begin(), row_.end(), 0);
    row_[0] = static_cast<uint8_t>(r);
    v_.assign(static_cast<std::size_t>(voff_[n_slots_]), 0.0);
    a_.assign(H, 0.0);
    lo_.assign(H, 0.0);
    hi_.assign(H, 0.0);
    dval_.assign(n_d_, -kInf);
    dmin_.assign(H, 0.0);
    dmax_.assign(H, 0.0);
    depth_.assign(S_, 0);
    macs_fixed_depth_ = 0;
    params_fixed_depth_ = 0;
    // Slots by influence on the output: sum over units of |w| times the slot's range, w
    // the unit's weight to the output (deeper nets: its coefficient in the root's bound).
    lo1_.assign(H, 0.0);
    hi1_.assign(H, 0.0);
    blo_.assign(deep_.size(), {});
    bhi_.assign(deep_.size(), {});
    std::vector<double> unit_w;
    if (deep_.empty()) {
      unit_w = w2_;
    } else {
      linearise(stmin_.data(), stmax_.data());
      unit_w = a_;
    }
    std::vector<double> impact(n_slots_, 0.0);
    for (int s = 0; s < n_slots_; ++s) {
      double tlo = kInf, thi = -kInf;
      for (double t : T_[s]) {
        tlo = std::min(tlo, t);
        thi = std::max(thi, t);
      }
      impact[s] = thi - tlo;
      for (std::size_t j = 0; j < H; ++j) {
        double lo = kInf, hi = -kInf;
        for (std::size_t c = 0; c < ch_[s].size(); ++c) {
          lo = std::min(lo, G_[s][c * H + j]);
          hi = std::max(hi, G_[s][c * H + j]);
        }
        impact[s] += std::abs(unit_w[j]) * (hi - lo);
      }
    }
    slot_rank_.resize(n_slots_);
    for (int s = 0; s < n_slots_; ++s) slot_rank_[s] = s;
    std::stable_sort(slot_rank_.begin(), slot_rank_.end(),
                     [&](int x, int y) { return impact[x] > impact[y]; });
    return true;
  }

  bool macs_fit(int64_t macs) const { return static_cast<double>(macs) / 1e6 <= c_.max_mflops; }

  // Best value of slot s under depth di with the current linear coefficients.
  double slot_best(int s, int di) const {
    double b = -kInf;
    for (int c : allow_[sd(s, di)]) b = std::max(b, v_[voff_[s] + c]);
    return b;
  }
  // Best value of stage st over its feasible depths (writes each depth's value to dval).
  double stage_best(int st, double* dval) const {
    double best = -kInf;
    for (int di = 0; di < n_d_; ++di) {
      double v = -kInf;
      if (feas_[static_cast<std::size_t>(st) * n_d_ + di]) {
        v = 0.0;
        for (int p = 0; p < na(st, di); ++p) v += slot_best(first_slot_[st] + p, di);
      }
      if (dval) dval[di] = v;
      best = std::max(best, v);
    }
    return best;
  }

  // The linear upper bound of every hidden unit on [lo, hi] (pre-activations F_ + the
  // remaining part's [rmin, rmax]); returns the constant part of the bound (the
  // coefficients, in a_, still multiply the remaining part's first-layer sum).
  //
  // Deeper nets: interval bounds of every later layer's pre-activations from those of the
  // first (exact there), then one backward pass from the output relaxes each ReLU the
  // same way (chord above, 0 or identity below, by the sign of the coefficient that
  // reaches it) down to the first layer: a linear bound in the first layer's sum whose
  // maximum over the remaining choices is taken per slot, as for one hidden layer.
  double linearise(const double* rmin, const double* rmax) {
    const auto H = static_cast<std::size_t>(H_);
    double cst = lin_acc_;
    for (std::size_t j = 0; j < H; ++j) {
      lo1_[j] = F_[j] + rmin[j];
      hi1_[j] = F_[j] + rmax[j];
    }
    const double* lam = w2_.data();
    if (!deep_.empty()) {
      // Forward: intervals of each hidden layer's pre-activations.
      const double* plo = lo1_.data();
      const double* phi = hi1_.data();
      for (std::size_t k = 0; k < deep_.size(); ++k) {
        const Hidden& L = deep_[k];
        std::vector<double>& lo = blo_[k];
        std::vector<double>& hi = bhi_[k];
        std::vector<double>& rad = rad_;
        lo = L.b;
        rad.assign(static_cast<std::size_t>(L.out), 0.0);
        for (int a = 0; a < L.in; ++a) {
          const double l = std::max(plo[a], 0.0), u = std::max(phi[a], 0.0);
          if (u == 0.0) continue;
          const std::size_t at = static_cast<std::size_t>(a) * L.out;
          kern_.interval(0.5 * (l + u), 0.5 * (u - l), &L.w[at], &L.abs_w[at], lo.data(),
                         rad.data(), L.out);
        }
        hi.resize(lo.size());
        for (std::size_t o = 0; o < lo.size(); ++o) {
          hi[o] = lo[o] + rad[o];
          lo[o] -= rad[o];
        }
        plo = lo.data();
        phi = hi.data();
      }
      // Backward: coefficients on each layer's pre-activations, from the output down.
      lam_ = w2_;
      for (std::size_t k = deep_.size(); k-- > 0;) {
        const Hidden& L = deep_[k];
        mu_.assign(static_cast<std::size_t>(L.out), 0.0);
        for (int o = 0; o < L.out; ++o) {
          double a = 0.0, b = 0.0;
          relax(blo_[k][o], bhi_[k][o], lam_[o], &a, &b);
          mu_[o] = a;
          cst += b + a * L.b[o];
        }
        lam_.assign(static_cast<std::size_t>(L.in), 0.0);
        for (int o = 0; o < L.out; ++o) {
          const double m = mu_[o];
          if (m == 0.0) continue;
          kern_.axpy(m, &L.wt[static_cast<std::size_t>(o) * L.in], lam_.data(), L.in);
        }
      }
      lam = lam_.data();
    }
    for (std::size_t j = 0; j < H; ++j) {
      double a = 0.0, b = 0.0;
      relax(lo1_[j], hi1_[j], lam[j], &a, &b);
      a_[j] = a;
      cst += a * F_[j] + b;
    }
    // The units the remaining choices can move: the others add nothing to the values.
    live_.clear();
    for (std::size_t j = 0; j < H; ++j)
      if (a_[j] != 0.0) live_.push_back(static_cast<int>(j));
    return cst;
  }

  // w * relu(z) <= a * z + b for z in [lo, hi].
  static void relax(double lo, double hi, double w, double* a, double* b) {
    *b = 0.0;
    if (hi <= 0.0) {
      *a = 0.0;
    } else if (lo >= 0.0) {
      *a = w;
    } else if (w >= 0.0) {
      *a = w * (hi / (hi - lo));
      *b = -*a * lo;
    } else {
      *a = hi >= -lo ? w : 0.0;
    }
  }

  // v_ for every choice of the slots listed (or of all slots from `from` on).
  void values_of(int s) {
    const auto H = static_cast<std::size_t>(H_);
    const double* g = G_[s].data();
    const bool sparse = 2 * live_.size() < H;
    for (int c = 0; c < static_cast<int>(ch_[s].size()); ++c, g += H) {
      double v = T_[s][c];
      if (sparse) {
        for (int j : live_) v += a_[j] * g[j];
      } else {
        for (std::size_t j = 0; j < H; ++j) v += a_[j] * g[j];
      }
      v_[voff_[s] + c] = v;
    }
  }

  // Phase 1 bound: stages before st have their depth (no slot chosen), the rest are open.
  // Leaves each depth's value of stage st in dval_.
  double depth_bound(int st) {
    const auto H = static_cast<std::size_t>(H_);
    for (std::size_t j = 0; j < H; ++j) {
      lo_[j] = dmin_[j] + stmin_[st * H + j];
      hi_[j] = dmax_[j] + stmax_[st * H + j];
    }
    const double cst = linearise(lo_.data(), hi_.data());
    double rest = 0.0;
    for (int t = 0; t < S_; ++t) {
      if (t < st) {
        for (int p = 0; p < na(t, depth_[t]); ++p) {
          const int s = first_slot_[t] + p;
          values_of(s);
          rest += slot_best(s, depth_[t]);
        }
      } else {
        for (int p = 0; p < max_depth_[t]; ++p) values_of(first_slot_[t] + p);
        rest += stage_best(t, t == st ? dval_.data() : nullptr);
      }
    }
    return cst + rest;
  }

  // Phase 2 bound: every depth is set; the slots in order_ not yet chosen remain, their
  // ranges summed in rmin_/rmax_.
  double slot_bound() {
    const double cst = linearise(rmin_.data(), rmax_.data());
    double rest = 0.0;
    for (int s : order_) {
      if (chosen_[s]) continue;
      values_of(s);
      rest += slot_best(s, depth_[slot_stage_[s]]);
    }
    return cst + rest;
  }

  // Upper bound at the root of the current resolution.
  double root_bound() { return depth_bound(0); }

  bool out_of_time() {
    ++nodes_;
    if (opt_.max_nodes > 0 && nodes_ > opt_.max_nodes) stop_ = true;
    if ((nodes_ & 255) == 0) {
      if (opt_.time_limit > 0) {
        const std::chrono::duration<double> dt = std::chrono::steady_clock::now() - start_;
        if (dt.count() > opt_.time_limit) stop_ = true;
      }
      if (opt_.keep_going && !opt_.keep_going()) stop_ = true;
    }
    return stop_;
  }

  void leaf() {
    const double score = lin_acc_ + head(F_);
    if (score > best_ && fits(row_.data())) {
      best_ = score;
      best_row_ = row_;
    }
  }

  void set_depth(int st, int di) {
    depth_[st] = di;
    row_[sp_.col_depth(st)] = static_cast<uint8_t>(di);
    const uint8_t idle_e = static_cast<uint8_t>(sp_.coupled() ? sp_.expand_by_depth[di] : 0);
    for (int p = 0; p < max_depth_[st]; ++p) {
      const int s = first_slot_[st] + p;
      row_[sp_.col_kernel(s)] = 0;
      row_[sp_.col_expand(s)] = idle_e;
    }
  }

  void apply(int s, int c, double sign) {
    const auto H = static_cast<std::size_t>(H_);
    const double* g = &G_[s][static_cast<std::size_t>(c) * H];
    for (std::size_t j = 0; j < H; ++j) F_[j] += sign * g[j];
    lin_acc_ += sign * T_[s][c];
  }

  // Phase 1: the depth of stage st (stages before it have theirs).
  void depth_dfs(int st) {
    if (stop_) return;
    if (st == S_) {
      setup_slots();
      const double b = slot_bound();
      if (b > best_) structures_.push_back({b, r_, depth_});
      return;
    }
    if (out_of_time()) return;
    const double b = depth_bound(st);
    if (b <= best_) return;
    const double here = *std::max_element(dval_.begin(), dval_.end());
    std::vector<std::pair<double, int>> kids;
    for (int d = 0; d < n_d_; ++d) {
      if (!feas_[static_cast<std::size_t>(st) * n_d_ + d]) continue;
      const double est = b - here + dval_[d];
      const int64_t m = macs_fixed_depth_ + macs_suf_[sd(first_slot_[st], d)] + st_macs_[st + 1];
      const int64_t q =
          params_fixed_depth_ + params_suf_[sd(first_slot_[st], d)] + st_params_[st + 1];
      if (est > best_ && macs_fit(macs_ + m) && params_ + q <= c_.max_params)
        kids.emplace_back(est, d);
    }
    std::sort(kids.begin(), kids.end(), [](auto& x, auto& y) { return x.first > y.first; });
    const auto H = static_cast<std::size_t>(H_);
    for (const auto& [est, d] : kids) {
      if (est <= best_ || stop_) break;
      set_depth(st, d);
      const double* mn = &smin_suf_[sd(first_slot_[st], d) * H];
      const double* mx = &smax_suf_[sd(first_slot_[st], d) * H];
      for (std::size_t j = 0; j < H; ++j) {
        dmin_[j] += mn[j];
        dmax_[j] += mx[j];
      }
      macs_fixed_depth_ += macs_suf_[sd(first_slot_[st], d)];
      params_fixed_depth_ += params_suf_[sd(first_slot_[st], d)];
      depth_dfs(st + 1);
      for (std::size_t j = 0; j < H; ++j) {
        dmin_[j] -= mn[j];
        dmax_[j] -= mx[j];
      }
      macs_fixed_depth_ -= macs_suf_[sd(first_slot_[st], d)];
      params_fixed_depth_ -= params_suf_[sd(first_slot_[st], d)];
    }
  }

  // Every depth is set: list the active slots and sum their ranges (slot_dfs then chooses
  // them one by one).
  void setup_slots() {
    const auto H = static_cast<std::size_t>(H_);
    order_.clear();
    for (int s : slot_rank_)
      if (slot_pos_[s] < na(slot_stage_[s], depth_[slot_stage_[s]])) order_.push_back(s);
    rmin_.assign(H, 0.0);
    rmax_.assign(H, 0.0);
    rem_macs_ = 0;
    rem_params_ = 0;
    chosen_.assign(n_slots_, 0);
    for (int s : order_) {
      const std::size_t k = sd(s, depth_[slot_stage_[s]]);
      for (std::size_t j = 0; j < H; ++j) {
        rmin_[j] += smin1_[k * H + j];
        rmax_[j] += smax1_[k * H + j];
      }
      rem_macs_ += macs1_[k];
      rem_params_ += params1_[k];
    }
  }

  // Phase 2: q slots are chosen; the next is the one whose choices spread the bound most.
  void slot_dfs(int q) {
    if (stop_) return;
    if (q == static_cast<int>(order_.size())) {
      leaf();
      return;
    }
    if (out_of_time()) return;
    const double b = slot_bound();
    if (b <= best_) return;
    int s = -1;
    double spread = -1.0;
    for (int t : order_) {
      if (chosen_[t]) continue;
      double lo = kInf, hi = -kInf;
      for (int c : allow_[sd(t, depth_[slot_stage_[t]])]) {
        lo = std::min(lo, v_[voff_[t] + c]);
        hi = std::max(hi, v_[voff_[t] + c]);
      }
      if (hi - lo > spread) {
        spread = hi - lo;
        s = t;
      }
    }
    const int di = depth_[slot_stage_[s]];
    const std::size_t k = sd(s, di);
    const double here = slot_best(s, di);
    const int64_t m_rest = rem_macs_ - macs1_[k], q_rest = rem_params_ - params1_[k];
    std::vector<std::pair<double, int>> kids;
    for (int c : allow_[k]) {
      const double est = b - here + v_[voff_[s] + c];
      if (est > best_ && macs_fit(macs_ + ch_[s][c].macs + m_rest) &&
          params_ + ch_[s][c].params + q_rest <= c_.max_params)
        kids.emplace_back(est, c);
    }
    std::sort(kids.begin(), kids.end(), [](auto& x, auto& y) { return x.first > y.first; });
    const auto H = static_cast<std::size_t>(H_);
    chosen_[s] = 1;
    for (std::size_t j = 0; j < H; ++j) {
      rmin_[j] -= smin1_[k * H + j];
      rmax_[j] -= smax1_[k * H + j];
    }
    rem_macs_ = m_rest;
    rem_params_ = q_rest;
    for (const auto& [est, c] : kids) {
      if (est <= best_ || stop_) break;
      apply(s, c, 1.0);
      macs_ += ch_[s][c].macs;
      params_ += ch_[s][c].params;
      row_[sp_.col_kernel(s)] = static_cast<uint8_t>(ch_[s][c].k);
      row_[sp_.col_expand(s)] = static_cast<uint8_t>(ch_[s][c].e);
      slot_dfs(q + 1);
      apply(s, c, -1.0);
      macs_ -= ch_[s][c].macs;
      params_ -= ch_[s][c].params;
      if (greedy_) break;
    }
    chosen_[s] = 0;
    for (std::size_t j = 0; j < H; ++j) {
      rmin_[j] += smin1_[k * H + j];
      rmax_[j] += smax1_[k * H + j];
    }
    rem_macs_ += macs1_[k];
    rem_params_ += params1_[k];
    row_[sp_.col_kernel(s)] = 0;
    row_[sp_.col_expand(s)] = static_cast<uint8_t>(sp_.coupled() ? sp_.expand_by_depth[di] : 0);
  }

  const Evaluator& ev_;
  const SpaceSpec& sp_;
  Constraints c_;
  OptimumOptions opt_;
  int n_k_ = 0, n_e_ = 0, n_d_ = 0, n_res_ = 0, n_slots_ = 0, S_ = 0, H_ = 0;
  int k_base_ = 0, e_base_ = 0;
  std::vector<int> first_slot_, max_depth_;
  std::vector<double> W0_, b0_, w2_, lin_;
  std::vector<Hidden> deep_;  // hidden layers after the first
  detail::BoundKernels kern_ = detail::bound_kernels(default_isa());
  // Scratch of linearise: first-layer and deeper intervals, backward coefficients.
  std::vector<double> lo1_, hi1_, rad_, lam_, mu_;
  std::vector<std::vector<double>> blo_, bhi_;
  double c0_ = 0.0;
  // Tables of the current resolution.
  int r_ = 0;
  std::vector<std::vector<Choice>> ch_;
  std::vector<std::vector<double>> G_, T_;
  std::vector<int> voff_;
  std::vector<std::vector<int>> allow_;
  std::vector<char> feas_;
  std::vector<double> smin_suf_, smax_suf_, stmin_, stmax_;
  std::vector<int64_t> macs_suf_, params_suf_, st_macs_, st_params_;
  // Search state.
  std::vector<double> F_, v_, a_, lo_, hi_, dval_, dmin_, dmax_, rmin_, rmax_;
  std::vector<int> live_;
  std::vector<double> smin1_, smax1_;  // [slot][depth][unit]: one slot's range
  std::vector<int64_t> macs1_, params1_;
  std::vector<char> chosen_;
  int64_t rem_macs_ = 0, rem_params_ = 0;
  std::vector<int> depth_, order_, slot_rank_, slot_stage_, slot_pos_;
  int64_t macs_fixed_depth_ = 0, params_fixed_depth_ = 0;
  double lin_acc_ = 0.0;
  int64_t macs_ = 0, params_ = 0;
  std::vector<uint8_t> row_, best_row_;
  double best_ = -kInf;
  int64_t nodes_ = 0;
  bool stop_ = false;
  bool greedy_ = false;  // slot_dfs follows the first child only
  struct Structure {
    double bound;
    int r;
    std::vector<int> depth;
  };
  std::vector<Structure> structures_;  // phase 1's output
  std::chrono::steady_clock::time_point start_;
};

}  // namespace

OptimumResult mlp_optimum(const Evaluator& evaluator, const Constraints& constraints,
                          const std::vector<DenseLayer>& layers, const std::vector<float>& skip,
                          float scale, float offset, const OptimumOptions& options) {
  Solver solver(evaluator, constraints, layers, skip, scale, offset, options);
  return solver.run();
}

}  // namespace moofa
