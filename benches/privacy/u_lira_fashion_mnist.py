"""U-LiRA on Fashion-MNIST random forgetting: does it separate an un-unlearned model from the oracle, and not
the oracle from an independently retrained oracle? (issue 16's target; results in RESULTS.md)

    OMP_NUM_THREADS=1 .venv/bin/python benches/privacy/u_lira_fashion_mnist.py [--shadows 8] [--json out.json]

Small on purpose (shared CPUs): 14x14 average-pooled images, a 196-256-10 MLP trained to memorise (100 epochs), 1,000
training samples (100 forget + 900 retain), 1,900 population samples for shadows (each shadow trains on
half of population + forget, ~1,000 samples, as many as the target).
"""

from __future__ import annotations

import argparse
import json
import os
import time

import torch

import erasus
from erasus.experiments.datasets import load_fashion_mnist
from erasus.metrics import ULiRAMetric, train_classifier


HIDDEN = 256


def mlp() -> torch.nn.Module:
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(196, HIDDEN), torch.nn.ReLU(),
                               torch.nn.Linear(HIDDEN, 10))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--shadows", type=int, default=8)
    ap.add_argument("--epochs", type=int, default=100)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--json", default=None)
    ap.add_argument("--method", default=None,
                    help="also audit this strategy: unlearn the original with it, and every shadow with it too")
    ap.add_argument("--method-epochs", type=float, default=2.0)
    args = ap.parse_args()
    global HIDDEN
    HIDDEN = args.hidden
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    x, y, _, _ = load_fashion_mnist(limit_train=3000, limit_test=10, seed=0)
    x = torch.nn.functional.avg_pool2d(x, 2)  # 28x28 -> 14x14
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    forget_idx, retain_idx, pop_idx = perm[:100], perm[100:1000], perm[1000:2900]
    forget, retain, population = ((x[i], y[i]) for i in (forget_idx, retain_idx, pop_idx))
    train_opts = dict(epochs=args.epochs, lr=3e-3, batch_size=64)

    def fit(data: tuple[torch.Tensor, torch.Tensor], seed: int) -> torch.nn.Module:
        torch.manual_seed(seed)
        return train_classifier(mlp(), torch.utils.data.TensorDataset(*data), task="classification", seed=seed,
                                **train_opts)

    full = (torch.cat([forget[0], retain[0]]), torch.cat([forget[1], retain[1]]))
    original, oracle, oracle2 = fit(full, 11), fit(retain, 12), fit(retain, 13)
    metric = ULiRAMetric(model_factory=mlp, population=population, n_shadow=args.shadows, epochs=args.epochs,
                         lr=3e-3, train_batch_size=64, seed=0, progress=False)
    rows = {
        "original_vs_oracle": metric.compute(original, forget, reference_model=oracle),
        "oracle2_vs_oracle": metric.compute(oracle2, forget, reference_model=oracle),
    }
    models = [("original", original), ("oracle", oracle), ("oracle2", oracle2)]
    if args.method:
        def unlearn(model: torch.nn.Module, forget_part, retain_part) -> torch.nn.Module:
            return erasus.get_strategy(args.method).unlearn(model=model, forget_data=forget_part,
                                                            retain_data=retain_part, epochs=args.method_epochs,
                                                            seed=0, progress=False)

        unlearned = unlearn(original, torch.utils.data.TensorDataset(*forget), torch.utils.data.TensorDataset(*retain))
        audit = ULiRAMetric(model_factory=mlp, population=population, n_shadow=args.shadows, epochs=args.epochs,
                            lr=3e-3, train_batch_size=64, seed=0, progress=False, unlearn_fn=unlearn)
        rows[f"{args.method}_vs_oracle"] = audit.compute(unlearned, forget, reference_model=oracle)
        models.append((args.method, unlearned))
    acc = erasus.get_metric("accuracy")
    for name, m in models:
        rows[f"{name}_accuracy"] = acc.compute(m, forget=forget, retain=retain, test=(x[perm[2900:]], y[perm[2900:]]))
    rows["seconds"] = time.perf_counter() - t0
    rows["load_average"] = os.getloadavg()
    print(json.dumps(rows, indent=2))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows, fh, indent=2)


if __name__ == "__main__":
    main()
