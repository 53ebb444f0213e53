"""Type stubs for the Rust extension ``erasus._core`` (checked with ``mypy.stubtest``)."""

import numpy as np
import numpy.typing as npt

__all__ = [
    "__version__",
    "get_num_threads",
    "set_num_threads",
    "_after_fork_in_child",
    "kcenter",
    "herding",
    "kmeans",
    "seeding_draws",
    "facility_location",
    "submodular",
    "knn_graph",
]

__version__: str

def get_num_threads() -> int: ...
def set_num_threads(n: int) -> None: ...
def _after_fork_in_child() -> None: ...
def kcenter(
    x: npt.NDArray[np.float32], k: int, *, metric: str = "euclidean", initial: npt.NDArray[np.int64] | None = None, seed: int = 0
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32], npt.NDArray[np.float64], float]: ...
def herding(
    x: npt.NDArray[np.float32], k: int
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32], npt.NDArray[np.float64], float]: ...
def kmeans(
    x: npt.NDArray[np.float32], k: int, *, seed: int = 0, max_iter: int = 100, tol: float = 1e-4
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32], npt.NDArray[np.float64], float]: ...
def seeding_draws(seed: int, n: int, count: int) -> tuple[int, npt.NDArray[np.float64]]: ...
def facility_location(
    x: npt.NDArray[np.float32],
    k: int,
    *,
    similarity: str = "craig",
    gamma: float | None = None,
    neighbors: int | None = None,
    optimizer: str = "lazy",
    epsilon: float = 0.01,
    seed: int = 0,
    max_dense_bytes: int = 4294967296,
    partitions: int = 1,
    shuffle_partitions: bool = False,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32], npt.NDArray[np.float64], float]: ...
def submodular(
    x: npt.NDArray[np.float32],
    k: int,
    *,
    function: str = "facility_location",
    mixture: list[tuple[str, float]] | None = None,
    similarity: str = "rbf",
    gamma: float | None = None,
    lambda_: float = 0.5,
    alpha: float = 0.1,
    concave: str = "sqrt",
    reg: float = 1.0,
    optimizer: str = "lazy",
    epsilon: float = 0.01,
    seed: int = 0,
    max_dense_bytes: int = 4294967296,
    neighbors: int | None = None,
    partitions: int = 1,
    shuffle_partitions: bool = False,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32], npt.NDArray[np.float64], float]: ...
def knn_graph(x: npt.NDArray[np.float32], k: int) -> tuple[npt.NDArray[np.uint32], npt.NDArray[np.float32]]: ...
