"""Crash-safe outputs (issue 20, item 1), tested by killing the writer at every file operation.

A forked child arms a counter on the write-side file operations (``open`` for writing, ``os.replace``,
``os.unlink``, ``os.fsync``, ``os.chmod``, ``tempfile.mkstemp``) and SIGKILLs itself at the N-th one; N runs
from 1 until a child finishes without being killed, so every operation of the write is a kill point. After
each kill the folder must either be refused by the loaders with a clear error, or load completely and
consistently: weights, config and selection all from the old save or all from the new one.
"""

from __future__ import annotations

import builtins
import json
import os
import signal
import tempfile

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

import erasus
from erasus import ErasusUnlearner
from erasus.io import MANIFEST, verify_file, verify_run_folder

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="fault injection forks the writer")


def _armed(kill_at: int) -> None:
    """Make the N-th write-side file operation of this process its last (SIGKILL, no cleanup)."""
    count = [0]

    def tick() -> None:
        count[0] += 1
        if count[0] == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)

    def wrap(fn):
        def inner(*args, **kwargs):
            tick()
            return fn(*args, **kwargs)
        return inner

    real_open = builtins.open

    def open_(file, mode="r", *args, **kwargs):
        if any(c in mode for c in "wax+"):
            tick()
        return real_open(file, mode, *args, **kwargs)

    builtins.open = open_
    for name in ("replace", "rename", "unlink", "fsync", "chmod"):
        setattr(os, name, wrap(getattr(os, name)))
    tempfile.mkstemp = wrap(tempfile.mkstemp)


def _kill_sweep(write, check, *, limit: int = 400) -> int:
    """Run ``write`` in a child killed at operation 1, 2, ...; ``check(killed)`` after each. Returns the count."""
    for kill_at in range(1, limit):
        pid = os.fork()
        if pid == 0:  # the child: never returns into pytest
            try:
                _armed(kill_at)
                write()
            except BaseException:
                os._exit(3)
            os._exit(0)
        _, status = os.waitpid(pid, 0)
        killed = os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
        assert killed or os.WEXITSTATUS(status) == 0, f"the writer failed (status {status}) at kill point {kill_at}"
        check(killed)
        if not killed:
            return kill_at - 1
    raise AssertionError("the write never finished")


def _fitted(lr: float, selector: str, seed: int) -> ErasusUnlearner:
    torch.manual_seed(seed)
    x, y = torch.randn(60, 8), torch.arange(60) % 3
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))
    un = ErasusUnlearner(model, strategy="gradient_ascent", selector=selector, prune_ratio=0.2, seed=seed, lr=lr)
    un.fit(TensorDataset(x[:20], y[:20]), steps=2, progress=False)
    return un


def _read(folder):
    """(weights, config, selection) through the public loaders, or None when they refuse the folder."""
    template = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))
    try:
        model = ErasusUnlearner.load_weights(template, folder)
        config = ErasusUnlearner.load_config(folder)
        selection = ErasusUnlearner.load_selection(folder)
    except erasus.InvalidInputError as exc:
        assert "re-run the save" in str(exc) or "not a run folder" in str(exc), exc
        return None
    return [p.detach().clone() for p in model.state_dict().values()], config, selection.indices.tolist()


def _expected(un):
    return ([p.detach().clone() for p in un.model_.state_dict().values()], None, un.selection_.indices.tolist())


def _same(got, want) -> bool:
    weights, config, indices = got
    return (all(torch.equal(a, b) for a, b in zip(weights, want[0])) and indices == want[2]
            and (want[1] is None or config == want[1]))


def test_save_killed_at_every_file_operation_never_loads_a_mixed_folder(tmp_path):
    old, new = _fitted(0.005, "random", 0), _fitted(0.05, "kcenter", 1)
    folder = tmp_path / "run"
    outcomes = {"refused": 0, "old": 0, "new": 0}

    def check(killed: bool) -> None:
        got = _read(folder)
        if got is None:
            outcomes["refused"] += 1
            return
        want_old, want_new = _expected(old), _expected(new)
        if _same(got, want_new) and got[1]["strategy_options"]["lr"] == 0.05:
            outcomes["new"] += 1
        else:
            assert _same(got, want_old) and got[1]["selector"] == "random", "a loadable folder mixes two saves"
            outcomes["old"] += 1
        if not killed:
            assert _same(got, want_new)

    def fresh_old() -> None:
        old.save(folder)
        assert _read(folder) is not None

    fresh_old()  # every kill hits a save over a previous complete one, the case that could mix them
    n_ops = _kill_sweep(lambda: new.save(folder), lambda killed: (check(killed), fresh_old()))
    assert n_ops >= 12  # three files, each: mkstemp, open, fsync, chmod, replace, fsync dir ... and the manifest
    assert outcomes["old"] > 0 and outcomes["new"] > 0 and outcomes["refused"] > 0
    # temporaries of killed writes are cleaned by the next save; files are readable by others (not 0600)
    new.save(folder)
    assert not [p for p in folder.iterdir() if p.name.endswith(".tmp")]
    umask = os.umask(0)
    os.umask(umask)
    for name in ("model.safetensors", "config.json", "selection.json", MANIFEST):
        assert (folder / name).stat().st_mode & 0o777 == 0o644 & ~umask, name


def test_truncated_or_changed_files_and_missing_manifest_are_refused(tmp_path):
    un = _fitted(0.01, "random", 0)
    folder = un.save(tmp_path / "run")
    template = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "selector": "craig"}))
    with pytest.raises(erasus.InvalidInputError, match="'config.json' does not match the SHA-256"):
        ErasusUnlearner.load_config(folder)
    folder = un.save(tmp_path / "run")
    data = (folder / "model.safetensors").read_bytes()
    (folder / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(erasus.InvalidInputError, match="inconsistent"):
        ErasusUnlearner.load_weights(template, folder)
    un.save(folder)
    (folder / MANIFEST).unlink()
    with pytest.raises(erasus.InvalidInputError, match="has no manifest.json: the save that wrote it did not finish"):
        ErasusUnlearner.load_weights(template, folder)
    with pytest.raises(erasus.InvalidInputError, match="not a run folder"):
        verify_run_folder(tmp_path / "nowhere")


@pytest.mark.slow  # ~40 forks of a large test process: half a minute on a loaded machine
def test_exported_demo_inputs_killed_at_every_operation_are_refused_or_complete(tmp_path):
    from erasus.experiments.claim import _export

    torch.manual_seed(0)
    a, b = nn.Linear(4, 2), nn.Linear(4, 2)
    data = {s: TensorDataset(torch.randn(6, 4), torch.arange(6) % 2) for s in ("forget", "retain", "test")}
    folder = tmp_path / "digits"

    def check(killed: bool) -> None:
        files = sorted(p for p in folder.glob("*") if not p.name.startswith(".")) if folder.exists() else []
        for p in files:
            if p.name == MANIFEST:
                continue
            try:
                verify_file(p)
                loadable = True
            except erasus.InvalidInputError as exc:
                assert "interrupted" in str(exc) or "does not match" in str(exc), exc
                loadable = False
            if not killed:
                assert loadable
        if not killed:
            assert verify_run_folder(folder)["files"].keys() == {
                "original.safetensors", "retrained.safetensors", "forget.npz", "retain.npz", "test.npz"}

    _export(folder, a, b, data)  # a previous complete export is being overwritten
    ops = _kill_sweep(lambda: _export(folder, b, a, data), check)
    assert ops >= 20


def test_a_report_killed_at_every_operation_keeps_a_complete_page_or_none(tmp_path):
    from erasus.report import write_report

    rows = [{"strategy": "ga", "selector": "kcenter", "fraction": 0.1, "avg_gap": 0.1}]
    out = tmp_path / "report"
    write_report(rows, out, title="old run")

    def check(killed: bool) -> None:
        page = out / "report.html"
        if page.exists():  # html is replaced atomically: a whole old page or a whole new one
            text = page.read_text()
            assert text.endswith("</body></html>") and ("old run" in text or "new run" in text)
        if not killed:
            assert "new run" in page.read_text() and verify_run_folder(out)

    assert _kill_sweep(lambda: write_report(rows, out, title="new run"), check) >= 8


def test_unwritable_output_is_reported_before_any_work(tmp_path):
    un = _fitted(0.01, "random", 0)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(erasus.InvalidInputError, match="exists and is not a folder"):
        un.save(blocker)
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        if os.access(ro, os.W_OK):
            pytest.skip("running as root: permissions are not enforced")
        with pytest.raises(erasus.InvalidInputError, match="is not writable"):
            un.save(ro / "run")
        assert not (ro / "run").exists()
    finally:
        ro.chmod(0o755)
