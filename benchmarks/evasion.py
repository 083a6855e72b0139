"""Evasion benchmark: Bastion against IBM ART 1.20.1 and torchattacks 3.5.1 on `digits-cnn`.

Same model, same 360 held-out digits, same parameters, one process, one torch thread
for every tool (the machine has two cores and other jobs; one thread keeps the
comparison about the code, not the scheduler). Timed runs are interleaved round by
round so machine noise hits every tool alike; the median round is reported.

1. PGD L-inf (eps 0.1, step 0.01, 40 steps, no random start) and FGSM (eps 0.1):
   a bare hand-written torch loop, Bastion, and ART through `PyTorchClassifier` at its
   default batch size (32). Time ratios and robust accuracy.
2. Worst-case evaluation against `torchattacks.AutoAttack` (standard version) at
   eps 0.1 and 0.2: robust accuracy and time.
3. Square Attack against ART's `SquareAttack` at the same query budget: success rate.
4. PGD adversarial training of digits-cnn at eps 0.1: clean and worst-case robust
   accuracy before and after (AutoAttack on the hardened model too, unless --quick).

Writes `benchmarks/results/evasion.json`. Run: `.venv/bin/python benchmarks/evasion.py`
(`--quick`: one timing round, fewer training epochs, no AutoAttack on the hardened model).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "evasion.json"
EPS = 0.1
PGD_STEP = 0.01
PGD_STEPS = 40
ART_BATCH = 32


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def robust(module: torch.nn.Module, x_adv: np.ndarray | torch.Tensor, y: np.ndarray) -> float:
    with torch.no_grad():
        pred = module(torch.as_tensor(np.asarray(x_adv, dtype=np.float32))).argmax(dim=1).numpy()
    return float((pred == y).mean())


def bare_pgd(module: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The reference: the shortest correct PGD loop in torch."""
    x_adv = x.clone()
    for _ in range(PGD_STEPS):
        x_adv.requires_grad_(True)
        loss = F.cross_entropy(module(x_adv), y, reduction="sum")
        (g,) = torch.autograd.grad(loss, x_adv)
        with torch.no_grad():
            x_adv = torch.min(torch.max(x_adv + PGD_STEP * g.sign(), x - EPS), x + EPS).clamp(0, 1)
    return x_adv.detach()


def bare_fgsm(module: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    x_req = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(F.cross_entropy(module(x_req), y, reduction="sum"), x_req)
    return (x + EPS * g.sign()).clamp(0, 1).detach()


def art_classifier(module: torch.nn.Module) -> Any:
    from art.estimators.classification import PyTorchClassifier

    return PyTorchClassifier(
        model=module,
        loss=torch.nn.CrossEntropyLoss(),
        input_shape=(1, 8, 8),
        nb_classes=10,
        clip_values=(0.0, 1.0),
        device_type="cpu",
    )


def section_speed(model: Any, x: np.ndarray, y: np.ndarray, rounds: int) -> dict[str, Any]:
    from art.attacks.evasion import FastGradientMethod, ProjectedGradientDescent

    from bastion.attacks.evasion import fgsm, pgd

    module = model.module
    xt, yt = torch.as_tensor(x), torch.as_tensor(y)
    clf = art_classifier(module)
    art_pgd = ProjectedGradientDescent(
        clf,
        norm=np.inf,
        eps=EPS,
        eps_step=PGD_STEP,
        max_iter=PGD_STEPS,
        num_random_init=0,
        batch_size=ART_BATCH,
        verbose=False,
    )
    art_fgsm = FastGradientMethod(clf, norm=np.inf, eps=EPS, batch_size=ART_BATCH)
    runs: dict[str, Callable[[], Any]] = {
        "pgd_bare_torch": lambda: bare_pgd(module, xt, yt),
        "pgd_bastion": lambda: (
            pgd(
                model, x, y, epsilon=EPS, steps=PGD_STEPS, step_size=PGD_STEP, random_start=False
            ).x_adv
        ),
        "pgd_art": lambda: art_pgd.generate(x=x, y=y),
        "fgsm_bare_torch": lambda: bare_fgsm(module, xt, yt),
        "fgsm_bastion": lambda: fgsm(model, x, y, epsilon=EPS).x_adv,
        "fgsm_art": lambda: art_fgsm.generate(x=x, y=y),
    }
    times: dict[str, list[float]] = {k: [] for k in runs}
    accuracy: dict[str, float] = {}
    for _ in range(rounds):
        for family, repeat in (("pgd", 1), ("fgsm", 10)):  # FGSM is one step: time it often
            for _ in range(repeat):
                for name in (f"{family}_bare_torch", f"{family}_bastion", f"{family}_art"):
                    t, adv = timed(runs[name])
                    times[name].append(t)
                    accuracy[name] = robust(module, adv, y)
    med = {k: statistics.median(v) for k, v in times.items()}
    return {
        "seconds_median": med,
        "seconds_all_rounds": times,
        "robust_accuracy": accuracy,
        "pgd_bastion_over_bare": med["pgd_bastion"] / med["pgd_bare_torch"],
        "pgd_art_over_bastion": med["pgd_art"] / med["pgd_bastion"],
        "pgd_accuracy_gap_vs_art_points": 100 * abs(accuracy["pgd_bastion"] - accuracy["pgd_art"]),
        "fgsm_bastion_over_bare": med["fgsm_bastion"] / med["fgsm_bare_torch"],
        "fgsm_art_over_bastion": med["fgsm_art"] / med["fgsm_bastion"],
        "fgsm_accuracy_gap_vs_art_points": 100
        * abs(accuracy["fgsm_bastion"] - accuracy["fgsm_art"]),
        "params": {
            "eps": EPS,
            "eps_step": PGD_STEP,
            "steps": PGD_STEPS,
            "art_batch_size": ART_BATCH,
            "random_start": False,
            "bastion_batch": "all 360 at once",
            "bare_batch": "all 360",
        },
    }


BENCH_SUITE = {"pgd_steps": 20, "apgd_iter": 100, "apgd_targets": 3}


def autoattack(
    module: torch.nn.Module, x: np.ndarray, y: np.ndarray, eps: float
) -> tuple[float, float]:
    import torchattacks

    attack = torchattacks.AutoAttack(
        module, norm="Linf", eps=eps, version="standard", n_classes=10, seed=0
    )
    t, adv = timed(lambda: attack(torch.as_tensor(x), torch.as_tensor(y)))
    return t, robust(module, adv, y)


def section_worst_case(
    model: Any, x: np.ndarray, y: np.ndarray, epsilons: list[float]
) -> dict[str, Any]:
    from bastion.attacks.evasion.worstcase import Suite, worst_case

    out: dict[str, Any] = {"epsilons": epsilons, "bastion_suite": BENCH_SUITE}
    aa_time, aa_acc = 0.0, []
    for eps in epsilons:
        t, acc = autoattack(model.module, x, y, eps)
        aa_time += t
        aa_acc.append(acc)
    t_b, wc = timed(
        lambda: worst_case(model, x, y, epsilons=epsilons, suite=Suite(**BENCH_SUITE), seed=0)
    )
    # worst_case stores per-epsilon adversarial examples; re-check them with the model directly
    checked = [robust(model.module, adv, y) for adv in wc.x_adv]
    out.update(
        {
            "autoattack_robust_accuracy": aa_acc,
            "autoattack_seconds": aa_time,
            "bastion_robust_accuracy": wc.robust_accuracy,
            "bastion_robust_accuracy_rechecked": checked,
            "bastion_seconds": t_b,
            "bastion_seconds_per_attack": wc.seconds,
            "bastion_broken_by": wc.broken_by,
            "bastion_median_min_perturbation": wc.median_min_perturbation,
            "robust_gap_points": [
                100 * (b - a) for b, a in zip(wc.robust_accuracy, aa_acc, strict=True)
            ],
            "time_ratio_bastion_over_autoattack": t_b / aa_time,
        }
    )
    return out


def section_square(model: Any, x: np.ndarray, y: np.ndarray, queries: int) -> dict[str, Any]:
    from art.attacks.evasion import SquareAttack

    from bastion.attacks.evasion.square import square_attack

    module = model.module
    correct = module(torch.as_tensor(x)).argmax(dim=1).numpy() == y
    out: dict[str, Any] = {"queries": queries}
    for eps in (0.1, 0.2):
        art = SquareAttack(
            art_classifier(module),
            norm=np.inf,
            eps=eps,
            max_iter=queries,
            batch_size=128,
            verbose=False,
        )
        t_art, adv_art = timed(lambda art=art: art.generate(x=x, y=y))
        t_b, res = timed(
            lambda eps=eps: square_attack(model, x, y, epsilon=eps, n_queries=queries, seed=0)
        )
        with torch.no_grad():
            fooled_art = module(torch.as_tensor(adv_art)).argmax(dim=1).numpy() != y
            fooled_b = module(torch.as_tensor(res.x_adv)).argmax(dim=1).numpy() != y
        out[str(eps)] = {
            "art_success_rate": float(fooled_art[correct].mean()),
            "bastion_success_rate": float(fooled_b[correct].mean()),
            "bastion_mean_queries": float(res.queries[correct].mean()),
            "art_seconds": t_art,
            "bastion_seconds": t_b,
        }
    return out


def section_training(
    model: Any, x: np.ndarray, y: np.ndarray, epochs: int, with_aa: bool
) -> dict[str, Any]:
    from bastion.attacks.evasion.worstcase import Suite, worst_case
    from bastion.core.loading import load_file, save_model
    from bastion.defenses.adversarial import TrainingConfig, accuracy, adversarial_train
    from bastion.zoo import entry

    train, _ = entry("digits-cnn").load_data()
    t_train, hardened = timed(
        lambda: adversarial_train(
            model, train, epsilon=EPS, config=TrainingConfig(epochs=epochs), seed=0
        )
    )
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "digits-cnn-adv.safetensors"
        save_model(hardened, path)
        hardened = load_file(path)  # measure the model as written in the safe format
    suite = Suite(**BENCH_SUITE)
    before = worst_case(model, x, y, epsilons=[EPS], suite=suite)
    after = worst_case(hardened, x, y, epsilons=[EPS], suite=suite)
    out: dict[str, Any] = {
        "epsilon": EPS,
        "epochs": epochs,
        "method": "pgd",
        "train_seconds": t_train,
        "undefended": {
            "clean_accuracy": accuracy(model, x, y),
            "worst_case_robust_accuracy": before.robust_accuracy[0],
        },
        "hardened": {
            "clean_accuracy": accuracy(hardened, x, y),
            "worst_case_robust_accuracy": after.robust_accuracy[0],
        },
    }
    if with_aa:
        _, aa = autoattack(hardened.module, x, y, EPS)  # type: ignore[attr-defined]
        out["hardened"]["autoattack_robust_accuracy"] = aa
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--quick", action="store_true", help="one timing round, 10 epochs, no AA on hardened"
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    import art
    import torchattacks

    from bastion.zoo import build, entry

    model = build("digits-cnn")
    _, test = entry("digits-cnn").load_data()
    x, y = test.x.astype(np.float32), test.labels
    rounds = 1 if args.quick else 5
    print("1/4 PGD and FGSM timing ...", flush=True)
    speed = section_speed(model, x, y, rounds)
    print(
        json.dumps({k: v for k, v in speed.items() if k != "seconds_all_rounds"}, indent=1),
        flush=True,
    )
    print("2/4 worst case vs AutoAttack ...", flush=True)
    worst = section_worst_case(model, x, y, [0.1, 0.2])
    print(json.dumps(worst, indent=1), flush=True)
    print("3/4 Square Attack vs ART ...", flush=True)
    square = section_square(model, x, y, queries=300 if args.quick else 1000)
    print(json.dumps(square, indent=1), flush=True)
    print("4/4 adversarial training ...", flush=True)
    training = section_training(
        model, x, y, epochs=10 if args.quick else 30, with_aa=not args.quick
    )
    print(json.dumps(training, indent=1), flush=True)
    result = {
        "benchmark": "evasion",
        "model": "digits-cnn",
        "n_examples": len(x),
        "quick": args.quick,
        "torch_threads": 1,
        "versions": {
            "torch": torch.__version__,
            "art": art.__version__,
            "torchattacks": torchattacks.__version__,
            "python": platform.python_version(),
        },
        "pgd_fgsm": speed,
        "worst_case_vs_autoattack": worst,
        "square_vs_art": square,
        "adversarial_training": training,
        "targets": {
            "pgd_within_1.1x_bare": speed["pgd_bastion_over_bare"] <= 1.1,
            "pgd_1.8x_faster_than_art": speed["pgd_art_over_bastion"] >= 1.8,
            "pgd_within_1pt_of_art": speed["pgd_accuracy_gap_vs_art_points"] <= 1.0,
            "fgsm_within_1.1x_bare": speed["fgsm_bastion_over_bare"] <= 1.1,
            "fgsm_1.8x_faster_than_art": speed["fgsm_art_over_bastion"] >= 1.8,
            "fgsm_within_1pt_of_art": speed["fgsm_accuracy_gap_vs_art_points"] <= 1.0,
            "worst_case_at_most_aa_plus_0.5pt": all(g <= 0.5 for g in worst["robust_gap_points"]),
            "worst_case_half_aa_time": worst["time_ratio_bastion_over_autoattack"] <= 0.5,
            "square_success_ge_art": all(
                square[e]["bastion_success_rate"] >= square[e]["art_success_rate"]
                for e in ("0.1", "0.2")
            ),
            "adv_training_robust_ge_60": training["hardened"]["worst_case_robust_accuracy"] >= 0.6,
            "adv_training_clean_ge_93": training["hardened"]["clean_accuracy"] >= 0.93,
        },
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(result["targets"], indent=1))
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    sys.exit(main())
