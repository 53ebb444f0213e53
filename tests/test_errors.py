import numpy as np
import pytest

import erasus
from erasus import errors


def test_hierarchy_matches_builtin_expectations():
    assert issubclass(errors.InvalidInputError, ValueError)
    assert issubclass(errors.NonFiniteError, errors.InvalidInputError)
    assert issubclass(errors.ErasusTypeError, TypeError)
    assert issubclass(errors.MemoryBudgetError, MemoryError)
    assert issubclass(errors.MissingDependencyError, ImportError)
    for cls in (errors.InvalidInputError, errors.ErasusTypeError, errors.MemoryBudgetError,
                errors.MissingDependencyError, errors.RegistryError, errors.ConfigError):
        assert issubclass(cls, erasus.ErasusError)


def test_rust_errors_arrive_as_erasus_errors():
    x = np.ones((4, 3), dtype=np.float32)
    x[2, 1] = np.nan
    with pytest.raises(erasus.NonFiniteError, match="row 2, column 1"):
        erasus.select(x, 2, method="kcenter")


def test_missing_dependency_names_the_extra():
    with pytest.raises(erasus.MissingDependencyError, match=r"pip install 'erasus-unlearn\[gpu\]'"):
        errors.require("erasus_no_such_module", "gpu")


def test_set_num_threads_refuses_negative_and_non_integers():
    import erasus

    before = erasus.get_num_threads()
    with pytest.raises(erasus.InvalidInputError, match="n >= 0"):
        erasus.set_num_threads(-1)
    with pytest.raises(erasus.ErasusTypeError, match="integer"):
        erasus.set_num_threads(2.5)
    assert erasus.get_num_threads() == before


def test_a_malformed_thread_variable_is_reported():
    import os
    import subprocess
    import sys

    env = {**os.environ, "ERASUS_NUM_THREADS": "abc"}
    proc = subprocess.run([sys.executable, "-c", "import erasus; print(erasus.get_num_threads())"], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and "ERASUS_NUM_THREADS='abc' is not a positive integer" in proc.stderr
