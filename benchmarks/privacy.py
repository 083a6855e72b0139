"""Confidentiality attacks, Bastion beside ART 1.20.1 in one run.

- Equation solving on cancer-logreg (ART has no equivalent): queries and test-set fidelity.
- Extraction of digits-cnn at a 2,000-query budget: Bastion's four strategies (and the
  label-only variant) against ART KnockoffNets (random and adaptive) and CopycatCNN, with the
  same natural pool, the same clone architecture and the same held-out fidelity set.
- Membership inference on digits-mlp-overfit: Bastion's global loss threshold, LiRA and RMIA
  (16 shadow models) and Shokri against ART MembershipInferenceBlackBox, all scored on the same
  evaluation rows (ART's supervised attack model trains on a disjoint known-membership half).
  The headline LiRA variant is fixed in advance by the check's rule (`primary_lira`). Because one
  target's ~1,100 non-members cannot resolve 0.1% FPR, LiRA and the global threshold are also
  scored pooled over the shadow models, each in turn the target of the others (Carlini et al.).
- Inversion on digits-cnn: Bastion MI-Face against ART MIFace from the same start image.
- Wall time of the membership check at --budget quick on digits-mlp, and of each check at
  the standard budget on digits-cnn.

One torch thread throughout (a busy 2-core machine). Writes benchmarks/results/privacy.json.

    .venv/bin/python benchmarks/privacy.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bastion.assess.check import AssessmentData, Budget
from bastion.assess.checks.membership import primary_lira
from bastion.attacks import membership_lira as lira
from bastion.attacks.clone import CloneSettings, new_clone
from bastion.attacks.extraction import STRATEGIES, equation_solving, extract, fidelity
from bastion.attacks.extraction_pools import feature_bounds, natural_pool
from bastion.attacks.inversion import mi_face
from bastion.attacks.membership import (
    evaluate,
    membership_targets,
    query_targets,
    threshold_attack,
    true_class_log_odds,
)
from bastion.attacks.membership_shadow import train_shadows
from bastion.core.dataset import Dataset
from bastion.zoo import build, entry

RESULTS = Path(__file__).parent / "results" / "privacy.json"
BUDGET = 2000
SEED = 0


def _timed(fn: Any) -> tuple[Any, float]:
    start = time.perf_counter()
    out = fn()
    return out, round(time.perf_counter() - start, 2)


def _art_classifier(
    module: torch.nn.Module, n_classes: int, shape: tuple[int, ...], lr: float = 2e-3
) -> Any:
    from art.estimators.classification import PyTorchClassifier

    return PyTorchClassifier(
        model=module,
        loss=torch.nn.CrossEntropyLoss(),
        optimizer=torch.optim.Adam(module.parameters(), lr=lr),
        input_shape=shape,
        nb_classes=n_classes,
        clip_values=(0.0, 1.0),
    )


def _art_victim(module: torch.nn.Module) -> Any:
    """The victim as ART sees an API: probabilities out (ART feeds raw outputs to its thief's
    fit, and its MIFace cost is 1 - p_c)."""
    return _art_classifier(
        torch.nn.Sequential(module, torch.nn.Softmax(dim=1)).eval(), 10, (1, 8, 8)
    )


def equation(out: dict[str, Any]) -> None:
    model = build("cancer-logreg")
    _, test = entry("cancer-logreg").load_data()
    attacker, evaluation = test.subset(slice(0, 57)), test.subset(slice(57, None))
    result, seconds = _timed(lambda: equation_solving(model, attacker.x, evaluation, seed=SEED))
    full_test_fidelity = fidelity(model, result.clone, test.x)
    out["equation_solving"] = {
        "model": "cancer-logreg",
        "d": model.input_shape[0],
        "queries": result.queries,
        "fidelity_test_set": full_test_fidelity,
        "max_abs_probability_error": float(
            np.abs(result.clone.predict_proba(test.x) - model.predict_proba(test.x)).max()
        ),
        "seconds": seconds,
        "art": "no equation-solving extraction in ART 1.20.1",
    }
    print("equation solving:", out["equation_solving"])


def extraction(out: dict[str, Any], budget: int) -> None:
    from art.attacks.extraction import CopycatCNN, KnockoffNets
    from sklearn.cluster import KMeans

    victim = build("digits-cnn")
    train, test = entry("digits-cnn").load_data()
    order = np.random.default_rng(SEED).permutation(len(test))
    attacker = test.subset(np.sort(order[:180]))
    # Fidelity on every input the attacker never saw: the other half of the test split plus the
    # victim's own training inputs.
    held_out = test.subset(np.sort(order[180:]))
    evaluation = Dataset(
        np.concatenate([held_out.x, train.x]), np.concatenate([held_out.labels, train.labels])
    )
    settings = CloneSettings(epochs=30, max_steps=300)
    rows: dict[str, Any] = {}
    # The same natural pool (photo patches + transformed attacker digits) for ART.
    rng = np.random.default_rng(SEED)
    pool = natural_pool(victim, attacker.x, feature_bounds(victim, attacker.x), 4 * budget, rng)
    arms = KMeans(20, n_init=1, random_state=SEED).fit_predict(pool.reshape(len(pool), -1))
    victim_art = _art_victim(victim.module)

    def art_run(kind: str) -> dict[str, Any]:
        np.random.seed(SEED)
        thief = new_clone(victim.input_shape, 10, attacker.x, SEED, victim.input_bounds)
        thief_art = _art_classifier(thief.module, 10, (1, 8, 8))
        if kind == "copycat":
            attack: Any = CopycatCNN(
                victim_art,
                batch_size_fit=64,
                batch_size_query=64,
                nb_epochs=30,
                nb_stolen=budget,
                use_probability=False,
            )
            stolen, seconds = _timed(lambda: attack.extract(pool, thieved_classifier=thief_art))
        else:
            attack = KnockoffNets(
                victim_art,
                batch_size_fit=64,
                batch_size_query=64,
                nb_epochs=30,
                nb_stolen=budget,
                sampling_strategy=kind,
                reward="all",
                verbose=False,
                use_probability=True,
            )
            labels = np.eye(20)[arms] if kind == "adaptive" else None
            stolen, seconds = _timed(
                lambda: attack.extract(pool, labels, thieved_classifier=thief_art)
            )
        agree = float(
            (
                stolen.predict(evaluation.x).argmax(1)
                == victim.predict_proba(evaluation.x).argmax(1)
            ).mean()
        )
        return {"fidelity": agree, "queries": budget, "seconds": seconds}

    for strategy, art_kind in zip(STRATEGIES, ("random", "copycat", "adaptive", None), strict=True):
        res, seconds = _timed(
            lambda s=strategy: extract(
                victim,
                attacker.x,
                evaluation,
                strategy=s,
                budget=budget,
                seed=SEED,
                settings=settings,
            )
        )
        rows[f"bastion:{strategy}"] = {
            "fidelity": res.fidelity,
            "queries": res.queries,
            "seconds": seconds,
            "curve": [list(p) for p in res.curve],
        }
        print(f"bastion {strategy}: {rows[f'bastion:{strategy}']['fidelity']:.3f} ({seconds}s)")
        if art_kind is not None:
            name = "art:CopycatCNN" if art_kind == "copycat" else f"art:KnockoffNets-{art_kind}"
            rows[name] = art_run(art_kind)
            print(f"{name}: {rows[name]['fidelity']:.3f} ({rows[name]['seconds']}s)")
    best = max(STRATEGIES, key=lambda s: rows[f"bastion:{s}"]["fidelity"])
    res, seconds = _timed(
        lambda: extract(
            victim,
            attacker.x,
            evaluation,
            strategy=best,
            budget=budget,
            seed=SEED,
            settings=settings,
            label_only=True,
        )
    )
    rows[f"bastion:{best}:label-only"] = {
        "fidelity": res.fidelity,
        "queries": res.queries,
        "seconds": seconds,
    }
    art_best = max(rows[k]["fidelity"] for k in rows if k.startswith("art:KnockoffNets"))
    out["extraction"] = {
        "model": "digits-cnn",
        "budget": budget,
        "attacker_rows": len(attacker),
        "evaluation_rows": len(evaluation),
        "pool_rows": len(pool),
        "results": rows,
        "best_bastion_strategy": best,
        "best_bastion_fidelity": rows[f"bastion:{best}"]["fidelity"],
        "best_art_knockoff_fidelity": art_best,
        "fidelity_ratio_bastion_over_art_knockoff": rows[f"bastion:{best}"]["fidelity"] / art_best,
    }


def membership(out: dict[str, Any], n_shadow: int) -> None:
    from art.attacks.inference.membership_inference import MembershipInferenceBlackBox

    name = "digits-mlp-overfit"
    e = entry(name)
    victim = build(name)
    members, nonmembers = e.load_data()
    pool = membership_targets(members, nonmembers)
    is_member = np.arange(len(pool)) < len(members)
    # ART's attack is supervised: it learns from a known half (150 members + 150 non-members);
    # every attack is scored on the remaining rows.
    rng = np.random.default_rng(SEED)
    known_m = rng.choice(len(members), 150, replace=False)
    known_n = len(members) + rng.choice(len(nonmembers), 150, replace=False)
    known = np.zeros(len(pool), bool)
    known[known_m] = known[known_n] = True
    score_rows = ~known
    rows: dict[str, Any] = {}

    def keep(result: Any, seconds: float) -> None:
        r = evaluate(
            result.attack, result.scores[score_rows], is_member[score_rows], result.queries
        )
        rows[r.attack] = {
            "auc": r.auc,
            "tpr_at_0.1%_fpr": r.tpr_at_fpr[0.001],
            "tpr_at_1%_fpr": r.tpr_at_fpr[0.01],
            "seconds": seconds,
        }
        print(r.attack, rows[r.attack])

    result, seconds = _timed(lambda: threshold_attack(victim, members, nonmembers))
    keep(result, seconds)
    # ART MembershipInferenceBlackBox (random forest and neural attack models).
    victim_art = _art_victim(victim.module)
    x, y = pool.x, pool.labels
    for model_type in ("rf", "nn"):
        attack = MembershipInferenceBlackBox(victim_art, attack_model_type=model_type)

        def run_art(a: Any = attack) -> np.ndarray:
            a.fit(x[known_m], y[known_m], x[known_n], y[known_n])
            return np.asarray(a.infer(x, y, probabilities=True)).reshape(len(x), -1)[:, -1]

        scores, seconds = _timed(run_art)
        r = evaluate(
            f"art:MembershipInferenceBlackBox-{model_type}",
            scores[score_rows],
            is_member[score_rows],
            0,
        )
        rows[r.attack] = {
            "auc": r.auc,
            "tpr_at_0.1%_fpr": r.tpr_at_fpr[0.001],
            "tpr_at_1%_fpr": r.tpr_at_fpr[0.01],
            "seconds": seconds,
        }
        print(r.attack, rows[r.attack])
    keep_fraction = len(members) / len(pool)
    shadows, shadow_seconds = _timed(
        lambda: train_shadows(
            e.train, pool, n_shadow=n_shadow, keep_fraction=keep_fraction, seed=SEED
        )
    )
    probs, _ = query_targets(victim, pool)
    labels = pool.labels
    for online in (True, False):
        for fixed in (False, True):
            keep(
                lira.lira(probs, labels, shadows, is_member, online=online, fixed_variance=fixed),
                0.0,
            )
    keep(lira.rmia(probs, labels, shadows, is_member), 0.0)
    keep(lira.rmia(probs, labels, shadows, is_member, offline_a=0.3), 0.0)
    keep(lira.shokri(probs, labels, shadows, is_member, seed=SEED), 0.0)
    # The LiRA variant is fixed by the check's rule before any score is seen (not the best of
    # four on the evaluation labels).
    bastion_lira = primary_lira(n_shadow)
    art_best = max(rows[k]["tpr_at_0.1%_fpr"] for k in rows if k.startswith("art:"))
    lira_tpr = rows[bastion_lira]["tpr_at_0.1%_fpr"]
    global_tpr = rows["loss"]["tpr_at_0.1%_fpr"]
    out["membership"] = {
        "model": name,
        "n_shadow": n_shadow,
        "keep_fraction": keep_fraction,
        "shadow_training_seconds": shadow_seconds,
        "evaluation_members": int(is_member[score_rows].sum()),
        "evaluation_non_members": int((~is_member[score_rows]).sum()),
        "results": rows,
        "primary_lira": bastion_lira,
        "lira_tpr_at_0.1%_fpr": lira_tpr,
        "global_threshold_tpr_at_0.1%_fpr": global_tpr,
        "ratio_lira_over_global_threshold": (lira_tpr / global_tpr)
        if global_tpr
        else "inf (global threshold 0)",
        "best_art_tpr_at_0.1%_fpr": art_best,
        "ratio_lira_over_art": (lira_tpr / art_best) if art_best else "inf (ART 0)",
        "pooled_over_shadow_targets": _pooled(shadows, labels),
    }


def _pooled(shadows: Any, labels: np.ndarray) -> dict[str, Any]:
    """Carlini et al.'s evaluation: every shadow model in turn is the target and the others are
    its references; scores are pooled over all targets so that 0.1% FPR rests on thousands of
    non-members. LiRA's variant follows the check's rule for the reference count, fixed in
    advance; the global threshold is the target's own true-class log-odds (Yeom)."""
    from bastion.attacks.membership_shadow import ShadowSet

    k = len(shadows.probs)
    variant = primary_lira(k - 1)
    lira_scores, loss_scores, members = [], [], []
    for t in range(k):
        rest = np.arange(k) != t
        refs = ShadowSet(probs=shadows.probs[rest], keep=shadows.keep[rest])
        r = lira.lira(
            shadows.probs[t],
            labels,
            refs,
            shadows.keep[t],
            online=variant.startswith("lira-online"),
            fixed_variance=True,
        )
        lira_scores.append(r.scores)
        loss_scores.append(true_class_log_odds(shadows.probs[t], labels))
        members.append(shadows.keep[t])
    is_member = np.concatenate(members)
    ours = evaluate(variant, np.concatenate(lira_scores), is_member, 0)
    loss = evaluate("loss", np.concatenate(loss_scores), is_member, 0)
    figures = {
        r.attack: {
            "auc": r.auc,
            "tpr_at_0.1%_fpr": r.tpr_at_fpr[0.001],
            "tpr_at_1%_fpr": r.tpr_at_fpr[0.01],
        }
        for r in (ours, loss)
    }
    lo, gl = ours.tpr_at_fpr[0.001], loss.tpr_at_fpr[0.001]
    print("pooled", figures)
    return {
        "targets": k,
        "references_per_target": k - 1,
        "members": int(is_member.sum()),
        "non_members": int((~is_member).sum()),
        "lira_variant": variant,
        "results": figures,
        "ratio_lira_over_global_threshold_at_0.1%_fpr": (lo / gl) if gl else None,
    }


def inversion(out: dict[str, Any]) -> None:
    from art.attacks.inference.model_inversion import MIFace

    victim = build("digits-cnn")
    train, test = entry("digits-cnn").load_data()
    start = test.x.mean(axis=0)
    ours, seconds = _timed(
        lambda: mi_face(victim, steps=150, start=start, reference=train, seed=SEED)
    )  # type: ignore[arg-type]
    rows = {
        "bastion:mi_face": {
            "identification": ours.identification,
            "mean_confidence": float(ours.confidence.mean()),
            "seconds": seconds,
        }
    }
    victim_art = _art_victim(victim.module)
    attack = MIFace(
        victim_art,
        max_iter=150,
        window_length=100,
        threshold=0.99,
        learning_rate=0.1,
        verbose=False,
    )
    recon, seconds = _timed(lambda: attack.infer(np.repeat(start[None], 10, axis=0), np.arange(10)))
    means = ours.class_means
    assert means is not None
    dist = ((recon.reshape(10, 1, -1) - means.reshape(1, 10, -1)) ** 2).sum(axis=2)
    art_conf = victim.predict_proba(recon)[np.arange(10), np.arange(10)]
    rows["art:MIFace"] = {
        "identification": float((dist.argmin(axis=1) == np.arange(10)).mean()),
        "mean_confidence": float(art_conf.mean()),
        "seconds": seconds,
    }
    print(rows)
    out["inversion"] = {"model": "digits-cnn", "steps": 150, "results": rows}


def _cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def check_times(out: dict[str, Any], quick: bool) -> None:
    """Wall and CPU seconds per check (CPU includes shadow-training worker processes): on this
    shared, oversubscribed machine wall time overstates what an idle 2-core machine needs."""
    from bastion.assess.checks.extraction import CHECK as EXTRACTION
    from bastion.assess.checks.inversion import CHECK as INVERSION
    from bastion.assess.checks.membership import CHECK as MEMBERSHIP

    timings: dict[str, Any] = {"load_average_1min_before": os.getloadavg()[0]}

    def timed_check(key: str, check: Any, name: str, budget: Budget) -> None:
        e = entry(name)
        train, test = e.load_data()
        model = build(name)
        data = AssessmentData(test=test, train=train, trainer=e.train)
        cpu = _cpu_seconds()
        _, wall = _timed(lambda: check.run(model, data, budget, SEED, lambda _: None))
        timings[key] = {"wall_seconds": wall, "cpu_seconds": round(_cpu_seconds() - cpu, 2)}

    timed_check("membership_quick_digits-mlp", MEMBERSHIP, "digits-mlp", Budget.QUICK)
    if not quick:
        for check in (EXTRACTION, MEMBERSHIP, INVERSION):
            timed_check(f"{check.name}_standard_digits-cnn", check, "digits-cnn", Budget.STANDARD)
    print(timings)
    out["check_seconds"] = timings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="8 shadow models, skip the standard-budget timings"
    )
    parser.add_argument(
        "--only-checks", action="store_true", help="re-time the checks, keep the other results"
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.only_checks:
        previous = json.loads(RESULTS.read_text())
        check_times(previous, args.quick)
        _write(previous)
        return
    out: dict[str, Any] = {
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "torch": torch.__version__,
            "art": __import__("art").__version__,
        },
        "quick": args.quick,
    }
    equation(out)
    extraction(out, BUDGET)
    membership(out, 8 if args.quick else 16)
    inversion(out)
    check_times(out, args.quick)
    _write(out)


def _write(out: dict[str, Any]) -> None:
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    tmp = RESULTS.with_suffix(".tmp")
    tmp.write_text(json.dumps(out, indent=2, default=float) + "\n")
    tmp.replace(RESULTS)
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
