"""Protocol v3 extras (issue 19): where a coreset changes more than the number of steps.

Three experiments on the full-size Fashion-MNIST models of ``run.py`` (``PoolCNN``, class-0 forgetting), each
writing ``extras_<name>.json`` next to this file (resumable: a rerun skips what is there):

``head``
    Certified removal's Newton step (Guo, Goldstein, Hannun & van der Maaten, "Certified Data Removal from
    Machine Learning Models", ICML 2020; erasus' ``certified_removal``, whose reference is
    facebookresearch/certified-removal ``test_removal.py``) on a convex head: the CNN's penultimate features
    are frozen, an L2-regularised one-vs-rest logistic head is fitted on all training images (float64, Newton to
    ``||grad|| < 1e-12 n``), and the forget class is removed by one Newton step whose forget gradient is
    (a) the full forget set's, (b) a weighted coreset's ``sum_{j in S} w_j grad l_j`` (CRAIG on the head's exact
    per-sample gradients and facility location on the embeddings, weights = cluster sizes; random with uniform
    weights ``n_f / k``). Reference: the head refitted from scratch on the retain features (the same perturbation
    ``b``), by the same Newton solver and, independently, by scipy's L-BFGS. Reported: ``||W - W_ref||_F``, Avg.
    Gap / forget accuracy against the reference head, the exact joint gradient residual
    ``||grad L(W; D')||_F`` (what a weighted removal is charged) and Corollary 1's data-dependent bound (what a
    full-set removal is charged), CPU and wall seconds.
``ssd``
    SSD (Foster, Schoepf & Brintrup, AAAI 2024; erasus' ``ssd``, reference if-loops/selective-synaptic-dampening
    ``src/ssd.py``) with the forget importance ``I_Df`` estimated on a (weighted) coreset and the training-data
    importance ``I_D`` computed once on the full training data (retain + forget, as erasus' ``ssd`` does);
    overlap of the dampened parameter set with the full forget set's, and the Avg. Gap to the retrained CNN.
``influence``
    Koh & Liang's influence selector (``influence``, exact inverse Hessian on the last layer) as a 10% coreset
    for gradient ascent / GradDiff against random, the target being the full set's best Avg. Gap + 1 point
    (as ``run.py``), with ``until=``.

    OMP_NUM_THREADS=1 python benches/unlearning/v3/extras.py head --original ORIGINAL.pt --oracle ORACLE.pt

Times: ``cpu_s`` is ``time.process_time()`` of this single-threaded process (torch on one thread), ``wall_s``
is LOADED wall clock on the shared machine.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import TensorDataset

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import erasus
from erasus.errors import NonFiniteError, TargetNotReachedWarning
from erasus.experiments.datasets import load_fashion_mnist
from run import BASE_LR, PoolCNN, _accuracy, _uptime

FRACTIONS = (0.01, 0.05, 0.1, 0.2)


class Clock:
    """CPU seconds of this process and wall seconds of one block."""

    def __enter__(self):
        self.c0, self.w0 = time.process_time(), time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        self.cpu_s, self.wall_s = time.process_time() - self.c0, time.perf_counter() - self.w0


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')} load {_uptime()}] {msg}", flush=True)


def load_model(path: str) -> torch.nn.Module:
    model = PoolCNN()
    model.load_state_dict(torch.load(path, weights_only=True))
    return model.eval()


def data(args) -> tuple[TensorDataset, TensorDataset, TensorDataset, np.ndarray]:
    xtr, ytr, xte, yte = load_fashion_mnist(limit_train=args.limit_train or None, limit_test=args.limit_test or None,
                                            seed=0)
    is_forget = (ytr == args.forget_class).numpy()
    return (TensorDataset(xtr[is_forget], ytr[is_forget]), TensorDataset(xtr[~is_forget], ytr[~is_forget]),
            TensorDataset(xte, yte), is_forget)


class Results:
    def __init__(self, path: Path, config: dict) -> None:
        self.path = path
        self.data = json.loads(path.read_text()) if path.exists() else {"runs": {}}
        import hashlib

        hashes = {k: hashlib.sha256(Path(config[k]).read_bytes()).hexdigest()[:16]
                  for k in ("original", "oracle") if config.get(k)}
        self.data["config"] = config | {"machine": platform.platform(), "cpus": os.cpu_count(), "sha256": hashes,
                                        "torch_threads": torch.get_num_threads()}

    def __contains__(self, key: str) -> bool:
        return key in self.data["runs"]

    def put(self, key: str, value: dict) -> None:
        self.data["runs"][key] = value | {"load": _uptime()}
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data, indent=1, default=float))
        tmp.replace(self.path)


def select(name: str, k: int, *, seed: int, embeddings: np.ndarray, gradients: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """(indices, weights summing to n_f, CPU seconds) of a weighted coreset of size ``k``."""
    n = embeddings.shape[0]
    with Clock() as c:
        if name == "random":
            idx = np.sort(np.random.default_rng(seed).choice(n, size=k, replace=False))
            w = np.full(k, n / k)
        else:
            feats = gradients if name == "craig" else embeddings
            sel = erasus.get_selector(name, seed=seed).select(k, features=feats.astype(np.float32))
            idx, w = sel.indices, sel.weights.astype(np.float64)
    return idx, w, c.cpu_s


# ---------------------------------------------------------------------------------------------------- head
def penultimate(model: PoolCNN, ds: TensorDataset) -> torch.Tensor:
    with torch.no_grad():
        return torch.cat([model.body(ds.tensors[0][i:i + 1024]) for i in range(0, len(ds), 1024)]).double()


def lbfgs_reference(x: torch.Tensor, y: torch.Tensor, lam: float, b: torch.Tensor, w0: torch.Tensor) -> tuple[torch.Tensor, dict]:
    """The perturbed one-vs-rest objective minimised by scipy's L-BFGS-B (float64): an independent solver."""
    import scipy.optimize
    from erasus.strategies.certified_removal import (
        _signs,
        objective_grad,
        objective_value,
    )

    c, d = w0.shape
    s, n = _signs(y, c), x.shape[0]

    def fun(v: np.ndarray) -> tuple[float, np.ndarray]:
        w = torch.from_numpy(v.reshape(c, d))
        return float(objective_value(w, x, s, lam, n, b).sum()), objective_grad(w, x, s, lam, n, b).numpy().ravel()

    res = scipy.optimize.minimize(fun, w0.numpy().ravel(), jac=True, method="L-BFGS-B",
                                  options={"maxiter": 20000, "maxcor": 50, "gtol": 1e-10, "ftol": 1e-16})
    return torch.from_numpy(res.x.reshape(c, d)), {"nit": int(res.nit), "message": str(res.message)}


def head(args) -> None:
    from erasus.metrics.gap import GAP_KEYS, AvgGapMetric, avg_gap
    from erasus.strategies.certified_removal import (
        CertifiedRemoval,
        _newton,
        _signs,
        residual_norm,
    )

    torch.set_num_threads(1)
    res = Results(HERE / args.out, vars(args) | {"experiment": "head"})
    forget, retain, test, _ = data(args)
    original = load_model(args.original)
    with Clock() as feat_clock:
        ff, fr, fte = penultimate(original, forget), penultimate(original, retain), penultimate(original, test)
    yf, yr, yte = forget.tensors[1], retain.tensors[1], test.tensors[1]
    n_f = len(yf)
    log(f"features: {ff.shape[1]}-d, forget {n_f} / retain {len(yr)} / test {len(yte)} "
        f"({feat_clock.cpu_s:.1f} CPU s)")
    opts = {"lam": args.lam, "sigma": args.sigma, "epsilon": args.epsilon, "delta": args.delta}
    strategy = CertifiedRemoval(**opts)
    # the head on all training features, in the training set's order
    x_all = torch.cat([ff, fr])
    y_all = torch.cat([yf, yr])
    with Clock() as fit_clock:
        base = strategy.fit(TensorDataset(x_all, y_all), num_classes=10, seed=args.noise_seed)
    b = base.noise
    feats = base.features  # [phi, 1]
    xf1, xr1 = feats(ff), feats(fr)
    # reference: the head refitted from scratch on the retain features, same perturbation b, Newton to optimality
    with Clock() as ref_clock:
        w_ref = _newton(torch.zeros_like(base.weight), xr1, _signs(yr, 10), base.lam, len(yr), b, 100)
    ref = copy.deepcopy(base)
    with torch.no_grad():
        ref.weight.copy_(w_ref)
    ref_residual = float(residual_norm(base, xr1, yr, weight=w_ref))
    with Clock() as lbfgs_clock:
        w_lbfgs, lbfgs_info = lbfgs_reference(xr1, yr, base.lam, b, torch.zeros_like(w_ref))
    lbfgs_residual = float(residual_norm(base, xr1, yr, weight=w_lbfgs))
    log(f"head fitted ({fit_clock.cpu_s:.1f} CPU s), reference refit ({ref_clock.cpu_s:.1f} CPU s, residual "
        f"{ref_residual:.2e}); L-BFGS reference: ||W_lbfgs - W_ref|| = {float((w_lbfgs - w_ref).norm()):.2e}, "
        f"residual {lbfgs_residual:.2e} ({lbfgs_clock.cpu_s:.1f} CPU s)")
    # Avg. Gap on seeded probes (the SVC attack is quadratic in its training set); accuracies on everything
    probes = _probes(TensorDataset(ff, yf), TensorDataset(fr, yr), TensorDataset(fte, yte), args.probe, seed=12345)
    gap = AvgGapMetric(seed=0)
    ref_components = gap._components(ref, probes["forget"], probes["retain"], probes["test"])

    def evaluate(h) -> dict:
        mine = gap._components(h, probes["forget"], probes["retain"], probes["test"])
        return {"avg_gap_pts": 100 * avg_gap(mine, ref_components),
                **{f"gap_{k}": 100 * abs(mine[k] - ref_components[k]) for k in GAP_KEYS},
                "forget_acc": _accuracy(h, ff, yf),
                "retain_acc": _accuracy(h, fr, yr), "test_acc": _accuracy(h, fte, yte),
                "param_dist": float((h.weight - w_ref).norm()),
                "residual_exact": float(residual_norm(base, xr1, yr, weight=h.weight))}

    res.data["reference"] = {"fit_cpu_s": fit_clock.cpu_s, "fit_wall_s": fit_clock.wall_s,
                             "features_cpu_s": feat_clock.cpu_s, "refit_cpu_s": ref_clock.cpu_s,
                             "refit_wall_s": ref_clock.wall_s, "refit_residual": ref_residual,
                             "lbfgs_dist_to_newton_ref": float((w_lbfgs - w_ref).norm()),
                             "lbfgs_residual": lbfgs_residual, "lbfgs_cpu_s": lbfgs_clock.cpu_s, **lbfgs_info,
                             "ref_norm": float(w_ref.norm()), "budget_at_sigma": base.budget,
                             "ref_forget_acc": _accuracy(ref, ff, yf), "ref_test_acc": _accuracy(ref, fte, yte),
                             "original": evaluate(base) | {"acc_note": "the head before removal"}}
    log(f"reference head: forget acc {res.data['reference']['ref_forget_acc']:.4f}, test acc "
        f"{res.data['reference']['ref_test_acc']:.4f}; before removal {res.data['reference']['original']}")
    # per-sample gradients of the head's loss at W* (exact, closed form): the features CRAIG works on
    sf = _signs(yf, 10)
    coef = -sf * torch.sigmoid(-sf * (xf1 @ base.weight.T))  # (n_f, C)
    grads = (coef[:, :, None] * xf1[:, None, :]).reshape(n_f, -1).numpy()
    full_forget_grad = (coef.T @ xf1)
    embeddings = ff.numpy()

    def remove(idx: np.ndarray | None, w: np.ndarray | None) -> tuple[dict, object]:
        h = copy.deepcopy(base)
        h.budget = 1e300  # measured, not refused: the residual is reported against the budget below
        f_ds = TensorDataset(ff, yf) if idx is None else TensorDataset(ff[idx], yf[idx])
        with Clock() as c:
            out = strategy.unlearn(model=h, forget_data=f_ds, retain_data=TensorDataset(fr, yr),
                                   weights=None if w is None else torch.as_tensor(w), progress=False)
        info = dict(strategy.info_)
        # implied epsilon at this sigma: the Gaussian mechanism certifies residual <= sigma * eps / c
        cfac = float(np.sqrt(2 * np.log(1.5 / args.delta)))
        row = evaluate(out) | {"cpu_s": c.cpu_s, "wall_s": c.wall_s,
                               "residual_bound": info["residual_bound"], "residual_request": info["residual_request"],
                               "implied_epsilon": info["residual_request"] * cfac / args.sigma}
        if idx is not None:
            est = torch.as_tensor(w)[:, None].T @ torch.as_tensor(grads[idx])
            row["grad_rel_err"] = float((est.reshape(full_forget_grad.shape) - full_forget_grad).norm()
                                        / full_forget_grad.norm())
        return row, out

    row, full_head = remove(None, None)  # always recomputed (about a second): the coresets' distances need it
    if "full" not in res:
        res.put("full", row)
        log(f"full: {row}")
    for seed in args.seeds:
        for frac in FRACTIONS:
            k = max(1, int(round(frac * n_f)))
            for name in args.selectors:
                key = f"{seed}|{name}|{frac}"
                if key in res:
                    continue
                idx, w, sel_cpu = select(name, k, seed=seed, embeddings=embeddings, gradients=grads)
                row, out = remove(idx, w)
                row |= {"k": int(k), "select_cpu_s": sel_cpu, "weight_sum": float(w.sum()),
                        "dist_to_full": float((out.weight - full_head.weight).norm())}
                res.put(key, row)
                log(f"{key}: gap {row['avg_gap_pts']:.3f} pts, dist {row['param_dist']:.4f}, residual "
                    f"{row['residual_exact']:.3g}, grad err {row['grad_rel_err']:.3f}")


# ----------------------------------------------------------------------------------------------------- ssd
def _ce(model: torch.nn.Module, batch, w: torch.Tensor | None) -> torch.Tensor:
    from erasus.strategies.base import weighted

    x, y = batch
    return weighted(torch.nn.functional.cross_entropy(model(x), y, reduction="none"), w)


def _batches(ds: TensorDataset, weights: np.ndarray | None = None, batch_size: int = 64):
    """Unshuffled ``((x, y), w)`` batches, as erasus' ``ssd`` streams them (``Run.forget_epoch(shuffle=False)``)."""
    x, y = ds.tensors
    for i in range(0, len(y), batch_size):
        yield (x[i:i + batch_size], y[i:i + batch_size]), (
            None if weights is None else torch.as_tensor(weights[i:i + batch_size], dtype=torch.float32))


def _probes(forget: TensorDataset, retain: TensorDataset, test: TensorDataset, size: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)

    def sub(ds: TensorDataset) -> TensorDataset:
        idx = np.sort(rng.choice(len(ds), size=min(size, len(ds)), replace=False))
        return TensorDataset(*(t[idx] for t in ds.tensors))

    return {"forget": sub(forget), "retain": sub(retain), "test": sub(test)}


def coreset_features(original: torch.nn.Module, forget: TensorDataset, res: Results, cache: Path) -> dict:
    """Penultimate embeddings and 256-d projected per-sample gradients (seed 0) of the forget set, cached."""
    from erasus.selectors.base import features_from_model

    out = {}
    for kind, opts in (("embeddings", {}), ("gradients", {"proj_dim": 256})):
        path = cache / f"{kind}.npy"
        if path.exists():
            out[kind] = np.load(path)
            continue
        with Clock() as c:
            out[kind] = np.asarray(features_from_model(original, forget, kind=kind, seed=0, progress=False, **opts))
        np.save(path, out[kind])
        res.data.setdefault("features", {})[kind] = {"cpu_s": c.cpu_s, "wall_s": c.wall_s, "dim": out[kind].shape[1]}
        log(f"{kind}: {out[kind].shape} in {c.cpu_s:.1f} CPU s ({c.wall_s:.1f} s wall, LOADED)")
    return out


def select_cnn(name: str, k: int, *, seed: int, feats: dict, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """(indices, weights, CPU s) of a coreset of the CNN's forget set; weights sum to n_f for random / FL / CRAIG."""
    n = len(labels)
    with Clock() as c:
        if name == "random":
            idx = np.sort(np.random.default_rng(seed).choice(n, size=k, replace=False))
            w = np.full(k, n / k)
        else:
            sel = erasus.get_selector(name, seed=seed)
            kind = sel.default_features
            s = sel.select(k, features=feats[kind], **({"labels": labels} if name == "craig" else {}))
            idx, w = s.indices, s.weights.astype(np.float64)
    return idx, w, c.cpu_s


def ssd(args) -> None:
    from erasus.kernels import ssd_dampen_
    from erasus.metrics.gap import GAP_KEYS, AvgGapMetric, avg_gap
    from erasus.strategies.ssd import importance

    torch.set_num_threads(1)
    res = Results(HERE / args.out, vars(args) | {"experiment": "ssd"})
    forget, retain, test, _ = data(args)
    original, oracle = load_model(args.original), load_model(args.oracle)
    cache = Path(args.work) / "ssd"
    cache.mkdir(parents=True, exist_ok=True)
    bsz = lambda b: len(b[1])
    # I_D once, on the full training data (retain then forget batches, unweighted), as erasus' ssd computes it
    imp_path = cache / "imp_full.pt"
    if imp_path.exists():
        imp_full = torch.load(imp_path, weights_only=True)
    else:
        import itertools

        with Clock() as c:
            imp_full = importance(original, itertools.chain(_batches(retain), _batches(forget)), _ce, batch_size=bsz)
        torch.save(imp_full, imp_path)
        res.data["imp_full"] = {"cpu_s": c.cpu_s, "wall_s": c.wall_s}
        log(f"I_D on {len(retain) + len(forget)} images: {c.cpu_s:.1f} CPU s ({c.wall_s:.1f} s wall, LOADED)")
    feats = coreset_features(original, forget, res, cache)
    labels = forget.tensors[1].numpy()
    gap = AvgGapMetric(seed=0)
    probes = _probes(forget, retain, test, args.probe, seed=12345)
    ref_components = gap._components(oracle, probes["forget"], probes["retain"], probes["test"])  # once

    def mask_of(imp_forget, alpha: float) -> torch.Tensor:
        return torch.cat([(f > alpha * d).reshape(-1) for f, d in zip(imp_forget, imp_full)])

    def dampen(imp_forget, alpha: float) -> tuple[torch.nn.Module, int]:
        model = copy.deepcopy(original)
        ps = [p for p in model.parameters() if p.requires_grad]
        with torch.no_grad():
            count = ssd_dampen_(ps, imp_full, imp_forget, alpha=alpha, lam=args.ssd_lambda)
        return model, count

    def evaluate(model: torch.nn.Module) -> dict:
        mine = gap._components(model, probes["forget"], probes["retain"], probes["test"])
        return {"avg_gap_pts": 100 * avg_gap(mine, ref_components),
                **{f"gap_{k}": 100 * abs(mine[k] - ref_components[k]) for k in GAP_KEYS},
                "forget_acc": _accuracy(model, *forget.tensors)}

    # the full forget set: I_Df, and every alpha of the grid
    with Clock() as c:
        imp_forget_full = importance(original, _batches(forget), _ce, batch_size=bsz)
    full_cpu = c.cpu_s
    full_masks = {a: mask_of(imp_forget_full, a) for a in args.alphas}
    for alpha in args.alphas:
        key = f"full|{alpha}"
        if key in res:
            continue
        with Clock() as dc:
            model, count = dampen(imp_forget_full, alpha)
        row = {"dampened": count, "imp_forget_cpu_s": full_cpu, "dampen_cpu_s": dc.cpu_s, **evaluate(model)}
        res.put(key, row)
        log(f"{key}: {row}")
    # cross-check against erasus' own ssd strategy on the full set, at the first alpha
    if "ssd_strategy_check" not in res.data:
        alpha = args.alphas[0]
        strat = erasus.get_strategy("ssd", alpha=alpha, lam=args.ssd_lambda, batch_size=64)
        with Clock() as c, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out = strat.unlearn(model=original, forget_data=forget, retain_data=retain, progress=False)
        mine, _ = dampen(imp_forget_full, alpha)
        diff = max(float((a.detach() - b.detach()).abs().max()) for a, b in zip(out.parameters(), mine.parameters()))
        res.data["ssd_strategy_check"] = {"alpha": alpha, "dampened_strategy": strat.info_["dampened"],
                                          "dampened_here": int(full_masks[alpha].sum()),
                                          "max_abs_param_diff": diff, "cpu_s": c.cpu_s, "wall_s": c.wall_s}
        res.put("_check", {})
        log(f"erasus ssd vs this pipeline: {res.data['ssd_strategy_check']}")
    n_f = len(labels)
    for seed in args.seeds:
        for frac in FRACTIONS:
            k = max(1, int(round(frac * n_f)))
            for name in args.selectors:
                key = f"{seed}|{name}|{frac}"
                if key in res:
                    continue
                idx, w, sel_cpu = select_cnn(name, k, seed=seed, feats=feats, labels=labels)
                sub = TensorDataset(*(t[idx] for t in forget.tensors))
                with Clock() as c:
                    imp_f = importance(original, _batches(sub, w), _ce, batch_size=bsz)
                row = {"k": k, "select_cpu_s": sel_cpu, "imp_forget_cpu_s": c.cpu_s, "alphas": {}}
                for alpha in args.alphas:
                    m = mask_of(imp_f, alpha)
                    full = full_masks[alpha]
                    inter, union = int((m & full).sum()), int((m | full).sum())
                    model, count = dampen(imp_f, alpha)
                    row["alphas"][str(alpha)] = {
                        "dampened": count, "overlap": inter, "jaccard": inter / union if union else 1.0,
                        "recall_of_full": inter / int(full.sum()) if int(full.sum()) else 1.0,
                        "precision": inter / int(m.sum()) if int(m.sum()) else 1.0, **evaluate(model)}
                res.put(key, row)
                log(f"{key}: " + "; ".join(f"a={a}: J={v['jaccard']:.3f} gap={v['avg_gap_pts']:.2f}"
                                          for a, v in row["alphas"].items()))


# ----------------------------------------------------------------------------------------------- influence
def influence(args) -> None:
    """GA / GradDiff on the full forget set (the target) and on 10% coresets (random, influence), run.py's loop."""
    torch.set_num_threads(1)
    res = Results(HERE / args.out, vars(args) | {"experiment": "influence"})
    forget, retain, test, _ = data(args)
    original, oracle = load_model(args.original), load_model(args.oracle)
    sel_opts = {"influence": {"params": "last_layer", "approximation": "exact", "progress": False}}
    for seed in args.seeds:
        rng = np.random.default_rng(seed)

        def probe(ds: TensorDataset) -> TensorDataset:
            idx = np.sort(rng.choice(len(ds), size=min(args.probe, len(ds)), replace=False))
            return TensorDataset(*(t[idx] for t in ds.tensors))

        probes = {"data": probe(forget), "retain": probe(retain), "test": probe(test)}
        for strategy in args.strategies:
            for scale in args.lr_scales:
                key = f"{seed}|{strategy}|full|{scale}"
                if key in res:
                    continue
                lr = BASE_LR[strategy] * scale
                un = erasus.ErasusUnlearner(original, strategy=strategy, selector="full", seed=seed, lr=lr,
                                            batch_size=64)
                diverged = None
                with warnings.catch_warnings(), Clock() as c:
                    warnings.simplefilter("ignore", TargetNotReachedWarning)
                    try:
                        un.fit(forget, retain, prune_ratio=1.0, steps=args.cap, progress=False,
                               until={"avg_gap_to": oracle, "below": -1.0, "every": args.every, **probes})
                    except NonFiniteError as exc:
                        diverged = str(exc)
                res.put(key, {"lr": lr, "checks": un.strategy.history_.checks, "timings": un.timings_,
                              "diverged": diverged, "cpu_s": c.cpu_s, "wall_s": c.wall_s})
                log(f"{key}: best {min([ch['value'] for ch in un.strategy.history_.checks[1:]] or [np.nan]):.2f}")
            best = min(ch["value"] for s in args.lr_scales for ch in res.data["runs"][f"{seed}|{strategy}|full|{s}"]["checks"][1:])
            target = best + 1.0
            for selector in ("random", "influence"):
                for scale in args.lr_scales:
                    key = f"{seed}|{strategy}|{selector}|{scale}"
                    if key in res:
                        continue
                    lr = BASE_LR[strategy] * scale
                    un = erasus.ErasusUnlearner(original, strategy=strategy, selector=selector, seed=seed, lr=lr,
                                                batch_size=64, selector_options=sel_opts.get(selector))
                    diverged = None
                    with warnings.catch_warnings(), Clock() as c:
                        warnings.simplefilter("ignore", TargetNotReachedWarning)
                        try:
                            un.fit(forget, retain, prune_ratio=args.fraction, steps=args.cap, progress=False,
                                   until={"avg_gap_to": oracle, "below": target, "every": args.every, **probes})
                        except NonFiniteError as exc:
                            diverged = str(exc)
                    checks = un.strategy.history_.checks
                    res.put(key, {"lr": lr, "checks": checks, "target": target, "timings": un.timings_,
                                  "reached": bool(checks and checks[-1]["met"]), "diverged": diverged,
                                  "cpu_s": c.cpu_s, "wall_s": c.wall_s})
                    log(f"{key}: reached={res.data['runs'][key]['reached']} at step {checks[-1]['step'] if checks else '-'}"
                        f", target {target:.2f}" + (" (diverged)" if diverged else ""))


# --------------------------------------------------------------------------------------------------- table
def _ms(vals: list[float], fmt: str = "{:.2f}") -> str:
    vals = [v for v in vals if v is not None and np.isfinite(v)]
    if not vals:
        return "-"
    return (fmt + " ± " + fmt).format(np.mean(vals), np.std(vals)) if len(vals) > 1 else fmt.format(vals[0])


def _analyse_t2t(runs: dict) -> dict:
    """``run.py``'s first ``table.py`` definitions (commit 6a04993), kept here so these numbers stay reproducible:
    per (strategy, selector) and seed, the best Avg. Gap over the lr grid (step 0 excluded) and the time-to-target,
    the cheapest lr's features + selection + unlearning wall seconds up to the first check below the full set's
    best + 1 point ("unlearning only": without features and selection)."""
    from collections import defaultdict

    by = defaultdict(list)
    for key, run in runs.items():
        seed, strategy, selector, _ = key.split("|")
        by[(seed, strategy, selector)].append(run)
    out: dict = defaultdict(dict)
    for (seed, strategy, selector), grid in by.items():
        best = min((c["value"] for r in grid for c in r["checks"][1:]), default=float("nan"))
        target = min(c["value"] for r in by[(seed, strategy, "full")] for c in r["checks"][1:]) + 1.0
        times, steps_only = [], []
        for r in grid:
            hit = next((c for c in r["checks"][1:] if c["value"] < target), None)
            if hit is not None:
                t = r["timings"]
                times.append(hit["elapsed_s"] + t.get("features_s", 0.0) + t.get("selection_s", 0.0))
                steps_only.append(hit["elapsed_s"])
        out[(strategy, selector)][seed] = {"best": best, "t2t": min(times) if times else None, "reached": bool(times),
                                           "t2t_unlearn": min(steps_only) if steps_only else None}
    return out


def table(args) -> None:
    """Markdown tables of whichever ``extras_*.json`` exist."""
    from collections import defaultdict

    head_path, inf_path = HERE / "extras_head.json", HERE / "extras_influence.json"
    if head_path.exists():
        r = json.loads(head_path.read_text())
        ref, full = r["reference"], r["runs"]["full"]
        print(f"Reference head (refit on the retain features): forget acc {ref['ref_forget_acc']:.4f}, test acc "
              f"{ref['ref_test_acc']:.4f}, residual {ref['refit_residual']:.1e}, refit {ref['refit_cpu_s']:.2f} CPU s; "
              f"L-BFGS: ‖W_lbfgs - W_ref‖ = {ref['lbfgs_dist_to_newton_ref']:.1e}. Before removal: Avg. Gap "
              f"{ref['original']['avg_gap_pts']:.2f} pts, ‖W* - W_ref‖ = {ref['original']['param_dist']:.4f}, "
              f"residual {ref['original']['residual_exact']:.4g}.\n")
        print("| forget gradient | fraction | Avg. Gap (pts) | forget acc | ‖W - W_ref‖_F | ‖W - W_full‖_F "
              "| rel. error of the forget gradient | exact residual ‖grad L(W; D')‖ | removal (CPU s) | selection (CPU s) |")
        print("|---|---|---|---|---|---|---|---|---|---|")
        print(f"| full set | 1.0 | {full['avg_gap_pts']:.3f} | {full['forget_acc']:.4f} | {full['param_dist']:.4f} | 0 | 0 "
              f"| {full['residual_exact']:.4g} (bound {full['residual_bound']:.4g}) | {full['cpu_s']:.2f} | - |")
        groups = defaultdict(list)
        for key, row in r["runs"].items():
            if key != "full":
                _seed, name, frac = key.split("|")
                groups[(name, float(frac))].append(row)
        for (name, frac), rows in sorted(groups.items(), key=lambda kv: (kv[0][1], kv[0][0])):
            print(f"| {name} ({len(rows)} seeds) | {frac:g} | {_ms([x['avg_gap_pts'] for x in rows], '{:.3f}')} "
                  f"| {_ms([x['forget_acc'] for x in rows], '{:.4f}')} | {_ms([x['param_dist'] for x in rows], '{:.4f}')} "
                  f"| {_ms([x.get('dist_to_full') for x in rows], '{:.4f}')} "
                  f"| {_ms([x['grad_rel_err'] for x in rows], '{:.4f}')} | {_ms([x['residual_exact'] for x in rows], '{:.4g}')} "
                  f"| {_ms([x['cpu_s'] for x in rows])} | {_ms([x['select_cpu_s'] for x in rows])} |")
        print()
    ssd_paths = sorted(HERE.glob("extras_ssd*.json"))  # several files: more alphas, merged per run
    if ssd_paths:
        runs: dict = {}
        for path in ssd_paths:
            for key, row in json.loads(path.read_text())["runs"].items():
                if key in runs and "alphas" in row:
                    runs[key]["alphas"].update(row["alphas"])
                else:
                    runs.setdefault(key, row)
        alphas = sorted({float(k.split("|")[1]) for k in runs if k.startswith("full|")})
        print("Full forget set: " + "; ".join(
            f"alpha {a:g}: {runs[f'full|{a}']['dampened']} dampened, Avg. Gap {runs[f'full|{a}']['avg_gap_pts']:.2f} pts, "
            f"forget acc {runs[f'full|{a}']['forget_acc']:.3f}" for a in alphas) + "\n")
        groups = defaultdict(list)
        for key, row in runs.items():
            parts = key.split("|")
            if len(parts) == 3:
                groups[(parts[1], float(parts[2]))].append(row)
        print("| selector | fraction | " + " | ".join(f"alpha {a:g}: Jaccard / recall of full set / Avg. Gap (pts)"
                                                    for a in alphas) + " | I_Df (CPU s) | selection (CPU s) |")
        print("|---|---|" + "---|" * len(alphas) + "---|---|")
        for (name, frac), rows in sorted(groups.items(), key=lambda kv: (kv[0][1], kv[0][0])):
            cells = []
            for a in alphas:
                v = [x["alphas"][str(a)] for x in rows if str(a) in x["alphas"]]
                if not v:
                    cells.append("-")
                    continue
                cells.append(f"{_ms([x['jaccard'] for x in v], '{:.3f}')} / {_ms([x['recall_of_full'] for x in v], '{:.3f}')}"
                             f" / {_ms([x['avg_gap_pts'] for x in v])}")
            print(f"| {name} ({len(rows)} seeds) | {frac:g} | " + " | ".join(cells)
                  + f" | {_ms([x['imp_forget_cpu_s'] for x in rows])} | {_ms([x['select_cpu_s'] for x in rows])} |")
        print()
    if inf_path.exists():
        r = json.loads(inf_path.read_text())
        out = _analyse_t2t(r["runs"])
        print("| strategy | selector | best Avg. Gap (pts) | reached target (seeds) | time-to-target (s, LOADED) "
              "| unlearning only (s) | paired vs random: best-gap diff | paired vs random: t2t diff (s) |")
        print("|---|---|---|---|---|---|---|---|")
        for (strategy, selector), per_seed in sorted(out.items()):
            seeds = sorted(per_seed)
            best = [per_seed[s]["best"] for s in seeds]
            rnd = out.get((strategy, "random"), {})
            dbest = [per_seed[s]["best"] - rnd[s]["best"] for s in seeds if s in rnd]
            dt = [per_seed[s]["t2t"] - rnd[s]["t2t"] for s in seeds
                  if s in rnd and per_seed[s]["t2t"] is not None and rnd[s]["t2t"] is not None]
            reached = sum(per_seed[s]["reached"] for s in seeds)
            pair = selector not in ("random", "full")
            print(f"| {strategy} | {selector} | {_ms(best)} | {reached}/{len(seeds)} "
                  f"| {_ms([per_seed[s]['t2t'] for s in seeds])} | {_ms([per_seed[s]['t2t_unlearn'] for s in seeds])} "
                  f"| {_ms(dbest) + f'; lower in {sum(d < 0 for d in dbest)}/{len(dbest)}' if pair else '-'} "
                  f"| {_ms(dt) + f' ({len(dt)} seeds)' if pair else '-'} |")


# ----------------------------------------------------------------------------------------------------- main
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("experiment", choices=["head", "ssd", "influence", "table"])
    ap.add_argument("--original", help="state_dict of run.py's PoolCNN trained on all images")
    ap.add_argument("--oracle", help="state_dict of the PoolCNN retrained without the forget class")
    ap.add_argument("--limit-train", type=int, default=0, help="0: the full 60,000")
    ap.add_argument("--limit-test", type=int, default=0, help="0: the full 10,000")
    ap.add_argument("--forget-class", type=int, default=0)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--selectors", nargs="+", default=["random", "craig", "facility_location"])
    ap.add_argument("--lam", type=float, default=1e-3, help="head: L2 strength (objective lam n / 2 ||w||^2)")
    ap.add_argument("--sigma", type=float, default=1.0, help="head: std of the objective perturbation b")
    ap.add_argument("--epsilon", type=float, default=1.0)
    ap.add_argument("--delta", type=float, default=1e-4)
    ap.add_argument("--noise-seed", type=int, default=0, help="head: seed of b (a benchmark, not a private release)")
    ap.add_argument("--alphas", type=float, nargs="+", default=[1.0, 2.0, 5.0], help="ssd: selection thresholds")
    ap.add_argument("--ssd-lambda", type=float, default=1.0, help="ssd: dampening strength (the paper's lambda)")
    ap.add_argument("--probe", type=int, default=2000, help="ssd / influence: probe images per split")
    ap.add_argument("--strategies", nargs="+", default=["gradient_ascent", "grad_diff"])
    ap.add_argument("--lr-scales", type=float, nargs="+", default=[0.1, 0.3, 1.0])
    ap.add_argument("--fraction", type=float, default=0.1)
    ap.add_argument("--cap", type=int, default=60)
    ap.add_argument("--every", type=int, default=5)
    ap.add_argument("--work", default="/work/cache/cert", help="scratch for importances and features")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    args.out = args.out or f"extras_{args.experiment}.json"
    {"head": head, "ssd": ssd, "influence": influence, "table": table}[args.experiment](args)


if __name__ == "__main__":
    main()
