"""`import erasus` must stay light and work without the optional heavy dependencies."""

import subprocess
import sys
import textwrap

HEAVY = ["torch", "triton", "transformers", "diffusers", "peft", "opacus", "sklearn", "matplotlib"]


def run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=300)


def test_import_does_not_load_heavy_dependencies():
    proc = run(
        f"""
        import sys, erasus
        loaded = [m for m in {HEAVY!r} if m in sys.modules]
        assert not loaded, loaded
        """
    )
    assert proc.returncode == 0, proc.stderr


def test_selection_works_when_optional_dependencies_are_missing():
    # Hide every optional dependency from the path finder, as on a bare install where they are absent.
    proc = run(
        """
        import sys, importlib.machinery as m
        BLOCKED = {"triton", "transformers", "diffusers", "peft", "opacus", "accelerate"}
        class Hiding(m.PathFinder):
            @classmethod
            def find_spec(cls, name, path=None, target=None):
                if name.split(".")[0] in BLOCKED:
                    return None
                return m.PathFinder.find_spec(name, path, target)
        sys.meta_path = [Hiding if f is m.PathFinder else f for f in sys.meta_path]
        import numpy as np, erasus
        x = np.random.default_rng(0).normal(size=(50, 4)).astype(np.float32)
        sel = erasus.select(x, 5, method="kcenter", seed=0)
        assert len(sel) == 5
        import torch, erasus.kernels  # the torch reference path needs no triton
        p = erasus.kernels.jl_project(torch.ones(2, 10), 4, seed=0)
        assert p.shape == (2, 4)
        for name in BLOCKED:
            assert name not in sys.modules, name
        print("ok")
        """
    )
    assert proc.returncode == 0, proc.stderr
    assert "ok" in proc.stdout


def test_public_api_names():
    import erasus

    for name in ["select", "Selection", "get_selector", "get_strategy", "get_metric", "list_selectors",
                 "list_strategies", "list_metrics", "ErasusError", "set_num_threads", "get_num_threads"]:
        assert name in erasus.__all__ and hasattr(erasus, name), name
