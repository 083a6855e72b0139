"""Training-time benchmark: poisoning, sanitisation (vs IBM ART 1.20.1), watermarks, DP training.

All on `digits-cnn`, one process, one torch thread, every tool on the same data and model:

1. BadNets at 5% poison (3x3 checkerboard, target class 0), trained with the zoo trainer:
   attack success and clean accuracy.
2. Sanitisers on that poisoned set with the poisoned model: Bastion's spectral signatures,
   activation clustering and k-NN label consistency against ART's
   `SpectralSignatureDefense` and `ActivationDefence` (same model, same data; ART's
   spectral gets the same expected-poison hint), interleaved: recall, clean rows removed, time.
3. Watermark (Adi et al. trigger set from a key): p-value on the watermarked model, after
   fine-tuning with 10% of the data, after 10-50% magnitude pruning, on a clone extracted
   through the black-box API, and on independently trained models; clean-accuracy cost.
4. DP-SGD (Opacus) at epsilon 8, delta 1e-5: test accuracy; LiRA (online, the
   confidentiality issue's implementation) TPR at 0.1% FPR without and with DP.

Writes benchmarks/results/training.json. Run: `.venv/bin/python benchmarks/training.py`
(`--quick`: 3 independent models instead of 10, 4 LiRA shadows instead of 8).
"""

from __future__ import annotations

import os

# One thread for every tool (torch and BLAS): two cores, other jobs running.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import json
import platform
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bastion.attacks.poisoning import badnets, evaluate, patch_trigger
from bastion.core.dataset import Dataset
from bastion.core.model import Model
from bastion.defenses import sanitize as san
from bastion.defenses import watermark as wm
from bastion.defenses.dp import train_dp
from bastion.zoo import build, entry

RESULTS = Path(__file__).parent / "results" / "training.json"
KEY = b"bastion-benchmark-watermark-key-0001"
EPSILON = 8.0
DELTA = 1e-5


def accuracy(model: Model, data: Dataset) -> float:
    return float((model.predict_proba(data.x).argmax(axis=1) == data.labels).mean())


class ZooTrainer:
    """The zoo's own trainer for `name` (picklable, for shadow models in worker processes)."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __call__(self, ds: Dataset, seed: int) -> Model:
        return entry(self.name).train(ds, seed)  # type: ignore[no-any-return]


class DPTrainer:
    """DP-SGD at (EPSILON, DELTA) on `name`'s architecture (picklable)."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __call__(self, ds: Dataset, seed: int) -> Model:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return train_dp(build(self.name), ds, epsilon=EPSILON, delta=DELTA, seed=seed).model


zoo_trainer = ZooTrainer("digits-cnn")


def timed(fn: Any) -> tuple[Any, float]:
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def art_sanitisers(
    model: Model, data: Dataset, is_poison: np.ndarray, rate_hint: float
) -> dict[str, Any]:
    from art.defences.detector.poison import ActivationDefence, SpectralSignatureDefense
    from art.estimators.classification import PyTorchClassifier

    classifier = PyTorchClassifier(
        model=model.module,  # type: ignore[attr-defined]
        loss=torch.nn.CrossEntropyLoss(),
        input_shape=model.input_shape,
        nb_classes=model.n_classes,
        clip_values=(0.0, 1.0),
    )
    onehot = np.eye(model.n_classes, dtype=np.float32)[data.labels]
    out: dict[str, Any] = {}
    for name, make in (
        (
            "art_spectral",
            lambda: SpectralSignatureDefense(
                classifier, data.x, onehot, expected_pp_poison=rate_hint, eps_multiplier=1.5
            ).detect_poison()[1],
        ),
        (
            "art_activation",
            lambda: ActivationDefence(classifier, data.x, onehot).detect_poison(
                nb_clusters=2, nb_dims=10, reduce="PCA"
            )[1],
        ),
    ):
        is_clean, seconds = timed(make)
        flagged = np.asarray(is_clean) == 0
        out[name] = {
            "recall": float(flagged[is_poison].mean()),
            "clean_removed": float(flagged[~is_poison].mean()),
            "seconds": seconds,
        }
    return out


def poisoning_section(train: Dataset, test: Dataset) -> dict[str, Any]:
    poisoned = badnets(train, 0.05, 0, patch_trigger((1, 8, 8), size=3), 10, seed=0)
    result = evaluate(poisoned, zoo_trainer, test, seed=0)
    mask = poisoned.is_poison
    # Spectral hint: the poisoned share of the target class (Tran et al.'s per-class epsilon).
    class_share = float(mask[poisoned.dataset.labels == 0].mean())
    ours: dict[str, Any] = {}
    for name, fn in (
        ("spectral", lambda: san.spectral_signatures(result.model, poisoned.dataset, class_share)),
        ("activation", lambda: san.activation_clustering(result.model, poisoned.dataset)),
        ("knn", lambda: san.knn_label_consistency(poisoned.dataset)),
    ):
        found, seconds = timed(fn)
        ours[name] = {
            "recall": found.recall(mask),
            "clean_removed": found.clean_removed(mask),
            "seconds": seconds,
        }
    peers = art_sanitisers(result.model, poisoned.dataset, mask, class_share)
    usable = {k: v for k, v in ours.items() if v["clean_removed"] <= 0.05}
    best = max(usable, key=lambda k: usable[k]["recall"]) if usable else None
    best_art = max(peers.values(), key=lambda v: v["recall"])["recall"]
    return {
        "badnets_5pct": {
            "attack_success": result.attack_success,
            "clean_accuracy": result.clean_accuracy,
            "n_poison": result.n_poison,
        },
        "spectral_hint_class_share": class_share,
        "bastion": ours,
        "art": peers,
        "best_bastion": best,
        "best_bastion_recall": ours[best]["recall"] if best else None,
        "best_art_recall": best_art,
        "recall_ratio_vs_art": (ours[best]["recall"] / best_art) if best and best_art else None,
    }


def watermark_section(train: Dataset, test: Dataset, n_independent: int) -> dict[str, Any]:
    from bastion.attacks.extraction import extract

    base = build("digits-cnn")
    marked = wm.embed(base, train, KEY, seed=0)
    out: dict[str, Any] = {
        "clean_accuracy_base": accuracy(base, test),
        "clean_accuracy_watermarked": accuracy(marked, test),
        "watermarked_p": wm.verify(marked, KEY).p_value,
        "watermarked_matches": wm.verify(marked, KEY).matches,
    }
    out["accuracy_cost_points"] = 100 * (
        out["clean_accuracy_base"] - out["clean_accuracy_watermarked"]
    )
    tuned = wm.fine_tune(marked, train.sample(len(train) // 10, seed=1), epochs=10)
    out["fine_tuned_10pct"] = {
        "p": wm.verify(tuned, KEY).p_value,
        "accuracy": accuracy(tuned, test),
    }
    out["pruned"] = {
        f"{f:.0%}": {"p": wm.verify(p, KEY).p_value, "accuracy": accuracy(p, test)}
        for f in (0.1, 0.2, 0.3, 0.4, 0.5)
        for p in [wm.prune(marked, f)]
    }
    stolen = extract(marked, test.x, test, strategy="natural", budget=1000, seed=0)
    out["extracted_clone"] = {
        "strategy": "natural (attacker holds the 360 test digits), 1000 queries",
        "fidelity": stolen.fidelity,
        "p": wm.verify(stolen.clone, KEY).p_value,
    }
    independent = [
        wm.verify(zoo_trainer(train, s), KEY).p_value for s in range(1, n_independent + 1)
    ]
    out["independent_p"] = independent
    out["independent_min_p"] = min(independent)
    return out


def lira_tpr(trainer: Any, pool: Dataset, n_shadow: int, seed: int) -> dict[str, float]:
    from bastion.attacks.membership_lira import lira
    from bastion.attacks.membership_shadow import ShadowSet, train_shadows

    shadows = train_shadows(trainer, pool, n_shadow=n_shadow + 1, seed=seed, n_jobs=2)
    target = ShadowSet(shadows.probs[1:], shadows.keep[1:])
    result = lira(shadows.probs[0], pool.labels, target, shadows.keep[0], online=True)
    return {
        "tpr_at_0.1pct_fpr": result.tpr_at_fpr[0.001],
        "auc": result.auc,
        "min_fpr": result.min_fpr,
    }


def dp_section(name: str, n_shadow: int) -> dict[str, Any]:
    train, test = entry(name).load_data()
    private, seconds = timed(
        lambda: train_dp(build(name), train, epsilon=EPSILON, delta=DELTA, seed=0)
    )
    pool = Dataset(np.concatenate([train.x, test.x]), np.concatenate([train.labels, test.labels]))
    return {
        "model": name,
        "epsilon": private.epsilon,
        "delta": private.delta,
        "noise_multiplier": private.noise_multiplier,
        "test_accuracy": accuracy(private.model, test),
        "non_private_accuracy": accuracy(build(name), test),
        "seconds": seconds,
        "lira_without_dp": lira_tpr(ZooTrainer(name), pool, n_shadow, seed=0),
        "lira_with_dp": lira_tpr(DPTrainer(name), pool, n_shadow, seed=0),
        "random_guess_tpr_at_0.1pct_fpr": 0.001,
        "lira_shadows": n_shadow,
        "lira_note": "target = model 0 of n_shadow + 1 trained on random halves of train+test; "
        "TPR at FPR <= 0.1% is TPR at zero false positives when min_fpr > 0.001",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--only", choices=("poisoning", "watermark", "dp"), action="append")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    torch.set_num_threads(1)
    train, test = entry("digits-cnn").load_data()
    sections = args.only or ["poisoning", "watermark", "dp"]
    out: Path = args.out
    results: dict[str, Any] = json.loads(out.read_text()) if out.exists() and args.only else {}
    results["machine"] = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "quick": args.quick,
    }
    if "poisoning" in sections:
        results["poisoning"] = poisoning_section(train, test)
        print(json.dumps(results["poisoning"], indent=1), flush=True)
    if "watermark" in sections:
        results["watermark"] = watermark_section(train, test, 3 if args.quick else 10)
        print(json.dumps(results["watermark"], indent=1), flush=True)
    if "dp" in sections:
        shadows = 4 if args.quick else 8
        results["dp"] = dp_section("digits-cnn", shadows)
        print(json.dumps(results["dp"], indent=1), flush=True)
        results["dp_digits_mlp"] = dp_section("digits-mlp", shadows)
        print(json.dumps(results["dp_digits_mlp"], indent=1), flush=True)
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
