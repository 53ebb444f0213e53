"""The release wheel, installed alone into a fresh venv outside the source tree, works."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.wheel


def _maturin() -> str:
    exe = shutil.which("maturin", path=str(Path(sys.executable).parent)) or shutil.which("maturin")
    if exe is None:
        pytest.fail("maturin is not installed in the test environment (it is in the `dev` extra)")
    return exe


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    subprocess.run([_maturin(), "build", "--release", "--out", str(out), "-q"], cwd=ROOT, check=True,
                   capture_output=True, text=True, timeout=1800)
    wheels = list(out.glob("*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


def _elf_sections(data: bytes) -> set[str]:
    """Section names of a 64-bit little-endian ELF file (the section header table and its string table)."""
    import struct

    assert data[:4] == b"\x7fELF" and data[4] == 2 and data[5] == 1, "not a 64-bit little-endian ELF file"
    shoff, = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x3A)
    headers = [struct.unpack_from("<IIQQQQ", data, shoff + i * shentsize) for i in range(shnum)]
    str_off, str_size = headers[shstrndx][4], headers[shstrndx][5]
    table = data[str_off:str_off + str_size]
    return {table[h[0]:table.index(b"\0", h[0])].decode() for h in headers if h[0]}


def test_wheel_is_abi3_and_ships_the_kernels(wheel):
    assert "-cp310-abi3-" in wheel.name, wheel.name
    assert wheel.name.startswith("erasus_unlearn-")
    names = zipfile.ZipFile(wheel).namelist()
    assert any(n.startswith("erasus/kernels/") and n.endswith("__init__.py") for n in names), names
    assert any(n.startswith("erasus/_core") and n.endswith((".so", ".pyd")) for n in names), names
    assert "erasus/py.typed" in names and "erasus/_core.pyi" in names
    # the release extension is stripped: no symbol table, no debug sections
    so = next(n for n in names if n.startswith("erasus/_core") and n.endswith((".so", ".pyd")))
    if so.endswith(".so"):
        sections = _elf_sections(zipfile.ZipFile(wheel).read(so))
        assert ".dynsym" in sections  # the parse found the section table
        assert ".symtab" not in sections and not any(s.startswith(".debug") for s in sections), sections
    # the example configs ship as package data, for `erasus init`
    assert {"erasus/example_configs/unlearn_digits.yaml", "erasus/example_configs/evaluate_digits.yaml"} <= set(names)
    # the Triton kernels ship once, inside the package (top-level `kernels/` only links to them)
    for module in ("jl.py", "factored.py", "multi_tensor.py"):
        assert [n for n in names if n.endswith("/" + module)] == [f"erasus/kernels/triton_kernels/{module}"]
    assert not any(n.startswith("kernels/") for n in names)


def test_wheel_installs_and_runs_in_a_fresh_venv(wheel, tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    py = venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    # numpy from the index (pip's cache); torch is too large to reinstall per run, so the fresh venv sees
    # this environment's torch through a path entry appended *after* its own site-packages.
    subprocess.run([str(py), "-m", "pip", "install", "-q", "--no-deps", str(wheel), "numpy"], check=True,
                   capture_output=True, text=True, timeout=900)
    site = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          check=True, capture_output=True, text=True).stdout.strip()
    torch_dir = Path(__import__("torch").__file__).parents[1]
    Path(site, "zz_host_torch.pth").write_text(str(torch_dir) + "\n")
    code = textwrap.dedent(
        """
        import numpy as np, erasus, erasus.kernels, torch
        from erasus.kernels import reference
        assert "site-packages" in erasus.__file__ and "python/erasus" not in erasus.__file__, erasus.__file__
        x = np.random.default_rng(0).normal(size=(200, 8)).astype(np.float32)
        sel = erasus.select(x, 10, method="kcenter", seed=0)
        assert len(sel) == 10 and sel.indices.dtype == np.int64
        g = torch.randn(4, 33)
        p = erasus.kernels.jl_project(g, 16, seed=0, backend="torch")
        assert p.shape == (4, 16)
        print("wheel-ok", erasus.__version__)
        """
    )
    proc = subprocess.run([str(py), "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "wheel-ok" in proc.stdout
