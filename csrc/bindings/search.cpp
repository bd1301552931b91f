// pybind11 layer over moofa/search.hpp and moofa/pareto.hpp: argument checks under the
// GIL, the searches without it. A Python callable can stand in for a C++ scorer: it is
// wrapped here (and only here) in a Scorer that takes the GIL for each batch.
#include "moofa/search.hpp"

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <chrono>
#include <cmath>
#include <cstring>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <type_traits>

#include "bindings.hpp"
#include "moofa/latency.hpp"
#include "moofa/memory.hpp"
#include "moofa/pareto.hpp"

namespace py = pybind11;

namespace moofa::bind {

namespace {

std::string shape_of(const py::array& a) {
  std::string s = "(";
  for (py::ssize_t i = 0; i < a.ndim(); ++i) s += (i ? ", " : "") + std::to_string(a.shape(i));
  return s + (a.ndim() == 1 ? ",)" : ")");
}

// A Python callable as a Scorer: called with a uint8 array (n, n_columns) of encoded
// subnets, it must return n finite real numbers (higher is better). Ctrl-C inside it
// (KeyboardInterrupt) goes to the hook and stops the search with what it found so far.
class CallableScorer : public Scorer {
 public:
  CallableScorer(py::function fn, int n_columns, GenerationHook* hook)
      : fn_(std::move(fn)), n_columns_(n_columns), hook_(hook) {}

  int n_columns() const override { return n_columns_; }

  void score(const uint8_t* rows, std::size_t n, float* out, int /*threads*/) const override {
    py::gil_scoped_acquire gil;
    const auto sn = static_cast<py::ssize_t>(n);
    py::array_t<uint8_t> batch({sn, static_cast<py::ssize_t>(n_columns_)});
    std::memcpy(batch.mutable_data(), rows, n * static_cast<std::size_t>(n_columns_));
    py::object returned;
    try {
      returned = fn_(batch);
    } catch (py::error_already_set& e) {
      if (hook_ == nullptr || !e.matches(PyExc_KeyboardInterrupt)) throw;
      hook_->interrupt(std::move(e));
      throw SearchStopped();
    }
    if (returned.is_none())
      throw py::value_error("the predictor returned None; it must return one number per config (" +
                            std::to_string(n) + " here)");
    // Complex scores would lose their imaginary part in the conversion below.
    if (auto as_array = py::array::ensure(returned); as_array && as_array.dtype().kind() == 'c')
      throw py::type_error("the predictor returned complex scores (dtype " +
                           std::string(py::str(as_array.dtype())) +
                           "); it must return real numbers, one per config");
    auto scores = py::array_t<double, py::array::c_style | py::array::forcecast>::ensure(returned);
    if (!scores)
      throw py::value_error(
          "the predictor must return one number per config (a list or 1-D array of " +
          std::to_string(n) + " numbers), got " +
          std::string(py::str(py::type::of(returned).attr("__name__"))));
    const bool column = scores.ndim() == 2 && scores.shape(1) == 1;
    if (!((scores.ndim() == 1 || column) && scores.shape(0) == sn))
      throw py::value_error("the predictor returned shape " + shape_of(scores) +
                            " for a batch of " + std::to_string(n) + " configs; expected (" +
                            std::to_string(n) + ",)");
    const double* s = scores.data();
    for (std::size_t i = 0; i < n; ++i) {
      if (!std::isfinite(s[i]))
        throw py::value_error("the predictor returned a non-finite score (" + std::to_string(s[i]) +
                              ") for config " + std::to_string(i) + " of a batch of " +
                              std::to_string(n));
      out[i] = static_cast<float>(s[i]);
    }
  }

 private:
  py::function fn_;
  int n_columns_;
  GenerationHook* hook_;
};

// The scorer a search uses: a C++ Scorer held by its Python object, or a wrapped callable.
struct ScorerArg {
  const Scorer* scorer = nullptr;
  std::unique_ptr<CallableScorer> owned;
};

ScorerArg resolve_scorer(const py::object& predictor, int n_columns, GenerationHook* hook) {
  ScorerArg arg;
  if (py::isinstance<Scorer>(predictor)) {
    arg.scorer = &predictor.cast<const Scorer&>();
  } else if (PyCallable_Check(predictor.ptr())) {
    arg.owned = std::make_unique<CallableScorer>(py::reinterpret_borrow<py::function>(predictor),
                                                 n_columns, hook);
    arg.scorer = arg.owned.get();
  } else {
    throw py::type_error(
        "predictor must be a moofa predictor (a moofa._core.Scorer) or a callable taking a uint8 "
        "array of "
        "encoded configs (n, " +
        std::to_string(n_columns) + ") and returning n scores; got " +
        std::string(py::str(py::type::of(predictor).attr("__name__"))));
  }
  return arg;
}

Constraints make_constraints(int64_t max_peak, std::optional<double> max_mflops,
                             std::optional<int64_t> max_params,
                             std::optional<double> min_uniformity = std::nullopt) {
  Constraints c;
  c.max_peak = max_peak;
  if (max_mflops) c.max_mflops = *max_mflops;
  if (max_params) c.max_params = *max_params;
  if (min_uniformity) c.min_uniformity = *min_uniformity;
  c.validate();
  return c;
}

// An optional latency limit (a moofa.latency table's AdditiveCost and its limit in ms).
Constraints with_latency(Constraints c, const std::shared_ptr<AdditiveCost>& latency,
                         std::optional<double> max_latency_ms) {
  if (static_cast<bool>(latency) != max_latency_ms.has_value())
    throw py::value_error("latency and max_latency_ms must be given together");
  if (!latency) return c;
  c.latency = latency;
  c.max_latency_ms = *max_latency_ms;
  c.validate();
  return c;
}

template <class T>
py::array_t<T> to_array(const std::vector<T>& v) {
  py::array_t<T> a(static_cast<py::ssize_t>(v.size()));
  std::copy(v.begin(), v.end(), a.mutable_data());
  return a;
}

py::array_t<uint8_t> to_rows(const std::vector<uint8_t>& v, int cols) {
  const auto n = static_cast<py::ssize_t>(v.size() / static_cast<std::size_t>(cols));
  py::array_t<uint8_t> a({n, static_cast<py::ssize_t>(cols)});
  std::copy(v.begin(), v.end(), a.mutable_data());
  return a;
}

// What evolve and nsga2 both report about the work done.
template <class Result>
void put_counts(py::dict& out, const Result& r, GenerationHook& hook) {
  out["evaluations"] = r.evaluations;
  out["candidates"] = r.candidates;
  out["rejected"] = r.rejected;
  out["duplicates"] = r.duplicates;
  out["generations_run"] = r.generations_run;
  out["interrupted"] = hook.interrupted();
}

// Binds the fields both searches share; the Python facade reads its defaults from these.
template <class Options>
void bind_options(py::module_& m, const char* name, const char* doc) {
  py::class_<Options> c(m, name, doc);
  c.def(py::init<>())
      .def_readwrite("population", &Options::population)
      .def_readwrite("generations", &Options::generations)
      .def_readwrite("mutation_ratio", &Options::mutation_ratio)
      .def_readwrite("mutate_prob", &Options::mutate_prob)
      .def_readwrite("resolution_mutate_prob", &Options::resolution_mutate_prob)
      .def_readwrite("seed", &Options::seed)
      .def_readwrite("threads", &Options::threads)
      .def_readwrite("max_tries", &Options::max_tries)
      .def_readwrite("max_evaluations", &Options::max_evaluations)
      .def("validate", &Options::validate, "raises ValueError naming a field out of its range");
  c.attr("MIN_POPULATION") = Options::kMinPopulation;
  c.attr("MAX_POPULATION") = Options::kMaxPopulation;
  c.attr("MAX_GENERATIONS") = Options::kMaxGenerations;
  c.attr("MAX_THREADS") = Options::kMaxThreads;
  if constexpr (std::is_same_v<Options, EvolutionOptions>) {
    c.def_readwrite("parent_ratio", &Options::parent_ratio)
        .def_readwrite("resolution_niche", &Options::resolution_niche)
        .def_readwrite("restart_patience", &Options::restart_patience)
        .def_readwrite("polish_radius", &Options::polish_radius)
        .def_readwrite("depth_niche", &Options::depth_niche)
        .def_readwrite("polish_keep", &Options::polish_keep)
        .def_readwrite("depth_niche_share", &Options::depth_niche_share);
  } else {
    c.def_readwrite("minimize_mflops", &Options::minimize_mflops);
    c.def_readwrite("maximize_uniformity", &Options::maximize_uniformity);
  }
}

}  // namespace

void search(py::module_& m) {
  bind_options<EvolutionOptions>(m, "EvolutionOptions",
                                 "options of evolve, with their defaults and limits");
  bind_options<ParetoOptions>(m, "ParetoOptions",
                              "options of nsga2, with their defaults and limits");
  static const EvolutionOptions kEvolution;
  static const ParetoOptions kPareto;

  m.def(
      "evolve",
      [](const Evaluator& ev, const py::object& predictor, int64_t max_peak,
         std::optional<double> max_mflops, std::optional<int64_t> max_params, int population,
         int generations, double parent_ratio, double mutation_ratio, double mutate_prob,
         double resolution_mutate_prob, int resolution_niche, uint64_t seed, int threads,
         int max_tries, int64_t max_evaluations, const py::object& progress,
         std::optional<double> min_uniformity, const std::shared_ptr<AdditiveCost>& latency,
         std::optional<double> max_latency_ms, int restart_patience, int polish_radius,
         int depth_niche, int polish_keep, double depth_niche_share,
         std::optional<std::vector<uint64_t>> island_seeds, std::optional<int> survivors,
         int race_generation) {
        const Constraints c =
            with_latency(make_constraints(max_peak, max_mflops, max_params, min_uniformity),
                         latency, max_latency_ms);
        EvolutionOptions o;
        o.restart_patience = restart_patience;
        o.polish_radius = polish_radius;
        o.depth_niche = depth_niche;
        o.polish_keep = polish_keep;
        o.depth_niche_share = depth_niche_share;
        o.population = population;
        o.generations = generations;
        o.parent_ratio = parent_ratio;
        o.mutation_ratio = mutation_ratio;
        o.mutate_prob = mutate_prob;
        o.resolution_mutate_prob = resolution_mutate_prob;
        o.resolution_niche = resolution_niche;
        o.seed = seed;
        o.threads = threads;
        o.max_tries = max_tries;
        o.max_evaluations = max_evaluations;
        o.validate();
        IslandOptions isl;
        if (island_seeds) {
          isl.seeds = *island_seeds;
          isl.survivors = survivors.value_or(static_cast<int>(isl.seeds.size()));
          isl.race_generation = race_generation;
          isl.validate(o);
        }
        GenerationHook hook(progress);
        ScorerArg scorer = resolve_scorer(predictor, ev.n_columns(), &hook);
        require_same_space(ev.space(), *scorer.scorer);
        o.parallel_scoring = !scorer.owned;  // a Python callable is called from this thread
        EvolutionResult r;
        {
          py::gil_scoped_release nogil;
          r = island_seeds ? evolve_islands(ev, *scorer.scorer, c, o, isl, hook.callback())
                           : evolve(ev, *scorer.scorer, c, o, hook.callback());
        }
        py::dict out;
        out["best_row"] = to_array(r.best_row);
        out["best_score"] = r.best_score;
        out["best_peak"] = r.best_peak;
        out["history"] = to_array(r.history);
        put_counts(out, r, hook);
        return out;
      },
      py::arg("evaluator"), py::arg("predictor"), py::kw_only(), py::arg("max_peak"),
      py::arg("max_mflops") = py::none(), py::arg("max_params") = py::none(),
      py::arg("population") = kEvolution.population,
      py::arg("generations") = kEvolution.generations,
      py::arg("parent_ratio") = kEvolution.parent_ratio,
      py::arg("mutation_ratio") = kEvolution.mutation_ratio,
      py::arg("mutate_prob") = kEvolution.mutate_prob,
      py::arg("resolution_mutate_prob") = kEvolution.resolution_mutate_prob,
      py::arg("resolution_niche") = kEvolution.resolution_niche, py::arg("seed") = kEvolution.seed,
      py::arg("threads") = kEvolution.threads, py::arg("max_tries") = kEvolution.max_tries,
      py::arg("max_evaluations") = kEvolution.max_evaluations, py::arg("progress") = py::none(),
      py::arg("min_uniformity") = py::none(), py::arg("latency") = py::none(),
      py::arg("max_latency_ms") = py::none(),
      py::arg("restart_patience") = kEvolution.restart_patience,
      py::arg("polish_radius") = kEvolution.polish_radius,
      py::arg("depth_niche") = kEvolution.depth_niche,
      py::arg("polish_keep") = kEvolution.polish_keep,
      py::arg("depth_niche_share") = kEvolution.depth_niche_share,
      py::arg("island_seeds") = py::none(), py::arg("survivors") = py::none(),
      py::arg("race_generation") = 0,
      "OFA-style evolutionary search under a peak budget; returns a dict (best_row, best_score, "
      "history, ...). With island_seeds: one evolution per seed on its own thread (seed is "
      "not used), and a race at race_generation that only the best survivors go on from.");

  m.def(
      "nsga2",
      [](const Evaluator& ev, const py::object& predictor, int64_t max_peak,
         std::optional<double> max_mflops, std::optional<int64_t> max_params, bool minimize_mflops,
         int population, int generations, double mutation_ratio, double mutate_prob,
         double resolution_mutate_prob, uint64_t seed, int threads, int max_tries,
         int64_t max_evaluations, const py::object& progress, std::optional<double> min_uniformity,
         bool maximize_uniformity, const std::shared_ptr<AdditiveCost>& latency,
         std::optional<double> max_latency_ms) {
        const Constraints c =
            with_latency(make_constraints(max_peak, max_mflops, max_params, min_uniformity),
                         latency, max_latency_ms);
        ParetoOptions o;
        o.maximize_uniformity = maximize_uniformity;
        o.population = population;
        o.generations = generations;
        o.mutation_ratio = mutation_ratio;
        o.mutate_prob = mutate_prob;
        o.resolution_mutate_prob = resolution_mutate_prob;
        o.minimize_mflops = minimize_mflops;
        o.seed = seed;
        o.threads = threads;
        o.max_tries = max_tries;
        o.max_evaluations = max_evaluations;
        o.validate();
        GenerationHook hook(progress);
        ScorerArg scorer = resolve_scorer(predictor, ev.n_columns(), &hook);
        require_same_space(ev.space(), *scorer.scorer);
        o.parallel_scoring = !scorer.owned;
        ParetoResult r;
        {
          py::gil_scoped_release nogil;
          r = nsga2(ev, *scorer.scorer, c, o, hook.callback());
        }
        py::dict out;
        out["rows"] = to_rows(r.rows, ev.n_columns());
        out["scores"] = to_array(r.scores);
        out["peaks"] = to_array(r.peaks);
        out["mflops"] = to_array(r.mflops);
        out["uniformity"] = to_array(r.uniformity);
        put_counts(out, r, hook);
        return out;
      },
      py::arg("evaluator"), py::arg("predictor"), py::kw_only(),
      py::arg("max_peak") = std::numeric_limits<int64_t>::max(), py::arg("max_mflops") = py::none(),
      py::arg("max_params") = py::none(), py::arg("minimize_mflops") = kPareto.minimize_mflops,
      py::arg("population") = kPareto.population, py::arg("generations") = kPareto.generations,
      py::arg("mutation_ratio") = kPareto.mutation_ratio,
      py::arg("mutate_prob") = kPareto.mutate_prob,
      py::arg("resolution_mutate_prob") = kPareto.resolution_mutate_prob,
      py::arg("seed") = kPareto.seed, py::arg("threads") = kPareto.threads,
      py::arg("max_tries") = kPareto.max_tries,
      py::arg("max_evaluations") = kPareto.max_evaluations, py::arg("progress") = py::none(),
      py::arg("min_uniformity") = py::none(),
      py::arg("maximize_uniformity") = kPareto.maximize_uniformity, py::arg("latency") = py::none(),
      py::arg("max_latency_ms") = py::none(),
      "NSGA-II front of score vs. peak (and MFLOPs); returns a dict (rows, scores, peaks, mflops, "
      "...)");

  m.def(
      "climb",
      [](const Evaluator& ev, const py::object& predictor, const Rows& start, int64_t max_peak,
         std::optional<double> max_mflops, std::optional<int64_t> max_params,
         std::optional<double> min_uniformity, const std::shared_ptr<AdditiveCost>& latency,
         std::optional<double> max_latency_ms, int64_t max_evaluations, int threads) {
        const Constraints c =
            with_latency(make_constraints(max_peak, max_mflops, max_params, min_uniformity),
                         latency, max_latency_ms);
        std::size_t n = 0;
        const uint8_t* row = rows_of(start, ev.space(), &n);
        if (n != 1) throw py::value_error("start must hold one encoded subnet");
        GenerationHook hook{py::none()};
        ScorerArg scorer = resolve_scorer(predictor, ev.n_columns(), &hook);
        require_same_space(ev.space(), *scorer.scorer);
        ClimbResult r;
        {
          py::gil_scoped_release nogil;
          r = climb(ev, *scorer.scorer, c, row, max_evaluations, threads);
        }
        py::dict out;
        out["row"] = to_array(r.row);
        out["score"] = r.score;
        out["evaluations"] = r.evaluations;
        out["steps"] = r.steps;
        out["interrupted"] = hook.interrupted();
        return out;
      },
      py::arg("evaluator"), py::arg("predictor"), py::arg("start"), py::kw_only(),
      py::arg("max_peak"), py::arg("max_mflops") = py::none(), py::arg("max_params") = py::none(),
      py::arg("min_uniformity") = py::none(), py::arg("latency") = py::none(),
      py::arg("max_latency_ms") = py::none(), py::arg("max_evaluations") = 0,
      py::arg("threads") = 1,
      "Steepest ascent from start over single-gene neighbours under the constraints; returns a "
      "dict (row, score, evaluations, steps, interrupted)");

  m.def(
      "front_ranks",
      [](py::array_t<double, py::array::c_style | py::array::forcecast> objectives) {
        if (objectives.ndim() != 2 || objectives.shape(1) < 1)
          throw py::value_error("objectives must be a 2-D array (n points, m >= 1 objectives)");
        const double* f = objectives.data();
        for (py::ssize_t i = 0; i < objectives.size(); ++i)
          if (std::isnan(f[i])) throw py::value_error("objectives must not hold NaN");
        std::vector<int> ranks;
        {
          py::gil_scoped_release nogil;
          ranks = front_ranks(f, static_cast<std::size_t>(objectives.shape(0)),
                              static_cast<int>(objectives.shape(1)));
        }
        return to_array(ranks);
      },
      py::arg("objectives"),
      "NSGA-II front index of each point (objectives to minimise, shape (n, m))");

  m.def(
      "non_dominated",
      [](py::array_t<float, py::array::c_style | py::array::forcecast> scores,
         py::array_t<int64_t, py::array::c_style | py::array::forcecast> peaks,
         std::optional<py::array_t<double, py::array::c_style | py::array::forcecast>> mflops,
         std::optional<py::array_t<double, py::array::c_style | py::array::forcecast>> uniformity) {
        const py::ssize_t n = scores.size();
        if (scores.ndim() != 1 || peaks.ndim() != 1 || peaks.size() != n ||
            (mflops && (mflops->ndim() != 1 || mflops->size() != n)) ||
            (uniformity && (uniformity->ndim() != 1 || uniformity->size() != n)))
          throw py::value_error(
              "scores, peaks (and mflops, uniformity) must be 1-D arrays of the same length");
        const double* mf = mflops ? mflops->data() : nullptr;
        const double* un = uniformity ? uniformity->data() : nullptr;
        if (un)
          for (py::ssize_t i = 0; i < n; ++i)
            if (std::isnan(un[i])) throw py::value_error("uniformity must not hold NaN");
        std::vector<std::size_t> idx;
        {
          py::gil_scoped_release nogil;
          idx = non_dominated(scores.data(), peaks.data(), mf, static_cast<std::size_t>(n), un);
        }
        py::array_t<int64_t> out(static_cast<py::ssize_t>(idx.size()));
        std::copy(idx.begin(), idx.end(), out.mutable_data());
        return out;
      },
      py::arg("scores"), py::arg("peaks"), py::arg("mflops") = py::none(),
      py::arg("uniformity") = py::none(),
      "indices of the non-dominated points (max score, min peak, min mflops, max uniformity), by "
      "peak");
}

}  // namespace moofa::bind
