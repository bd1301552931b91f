// Constraint-aware genetic operators on encoded subnets (rows of SpaceSpec columns):
// random sampling, OFA-style mutation and uniform crossover.
//
// The peak is separable (the max of a fixed part and one figure per active slot, see
// Evaluator::slot_peak), so the operators draw slot genes among the choices that fit
// the peak budget and repair slots that a depth or resolution change pushed over it.
// Nearly every candidate then fits, where OFA's rejection loop needs thousands of
// draws per candidate under tight budgets. The evaluator still checks every
// candidate (peak, MFLOPs, parameters) before it may be scored.
#pragma once

#include <cstdint>
#include <vector>

#include "moofa/memory.hpp"
#include "moofa/search_options.hpp"
#include "moofa/space.hpp"
#include "rng.hpp"

namespace moofa {

class Variation {
 public:
  // mutate_prob: per slot (kernel and expand together) and per stage depth, as in OFA;
  // resolution_mutate_prob: for the input resolution.
  Variation(const Evaluator& evaluator, const Constraints& constraints, double mutate_prob,
            double resolution_mutate_prob);

  const Evaluator& evaluator() const { return ev_; }
  const Constraints& constraints() const { return c_; }
  int n_columns() const { return n_cols_; }

  // Each operator writes a candidate into out and returns whether it fits every
  // constraint (checked by the evaluator).
  // sample: a random subnet whose peak is at most peak_cap (<= max_peak): resolution,
  // then per stage a depth, then per slot a kernel/expand, each uniform among the
  // choices that can still fit.
  // With resolution >= 0, only that input resolution is drawn (false if nothing fits there).
  bool sample(Rng& rng, int64_t peak_cap, uint8_t* out, int resolution = -1) const;
  // strength scales the mutation probabilities (capped at 1): the search raises it when
  // a child keeps landing on subnets it has already scored.
  bool mutate(const uint8_t* parent, Rng& rng, uint8_t* out, double strength = 1.0) const;
  // Uniform crossover, then a mutation of the given strength when strength > 0.
  bool crossover(const uint8_t* a, const uint8_t* b, Rng& rng, uint8_t* out,
                 double strength = 0.0) const;

  bool fits(const uint8_t* row) const;

  // The structure polish (search.cpp) walks these neighbourhoods of a canonical row.
  int n_slots() const { return n_slots_; }
  // Whether slot is active in row (within its stage's depth).
  bool active(const uint8_t* row, int slot) const {
    return slot - first_slot_[slot_stage_[slot]] < spec_.depths[row[col_depth(slot_stage_[slot])]];
  }
  // Appends to out, canonical, row with the stage depths of every depth vector within
  // radius stage changes of row's (row itself first), at row's resolution; newly active
  // slots that break the peak budget take their first choice that fits it (a vector where
  // some slot has none is left out). The rows may still break the other constraints.
  void depth_neighbours(const uint8_t* row, int radius, std::vector<uint8_t>* out) const;
  // Appends to out row with active slot's (kernel, expand) set to each other choice that
  // fits the peak budget (in a coupled space: its stage's expand), where the row then meets
  // every constraint (fits).
  void slot_variants(const uint8_t* row, int slot, std::vector<uint8_t>* out) const;
  // The same subnet with inactive slots reset (kernel 0, expand 0 or the stage's coupled
  // expand): equal subnets get equal rows, which the de-duplication and the scorer see.
  void canonical(const uint8_t* row, uint8_t* out) const;

  // Largest peak any subnet of the space can reach (with no budget).
  int64_t peak_ceiling() const { return ceiling_; }
  // Resolution indices where some subnet fits max_peak.
  const std::vector<uint8_t>& feasible_resolutions() const { return feasible_res_; }

 private:
  // SpaceSpec's column layout, its offsets cached (SpaceSpec::n_slots() sums the stages).
  int col_depth(int stage) const { return col_.depth + stage; }
  int col_kernel(int slot) const { return col_.kernel + slot; }
  int col_expand(int slot) const { return col_.expand + slot; }
  void mutate_genes(uint8_t* row, Rng& rng, double prob, double resolution_prob) const;
  bool slot_fits(int slot, int r, int k, int e, int64_t cap) const {
    return ev_.slot_peak(slot, r, k, e) <= cap;
  }
  // Uniform draw of a (kernel, expand) for one slot among those fitting cap; the expand
  // is fixed to forced_e when >= 0 (coupled spaces). Returns false when none fits.
  bool draw_slot(Rng& rng, int slot, int r, int forced_e, int64_t cap, uint8_t* row) const;
  bool depth_fits(int stage, int depth_index, int r, int64_t cap) const;
  // Puts over-budget active slots back under the peak budget; false when impossible.
  bool repair(uint8_t* row, Rng& rng) const;
  // Steps genes down until MFLOPs and params fit (the peak only drops on the way).
  bool shrink(uint8_t* row, Rng& rng) const;
  void set_depth(uint8_t* row, int stage, int depth_index) const;
  int coupled_expand(int depth_index) const { return spec_.expand_by_depth[depth_index]; }

  const Evaluator& ev_;
  const SpaceSpec& spec_;
  Constraints c_;
  double mutate_prob_, resolution_mutate_prob_;
  ColumnOffsets col_;
  int n_cols_, n_res_, n_k_, n_e_, n_d_, n_stages_, n_slots_;
  bool coupled_;
  int64_t ceiling_ = 0;
  std::vector<int> first_slot_;
  std::vector<int> slot_stage_;
  // slot_ok_[(r * n_slots + slot) * n_k * n_e + k * n_e + e]: 1 when that choice fits
  // max_peak; repair reads one byte per active slot instead of an int64 peak table.
  std::vector<uint8_t> slot_ok_;
  std::vector<uint8_t> feasible_res_;  // resolutions where some subnet fits max_peak
  // (kernel * n_e + expand) pairs fitting max_peak, listed per [r][slot][forced expand + 1 (coupled
  // only)].
  int fit_stride_ = 1;
  std::vector<uint32_t> fit_begin_;
  std::vector<uint16_t> fit_pairs_;
};

}  // namespace moofa
