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
