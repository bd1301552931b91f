from typing import Any, Callable, ClassVar

import numpy as np
import numpy.typing as npt

class StageSpec:
    def __init__(self, width: int, stride: int, se: bool, max_depth: int, hard_swish: bool = False) -> None: ...
    @property
    def width(self) -> int: ...
    @property
    def stride(self) -> int: ...
    @property
    def se(self) -> bool: ...
    @property
    def max_depth(self) -> int: ...
    @property
    def hard_swish(self) -> bool: ...

class SpaceSpec:
    def __init__(
        self,
        *,
        stages: list[StageSpec],
        kernels: list[int],
        expands: list[float],
        depths: list[int],
        resolutions: list[int],
        in_channels: int,
        first_conv_width: int,
        first_conv_kernel: int,
        first_conv_stride: int,
        first_block_width: int,
        final_expand_width: int,
        feature_mix_width: int,
        n_classes: int,
        expand_by_depth: list[int],
        name: str = "",
        first_conv_hard_swish: bool = False,
        first_block_hard_swish: bool = False,
        head_hard_swish: bool = False,
    ) -> None: ...
    @property
    def name(self) -> str: ...
    @property
    def n_columns(self) -> int: ...
    @property
    def n_slots(self) -> int: ...
    @property
    def n_stages(self) -> int: ...
    @property
    def column_offsets(self) -> dict[str, int]: ...
    @property
    def column_limits(self) -> list[int]: ...
    @property
    def slot_stage(self) -> list[int]: ...
    @property
    def stage_first_slot(self) -> list[int]: ...
    @property
    def one_hot_size(self) -> int: ...
    @property
    def table_cells(self) -> int: ...
    def same_space(self, other: SpaceSpec, ignore_classes: bool = False) -> bool: ...
    def first_invalid(self, rows: npt.ArrayLike) -> tuple[int, int] | None: ...
    def check_rows(self, rows: npt.ArrayLike) -> None: ...

class Evaluator:
    def __init__(self, space: SpaceSpec, memory_model: str = "full") -> None: ...
    @property
    def n_columns(self) -> int: ...
    @property
    def space(self) -> SpaceSpec: ...
    @property
    def max_layers(self) -> int: ...
    def first_invalid(self, rows: npt.ArrayLike) -> tuple[int, int] | None: ...
    def peaks(self, rows: npt.ArrayLike, threads: int = 0) -> npt.NDArray[np.int64]: ...
    def config_peak(self, config: object) -> int | None: ...
    def profiles(self, rows: npt.ArrayLike, threads: int = 0, with_hist: bool = True) -> dict[str, Any]: ...
    def peak_tables(self) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]: ...
    def min_peak(self) -> tuple[int, npt.NDArray[np.uint8]]: ...

class Scorer:
    @property
    def n_columns(self) -> int: ...
    @property
    def space(self) -> SpaceSpec | None: ...

class MlpPredictor(Scorer):
    def __init__(
        self,
        space: SpaceSpec,
        weights: list[npt.ArrayLike],
        biases: list[npt.ArrayLike],
        skip: npt.ArrayLike | None = None,
        scale: float = 1.0,
        offset: float = 0.0,
        isa: str = "auto",
        precision: str = "fp32",
    ) -> None: ...
    def score(self, rows: npt.ArrayLike, threads: int = 0) -> npt.NDArray[np.float32]: ...
    @property
    def n_features(self) -> int: ...
    @property
    def layer_sizes(self) -> list[int]: ...
    @property
    def isa(self) -> str: ...
    @property
    def precision(self) -> str: ...
    @property
    def scale(self) -> float: ...
    @property
    def offset(self) -> float: ...
    @staticmethod
    def one_hot_size(space: SpaceSpec) -> int: ...

def best_isa() -> str: ...
def isa_supported(isa: str) -> bool: ...
def make_divisible(v: float, divisor: int = 8) -> int: ...

__version__: str

class LinearScorer(Scorer):
    def __init__(self, space: SpaceSpec, weights: npt.ArrayLike, bias: float = 0.0) -> None: ...
    @staticmethod
    def n_features(space: SpaceSpec) -> int: ...
    @property
    def weights(self) -> npt.NDArray[np.float32]: ...
    @property
    def bias(self) -> float: ...
    def score(self, rows: npt.ArrayLike, threads: int = 0) -> npt.NDArray[np.float32]: ...

class EvolutionOptions:
    MIN_POPULATION: ClassVar[int]
    MAX_POPULATION: ClassVar[int]
    MAX_GENERATIONS: ClassVar[int]
    MAX_THREADS: ClassVar[int]
    def __init__(self) -> None: ...
    population: int
    generations: int
    mutation_ratio: float
    mutate_prob: float
    resolution_mutate_prob: float
    seed: int
    threads: int
    max_tries: int
    max_evaluations: int
    parent_ratio: float
    resolution_niche: int
    restart_patience: int
    depth_niche: int
    depth_niche_share: float
    polish_radius: int
    polish_keep: int
    def validate(self) -> None: ...

class ParetoOptions:
    MIN_POPULATION: ClassVar[int]
    MAX_POPULATION: ClassVar[int]
    MAX_GENERATIONS: ClassVar[int]
    MAX_THREADS: ClassVar[int]
    def __init__(self) -> None: ...
    population: int
    generations: int
    mutation_ratio: float
    mutate_prob: float
    resolution_mutate_prob: float
    seed: int
    threads: int
    max_tries: int
    max_evaluations: int
    minimize_mflops: bool
    maximize_uniformity: bool
    def validate(self) -> None: ...

def evolve(
    evaluator: Evaluator,
    predictor: Scorer | Callable[[npt.NDArray[np.uint8]], npt.ArrayLike],
    *,
    max_peak: int,
    max_mflops: float | None = None,
    max_params: int | None = None,
    population: int = 100,
    generations: int = 500,
    parent_ratio: float = 0.25,
    mutation_ratio: float = 0.5,
    mutate_prob: float = 0.1,
    resolution_mutate_prob: float = 0.5,
    resolution_niche: int = 1,
    seed: int = 0,
    threads: int = 0,
    max_tries: int = 100,
    max_evaluations: int = 0,
    progress: Callable[[int], None] | None = None,
    min_uniformity: float | None = None,
    latency: AdditiveCost | None = None,
    max_latency_ms: float | None = None,
    restart_patience: int = ...,
    polish_radius: int = ...,
    depth_niche: int = ...,
    polish_keep: int = ...,
    depth_niche_share: float = ...,
    island_seeds: list[int] | None = None,
    survivors: int | None = None,
    race_generation: int = 0,
) -> dict[str, Any]: ...
def climb(
    evaluator: Evaluator,
    predictor: Scorer | Callable[[npt.NDArray[np.uint8]], npt.ArrayLike],
    start: npt.ArrayLike,
    *,
    max_peak: int,
    max_mflops: float | None = None,
    max_params: int | None = None,
    min_uniformity: float | None = None,
    latency: AdditiveCost | None = None,
    max_latency_ms: float | None = None,
    max_evaluations: int = 0,
    threads: int = 1,
) -> dict[str, Any]: ...
def nsga2(
    evaluator: Evaluator,
    predictor: Scorer | Callable[[npt.NDArray[np.uint8]], npt.ArrayLike],
    *,
    max_peak: int = ...,
    max_mflops: float | None = None,
    max_params: int | None = None,
    minimize_mflops: bool = False,
    population: int = 100,
    generations: int = 200,
    mutation_ratio: float = 0.5,
    mutate_prob: float = 0.1,
    resolution_mutate_prob: float = 0.5,
    seed: int = 0,
    threads: int = 0,
    max_tries: int = 100,
    max_evaluations: int = 0,
    progress: Callable[[int], None] | None = None,
    min_uniformity: float | None = None,
    maximize_uniformity: bool = False,
    latency: AdditiveCost | None = None,
    max_latency_ms: float | None = None,
) -> dict[str, Any]: ...

class AdditiveCost:
    def __init__(self, space: SpaceSpec, base: npt.ArrayLike, slots: npt.ArrayLike) -> None: ...
    @property
    def space(self) -> SpaceSpec: ...
    @property
    def n_columns(self) -> int: ...
    def costs(self, rows: npt.ArrayLike) -> npt.NDArray[np.float64]: ...
    def min_cost(self) -> tuple[float, int]: ...

def front_ranks(objectives: npt.ArrayLike) -> npt.NDArray[np.int32]: ...
def non_dominated(
    scores: npt.ArrayLike,
    peaks: npt.ArrayLike,
    mflops: npt.ArrayLike | None = None,
    uniformity: npt.ArrayLike | None = None,
) -> npt.NDArray[np.int64]: ...

class StopFlag:
    def __init__(self) -> None: ...
    def set(self) -> None: ...
    @property
    def is_set(self) -> bool: ...

def mlp_optimum(
    evaluator: Evaluator,
    weights: list[npt.ArrayLike],
    biases: list[npt.ArrayLike],
    *,
    skip: npt.ArrayLike | None = None,
    scale: float = 1.0,
    offset: float = 0.0,
    max_peak: int = ...,
    max_mflops: float | None = None,
    max_params: int | None = None,
    time_limit: float = 0.0,
    max_nodes: int = 0,
    start_row: npt.ArrayLike | None = None,
    stop: StopFlag | None = None,
) -> dict[str, Any]: ...
