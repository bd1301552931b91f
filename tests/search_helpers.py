"""Independent helpers for the search tests and benchmarks.

- ``one_hot`` / ``fit_ridge``: the published predictor encoding and a ridge regression
  fitted on the shared accuracy data (numpy only), used as a shared test predictor.
- ``SlotTables``: per-slot peak figures derived from ``oracle.evaluate`` (layer by layer,
  no moofa code), giving an exact optimum for linear predictors.
- ``OFAEvolutionFinder``: a straightforward Python port of OFA's EvolutionFinder
  (regularised evolution with rejection sampling), written from its description: the
  quality and speed baseline.
"""

from __future__ import annotations

import copy
import functools
import random
from pathlib import Path

import numpy as np
import oracle
from conftest import read_jsonl

import moofa
from moofa.search import linear_scorer

# --- predictor: one-hot encoding + ridge ---------------------------------------------------


def one_hot(configs: list[dict], space) -> np.ndarray:
    """The published encoding: resolution one-hot, then kernel and expand one-hots per
    block slot; slots beyond their stage's depth stay all-zero."""
    sp = moofa.get_space(space)
    n_r, n_k, n_e, n_s = len(sp.resolutions), len(sp.kernels), len(sp.expands), sp.n_slots
    x = np.zeros((len(configs), n_r + n_s * (n_k + n_e)))
    stage_of = sp.slot_stage()
    first = [sum(s.max_depth for s in sp.stages[:i]) for i in range(sp.n_stages)]
    for i, c in enumerate(configs):
        x[i, sp.resolutions.index(c["image_size"])] = 1
        for slot in range(n_s):
            stage = stage_of[slot]
            if slot - first[stage] < c["d"][stage]:
                x[i, n_r + slot * n_k + sp.kernels.index(c["ks"][slot])] = 1
                x[i, n_r + n_s * n_k + slot * n_e + sp.expands.index(float(c["e"][slot]))] = 1
    return x


def fit_ridge(records: list[dict], space, alpha: float = 1.0) -> tuple[np.ndarray, float]:
    """Ridge regression of top1 on the one-hot encoding: (weights, bias)."""
    x = one_hot(records, space)
    y = np.array([r["top1"] for r in records])
    xm, ym = x.mean(axis=0), y.mean()
    xc = x - xm
    w = np.linalg.solve(xc.T @ xc + alpha * np.eye(x.shape[1]), xc.T @ (y - ym))
    return w, float(ym - xm @ w)


@functools.cache
def ridge_scorer(data_dir: Path, dataset: str, space: str):
    """A moofa C++ LinearScorer from a ridge fit on ``data_dir/accuracy/<dataset>.jsonl[.gz]``
    (``conftest.FIXTURES``: the vendored published records)."""
    path = data_dir / "accuracy" / f"{dataset}.jsonl"
    records = read_jsonl(path if path.is_file() else path.with_name(path.name + ".gz"))
    w, b = fit_ridge(records, space)
    return linear_scorer(w, b, space), w, b


# --- exact per-slot peaks from the oracle ---------------------------------------------------


class SlotTables:
    """Peak figures per (resolution, slot, kernel, expand) and the fixed part per resolution,
    read off ``oracle.evaluate`` histograms of uniform configs."""

    def __init__(self, space, activations_only: bool = False):
        sp = self.space = moofa.get_space(space)
        self.fixed = {}
        self.slot = {}  # (r, slot, k, e) -> peak
        deepest = [s.max_depth for s in sp.stages]
        for r in sp.resolutions:
            for k in sp.kernels:
                for e in sp.expands:
                    out = oracle.evaluate(
                        sp, [k] * sp.n_slots, [e] * sp.n_slots, deepest, r, activations_only=activations_only
                    )
                    hist = out["hist"]
                    self.fixed[r] = max(max(hist[:3]), hist[-1])
                    pos = 3
                    for slot in range(sp.n_slots):
                        n_layers = 2 if e == 1 else 3
                        self.slot[(r, slot, k, e)] = max(hist[pos : pos + n_layers])
                        pos += n_layers

        self.first_slot = [sum(s.max_depth for s in sp.stages[:i]) for i in range(sp.n_stages)]
        # The same figures as arrays [r, slot, k, e] for batches of encoded configs.
        self.array = np.array(
            [
                [[[self.slot[(r, slot, k, e)] for e in sp.expands] for k in sp.kernels] for slot in range(sp.n_slots)]
                for r in sp.resolutions
            ]
        )
        self.fixed_array = np.array([self.fixed[r] for r in sp.resolutions])

    def peak(self, config: dict) -> int:
        r, ks, e, table = config["image_size"], config["ks"], config["e"], self.slot
        best = self.fixed[r]
        for first, d in zip(self.first_slot, config["d"]):
            for slot in range(first, first + d):
                best = max(best, table[(r, slot, ks[slot], float(e[slot]))])
        return best

    def peaks(self, rows: np.ndarray) -> np.ndarray:
        """Peaks of encoded configs (moofa's column layout), vectorised."""
        sp = self.space
        s, n = sp.n_stages, sp.n_slots
        r, dep, ker, exp = rows[:, 0], rows[:, 1 : 1 + s], rows[:, 1 + s : 1 + s + n], rows[:, 1 + s + n :]
        depth = np.array(sp.depths)[dep][:, sp.slot_stage()]
        pos = np.arange(n) - np.array(self.first_slot)[sp.slot_stage()]
        figures = self.array[r[:, None], np.arange(n)[None, :], ker, exp]
        return np.maximum(self.fixed_array[r], np.where(pos < depth, figures, 0).max(axis=1))


def exact_linear_optimum(weights: np.ndarray, bias: float, space, budget: int, tables: SlotTables) -> float:
    """The best score a linear one-hot model can reach under a peak budget, exactly: the
    peak is a max over slots and the score a sum, so each stage is optimised on its own."""
    sp = moofa.get_space(space)
    n_r, n_k, n_e, n_s = len(sp.resolutions), len(sp.kernels), len(sp.expands), sp.n_slots
    best = -np.inf
    for ri, r in enumerate(sp.resolutions):
        if tables.fixed[r] > budget:
            continue
        total, slot0 = bias + weights[ri], 0
        for stage in sp.stages:
            stage_best = -np.inf
            for d in sp.depths:
                ratios = [sp.expand_by_depth[d]] if sp.expand_by_depth else sp.expands
                value = 0.0
                for j in range(d):
                    slot = slot0 + j
                    options = [
                        weights[n_r + slot * n_k + ki] + weights[n_r + n_s * n_k + slot * n_e + sp.expands.index(e)]
                        for ki, k in enumerate(sp.kernels)
                        for e in ratios
                        if tables.slot[(r, slot, k, e)] <= budget
                    ]
                    if not options:
                        value = -np.inf
                        break
                    value += max(options)
                stage_best = max(stage_best, value)
            total += stage_best
            slot0 += stage.max_depth
        best = max(best, total)
    return float(best)


# --- the baseline: OFA's EvolutionFinder in plain Python -----------------------------------


class ArchManager:
    """Random sampling and mutation of OFA-style config dicts of a space."""

    def __init__(self, space, rng: random.Random):
        sp = self.space = moofa.get_space(space)
        self.rng = rng
        self.ks_list, self.depth_list, self.res_list = list(sp.kernels), list(sp.depths), list(sp.resolutions)
        self.expand_list = [int(e) if float(e).is_integer() else e for e in sp.expands]
        self.stage_of = sp.slot_stage()
        self.coupling = sp.expand_by_depth
        self.n_slots, self.n_stages = sp.n_slots, sp.n_stages

    def _couple(self, arch: dict) -> None:
        if self.coupling:
            arch["e"] = [self.coupling[arch["d"][s]] for s in self.stage_of]

    def random_sample_arch(self) -> dict:
        rng = self.rng
        arch = {
            "ks": rng.choices(self.ks_list, k=self.n_slots),
            "e": rng.choices(self.expand_list, k=self.n_slots),
            "d": rng.choices(self.depth_list, k=self.n_stages),
            "image_size": rng.choice(self.res_list),
        }
        self._couple(arch)
        return arch

    def mutate_resolution(self, arch: dict, prob: float) -> None:
        if self.rng.random() < prob:
            arch["image_size"] = self.rng.choice(self.res_list)

    def mutate_arch(self, arch: dict, prob: float) -> None:
        for i in range(self.n_slots):
            if self.rng.random() < prob:
                arch["ks"][i] = self.rng.choice(self.ks_list)
                arch["e"][i] = self.rng.choice(self.expand_list)
        for i in range(self.n_stages):
            if self.rng.random() < prob:
                arch["d"][i] = self.rng.choice(self.depth_list)
        self._couple(arch)


class OFAEvolutionFinder:
    """OFA's search loop: keep the best parent_ratio, breed mutation_ratio of the children by
    mutation and the rest by uniform crossover; rejection-sample every candidate until
    it fits the constraint; score each generation's children in one batch.

    ``efficiency(config) -> peak`` and ``accuracy(configs) -> scores``. ``arch_manager``: an
    object with OFA's ``random_sample_arch``, ``mutate_resolution`` and ``mutate_arch``
    (OFA's finder takes the accuracy predictor's ``arch_encoder``); default: ArchManager."""

    def __init__(
        self,
        space,
        efficiency,
        accuracy,
        *,
        population_size=100,
        max_time_budget=500,
        parent_ratio=0.25,
        mutation_ratio=0.5,
        arch_mutate_prob=0.1,
        resolution_mutate_prob=0.5,
        seed=0,
        batch_tables: SlotTables | None = None,
        arch_manager=None,
    ):
        self.rng = random.Random(seed)
        # With batch_tables, the initial rejection sampling draws numpy batches: the same
        # distribution (uniform configs that fit), thousands of times faster under tight
        # budgets, where only ~1 random config in 3000 fits. Used by the quality test.
        self.batch_tables = batch_tables
        self._np_rng = np.random.default_rng(seed)
        self._fitting: list[dict] = []
        self.arch = ArchManager(space, self.rng) if arch_manager is None else arch_manager
        self.efficiency, self.accuracy = efficiency, accuracy
        self.population_size, self.max_time_budget = population_size, max_time_budget
        self.parent_ratio, self.mutation_ratio = parent_ratio, mutation_ratio
        self.arch_mutate_prob, self.resolution_mutate_prob = arch_mutate_prob, resolution_mutate_prob
        self.evaluations = 0

    def random_valid_sample(self, constraint):
        if self.batch_tables is not None:
            return self._batched_valid_sample(constraint)
        while True:
            sample = self.arch.random_sample_arch()
            eff = self.efficiency(sample)
            if eff <= constraint:
                return sample, eff

    def _batched_valid_sample(self, constraint):
        while not self._fitting:
            space = self.batch_tables.space
            rows = moofa.random_subnets(4096, space, seed=self._np_rng.integers(2**63))
            fit = rows[self.batch_tables.peaks(rows) <= constraint]
            self._fitting = [n.to_dict() for n in moofa.decode(fit, space)] if len(fit) else []
        sample = self._fitting.pop()
        return sample, self.efficiency(sample)

    def mutate_sample(self, sample, constraint):
        while True:
            new = copy.deepcopy(sample)
            self.arch.mutate_resolution(new, self.resolution_mutate_prob)
            self.arch.mutate_arch(new, self.arch_mutate_prob)
            eff = self.efficiency(new)
            if eff <= constraint:
                return new, eff

    def crossover_sample(self, a, b, constraint):
        while True:
            new = copy.deepcopy(a)
            for key in new:
                if isinstance(new[key], list):
                    new[key] = [self.rng.choice([x, y]) for x, y in zip(a[key], b[key])]
                else:
                    new[key] = self.rng.choice([a[key], b[key]])
            if isinstance(self.arch, ArchManager):
                self.arch._couple(new)
            eff = self.efficiency(new)
            if eff <= constraint:
                return new, eff

    def _score(self, pool):
        self.evaluations += len(pool)
        return self.accuracy(pool)

    def run_evolution_search(self, constraint):
        n_mutate = int(round(self.mutation_ratio * self.population_size))
        n_parents = int(round(self.parent_ratio * self.population_size))
        best_valids, best_info = [-100.0], None
        pool = [self.random_valid_sample(constraint) for _ in range(self.population_size)]
        accs = self._score([s for s, _ in pool])
        population = [(float(a), s, e) for a, (s, e) in zip(accs, pool)]
        for _ in range(self.max_time_budget):
            parents = sorted(population, key=lambda x: x[0])[::-1][:n_parents]
            if parents[0][0] > best_valids[-1]:
                best_valids.append(parents[0][0])
                best_info = parents[0]
            else:
                best_valids.append(best_valids[-1])
            population = parents
            pool = []
            for _ in range(n_mutate):
                pool.append(self.mutate_sample(parents[self.rng.randrange(n_parents)][1], constraint))
            for _ in range(self.population_size - n_mutate):
                a = parents[self.rng.randrange(n_parents)][1]
                b = parents[self.rng.randrange(n_parents)][1]
                pool.append(self.crossover_sample(a, b, constraint))
            accs = self._score([s for s, _ in pool])
            population += [(float(a), s, e) for a, (s, e) in zip(accs, pool)]
        # OFA reports the best of the last selection; the final children count too.
        final = max(population, key=lambda x: x[0])
        if best_info is None or final[0] > best_info[0]:
            best_info = final
        return best_valids, best_info


def port_predictor(scorer, space):
    """Batched accuracy for the port: config dicts -> the same C++ scorer moofa uses."""
    sp = moofa.get_space(space)
    res, ks, ex, dep = (
        {v: i for i, v in enumerate(sp.resolutions)},
        {v: i for i, v in enumerate(sp.kernels)},
        {float(v): i for i, v in enumerate(sp.expands)},
        {v: i for i, v in enumerate(sp.depths)},
    )

    def accuracy(configs):
        rows = np.array(
            [
                [
                    res[c["image_size"]],
                    *(dep[d] for d in c["d"]),
                    *(ks[k] for k in c["ks"]),
                    *(ex[float(e)] for e in c["e"]),
                ]
                for c in configs
            ],
            dtype=np.uint8,
        )
        return scorer.score(rows)

    return accuracy


def random_linear(space: str, seed: int = 0, *, shift: float = 0.2, bias: float = 60.0):
    """A random linear scorer over the one-hot encoding (weights N(shift, 1)); its
    ``weights`` and ``bias`` are the model's."""
    sp = moofa.get_space(space)
    w = np.random.default_rng(seed).normal(size=moofa._core.LinearScorer.n_features(moofa.memory.spec(sp))) + shift
    return moofa._core.LinearScorer(moofa.memory.spec(sp), w.astype(np.float32), bias)


def mlp_forward(pred: moofa.Predictor, x: np.ndarray) -> np.ndarray:
    """A moofa predictor's scores of one-hot inputs ``x`` by a float64 numpy forward pass
    (ReLU between layers, the linear skip, scale and offset): independent of the C++ kernels."""
    x = np.asarray(x, dtype=np.float64)
    h = x
    for i, (w, b) in enumerate(zip(pred.weights, pred.biases)):
        h = h @ w.astype(np.float64) + b.astype(np.float64)
        if i + 1 < len(pred.weights):
            h = np.maximum(h, 0.0)
    y = h[:, 0] + (x @ pred.skip.astype(np.float64) if pred.skip is not None else 0.0)
    return pred.offset + pred.scale * y
