"""The documentation's code stays true: the developer guide's extension recipes run as written, and the
citation file keeps the fields CFF 1.2.0 requires. (The site build and the examples run in `make test-docs`.)"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]

# run in a fresh interpreter: the recipes register names in the process-wide registries
CHECK = textwrap.dedent(
    """
    import re, sys
    from pathlib import Path
    import numpy as np, torch
    from torch.utils.data import TensorDataset
    import erasus

    blocks = re.findall(r"```python\\n(.*?)```", Path(sys.argv[1]).read_text(), re.S)
    assert len(blocks) == 3, len(blocks)
    for block in blocks:
        exec(compile(block, "developer.md", "exec"), {})

    X = np.random.default_rng(0).standard_normal((50, 4)).astype(np.float32)
    sel = erasus.get_selector("farthest_from_mean").select(k=5, features=X)
    brute = np.argsort(-((X.astype(np.float64) - X.mean(0)) ** 2).sum(1))[:5]
    assert sorted(sel.indices.tolist()) == sorted(brute.tolist()), (sel.indices, brute)

    torch.manual_seed(0)
    model = torch.nn.Linear(4, 3)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    forget = TensorDataset(torch.randn(8, 4), torch.randint(0, 3, (8,)))
    retain = TensorDataset(torch.randn(8, 4), torch.randint(0, 3, (8,)))
    out = erasus.get_strategy("ascent_with_retain", lr=1e-1).unlearn(
        model=model, forget_data=forget, retain_data=retain, steps=3, progress=False)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())  # inplace=False
    assert not torch.equal(out.weight, before["weight"])

    logits = model(forget.tensors[0]).detach().double()
    top = logits.sort(dim=1, descending=True).values
    want = float((top[:, 0] - top[:, 1]).mean())
    got = erasus.get_metric("top1_margin").compute(model, forget)["top1_margin"]
    assert abs(got - want) < 1e-6, (got, want)
    print("ok")
    """
)


def test_developer_guide_recipes_run_as_written():
    proc = subprocess.run([sys.executable, "-c", CHECK, str(ROOT / "docs" / "developer.md")], capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0 and proc.stdout.strip().endswith("ok"), proc.stdout + proc.stderr


def test_citation_file_has_the_fields_cff_1_2_0_requires():
    cff = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    assert cff["cff-version"] == "1.2.0"
    assert {"message", "title", "authors"} <= set(cff)
    assert all("name" in a or "family-names" in a for a in cff["authors"])
    import tomllib

    assert str(cff["version"]) == tomllib.loads((ROOT / "Cargo.toml").read_text())["workspace"]["package"]["version"]
