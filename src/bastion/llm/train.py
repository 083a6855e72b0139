"""Retrain the shipped head: `python -m bastion.llm.train` (or `make retrain-llm-head`).

Reproducible: the features are deterministic (int8 MiniLM windows, hashed n-grams, rules) and
the logistic regressions are fitted with a fixed seed. Two models are fitted on train.jsonl:

- the document model: TF-IDF hashed n-grams of the whole input plus the dense features
  (max-pooled MiniLM windows, rule and evasion features), standardised;
- the segment model: TF-IDF hashed n-grams of each sentence-like segment, trained as
  multiple-instance learning: every segment of a benign row is benign; in an attack row,
  after each round only the segments scoring within `MARGIN` of the row's best stay
  positive, so the model learns the attack sentence rather than the document around it.

The threshold is the lowest score that keeps dev false positives at or under `--target-fpr`
(default 1%). `--group-cv K` also reports a held-out estimate: K folds of train grouped by
source file, so each fold is scored by a head that never saw its sources.

Two options trade dev fit for that held-out estimate (the defaults give the shipped head):
`--rule-weight` scales the rule and evasion features next to the embedding (a larger scale
means a weaker L2 penalty on them, so the head leans on the hand-written rules), and
`--balance kinds` gives each attack and benign kind the same total weight, so the largest
sources do not dominate.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from bastion.core.fs import write_bytes_atomic
from bastion.llm.classifier import MIX, RULE_FEATURES, Features, Featurizer, Head, tfidf
from bastion.llm.detector import STRONG_RULES, rule_hits
from bastion.llm.normalize import normalize
from bastion.llm.rules import rule_score

DEFAULT_DATA = Path("../shared/data/prompt-injection")
DEFAULT_OUT = Path(__file__).parent / "data" / "head.safetensors"
DENSE_WEIGHT = 0.05  # scale of the standardised dense block next to the unit-norm TF-IDF rows
MIL_ROUNDS = 3
MARGIN = 2.0  # logits: attack-row segments this far below the row's best are dropped


def load_rows(path: Path) -> list[dict[str, Any]]:
    """Rows of a JSON Lines data file (text, label, kind, source)."""
    with path.open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def featurize(rows: list[dict[str, Any]], featurizer: Featurizer) -> list[Features]:
    """The detector's features for each row."""
    out = []
    started = time.time()
    for i, row in enumerate(rows):
        norm = normalize(str(row["text"]))
        out.append(featurizer.features(norm, rule_hits(norm)))
        if i % 500 == 0:
            print(f"  {i}/{len(rows)} rows ({time.time() - started:.0f}s)", file=sys.stderr)
    return out


def strong_rules(rows: list[dict[str, Any]]) -> np.ndarray:
    """The rules' score per row (the detector flags strong rule evidence on its own)."""
    scores = []
    for row in rows:
        by_view = rule_hits(normalize(str(row["text"])))
        scores.append(rule_score([h for hits in by_view.values() for h in hits]))
    return np.array(scores)


def fit_idf(counts: Any) -> np.ndarray:
    """Smoothed IDF per column, as sklearn's TfidfTransformer: ln((1 + n) / (1 + df)) + 1."""
    df = np.bincount(counts.tocsr().indices, minlength=counts.shape[1])
    return (np.log((1.0 + counts.shape[0]) / (1.0 + df)) + 1.0).astype(np.float32)


def sample_weights(kinds: np.ndarray, balance: str) -> np.ndarray:
    """Per-row weights (mean 1): uniform, or every kind with the same total weight."""
    if balance == "classes":  # the logistic regressions balance the two classes themselves
        return np.ones(len(kinds))
    _, inverse, counts = np.unique(kinds, return_inverse=True, return_counts=True)
    weight = 1.0 / counts[inverse]
    return np.asarray(weight * len(weight) / weight.sum())


def _logistic(x: Any, y: np.ndarray, c: float, seed: int, weight: Any = None) -> Any:
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression(C=c, max_iter=5000, class_weight="balanced", random_state=seed)
    return model.fit(x, y, sample_weight=weight)


def fit_head(
    feats: list[Features],
    labels: np.ndarray,
    c: float,
    seed: int,
    rule_weight: float = DENSE_WEIGHT,
    weights: np.ndarray | None = None,
) -> Head:
    """Fit both models on the rows' first reading; threshold left at 0.5.

    `rule_weight` scales the standardised rule features (the embedding gets `DENSE_WEIGHT`);
    `weights` are per-row sample weights (see `sample_weights`).
    """
    import scipy.sparse as sp

    counts = sp.vstack([f.counts[0] for f in feats]).tocsr()
    dense = np.vstack([f.dense[0] for f in feats]).astype(np.float64)
    idf = fit_idf(counts)
    mu, sd = dense.mean(axis=0), dense.std(axis=0)
    sd[sd < 1e-6] = 1.0
    scale = np.full(dense.shape[1], DENSE_WEIGHT)
    scale[-len(RULE_FEATURES) :] = rule_weight
    rows = np.ones(len(feats)) if weights is None else weights
    scaled = (dense - mu) / sd * scale
    x_doc = sp.hstack([tfidf(counts, idf), sp.csr_matrix(scaled)]).tocsr()
    doc = _logistic(x_doc, labels, c, seed, rows)
    coef = doc.coef_[0]
    n_lex = counts.shape[1]
    dense_w = coef[n_lex:] * scale / sd
    bias = float(doc.intercept_[0] - dense_w @ mu)

    seg_counts = sp.vstack([f.segment_counts for f in feats]).tocsr()
    owner = np.concatenate([np.full(f.segment_counts.shape[0], i) for i, f in enumerate(feats)])
    seg_idf = fit_idf(seg_counts)
    x = tfidf(seg_counts, seg_idf)
    y = labels[owner]
    weight = rows[owner]
    for round_ in range(MIL_ROUNDS):
        seg = _logistic(x, y, c, seed, weight)
        if round_ == MIL_ROUNDS - 1:
            break
        z = seg.decision_function(x)
        best = np.full(len(feats), -np.inf)
        np.maximum.at(best, owner, z)
        weight = np.where((y == 1) & (z < best[owner] - MARGIN), 0.0, rows[owner])
    return Head(
        lexical=coef[:n_lex].astype(np.float32),
        idf=idf,
        dense=dense_w.astype(np.float32),
        bias=bias,
        segment_lexical=seg.coef_[0].astype(np.float32),
        segment_idf=seg_idf,
        segment_bias=float(seg.intercept_[0]),
        mix=MIX,
        threshold=0.5,
        meta={},
    ).rounded()


def detector_scores(head: Head, feats: list[Features], rules_only: np.ndarray) -> np.ndarray:
    """What `Detector.analyse(...).score` gives for each row (max over its readings)."""
    model = np.array([float(head.score(f).max()) if f.windows else 0.0 for f in feats])
    return np.where(rules_only >= STRONG_RULES, 1.0, model)


def tune_threshold(scores: np.ndarray, labels: np.ndarray, target_fpr: float) -> float:
    """The lowest threshold whose false-positive rate is at most `target_fpr`.

    It sits 1e-6 above the highest allowed negative: scoring one row alone and in a batch
    can differ in the last float bits, and that must not flip the negative at the boundary.
    """
    negatives = np.sort(scores[labels == 0])[::-1]
    allowed = int(np.floor(target_fpr * len(negatives)))
    above = float(negatives[allowed]) if allowed < len(negatives) else 0.0
    return float(min(0.999, max(0.5, above + 1e-6)))


def rates(scores: np.ndarray, labels: np.ndarray, threshold: float) -> dict[str, float]:
    """TPR and FPR at `threshold`."""
    flagged = scores >= threshold
    return {
        "tpr": round(float(flagged[labels == 1].mean()), 4),
        "fpr": round(float(flagged[labels == 0].mean()), 4),
    }


def tpr_at_fpr(scores: np.ndarray, labels: np.ndarray, target_fpr: float) -> float:
    """TPR at the threshold that keeps the FPR at or under `target_fpr` (on these scores)."""
    return rates(scores, labels, tune_threshold(scores, labels, target_fpr))["tpr"]


def group_cv(
    rows: list[dict[str, Any]],
    feats: list[Features],
    labels: np.ndarray,
    rules_only: np.ndarray,
    folds: int,
    args: argparse.Namespace,
) -> dict[str, Any]:
    """Held-out estimate on train: folds grouped by source file (no source in two folds)."""
    from sklearn.model_selection import GroupKFold

    groups = np.array([str(r["source"]).split("#")[0] for r in rows])
    kinds = np.array([str(r["kind"]) for r in rows])
    scores = np.zeros(len(rows))
    for i, (fit_rows, held) in enumerate(GroupKFold(folds).split(rows, labels, groups)):
        head = fit_head(
            [feats[j] for j in fit_rows],
            labels[fit_rows],
            args.c,
            args.seed,
            args.rule_weight,
            sample_weights(kinds[fit_rows], args.balance),
        )
        scores[held] = detector_scores(head, [feats[j] for j in held], rules_only[held])
        print(f"  group-cv fold {i + 1}/{folds}", file=sys.stderr)
    threshold = tune_threshold(scores, labels, args.target_fpr)
    flagged = scores >= threshold
    return {
        "folds": folds,
        "grouped_by": "source file",
        "tpr_at_1pct_fpr": tpr_at_fpr(scores, labels, args.target_fpr),
        "flag_rate_per_kind": {
            k: round(float(flagged[kinds == k].mean()), 4) for k in sorted(set(kinds))
        },
    }


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Retrain the LLM guard's head.")
    parser.add_argument(
        "--data", type=Path, default=DEFAULT_DATA, help="folder with train.jsonl and dev.jsonl"
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--c", type=float, default=10.0, help="inverse L2 strength")
    parser.add_argument(
        "--rule-weight",
        type=float,
        default=DENSE_WEIGHT,
        help="scale of the rule features next to the embedding's",
    )
    parser.add_argument(
        "--balance",
        choices=("classes", "kinds"),
        default="classes",
        help="balance the two classes, or every kind",
    )
    parser.add_argument("--target-fpr", type=float, default=0.01)
    parser.add_argument(
        "--group-cv", type=int, default=0, help="also estimate TPR on K source-grouped folds"
    )
    args = parser.parse_args(argv)
    train_path, dev_path = args.data / "train.jsonl", args.data / "dev.jsonl"
    if not train_path.is_file() or not dev_path.is_file():
        print(
            f"error: {args.data} lacks train.jsonl or dev.jsonl\n  fix: pass --data",
            file=sys.stderr,
        )
        return 2
    featurizer = Featurizer()
    train, dev = load_rows(train_path), load_rows(dev_path)
    y_train = np.array([int(r["label"]) for r in train])
    y_dev = np.array([int(r["label"]) for r in dev])
    print(f"featurizing {len(train)} train rows", file=sys.stderr)
    train_feats = featurize(train, featurizer)
    print(f"featurizing {len(dev)} dev rows", file=sys.stderr)
    dev_feats = featurize(dev, featurizer)
    kinds = np.array([str(r["kind"]) for r in train])
    weights = sample_weights(kinds, args.balance)
    draft = fit_head(train_feats, y_train, args.c, args.seed, args.rule_weight, weights)
    dev_scores = detector_scores(draft, dev_feats, strong_rules(dev))
    threshold = tune_threshold(dev_scores, y_dev, args.target_fpr)
    meta: dict[str, Any] = {
        "trained_on": {"train.jsonl": _sha256(train_path), "dev.jsonl": _sha256(dev_path)},
        "seed": args.seed,
        "c": args.c,
        "rule_weight": args.rule_weight,
        "balance": args.balance,
        "mix": MIX,
        "target_fpr": args.target_fpr,
        "dev_at_threshold": rates(dev_scores, y_dev, threshold),
    }
    if args.group_cv:
        meta["train_group_cv"] = group_cv(
            train, train_feats, y_train, strong_rules(train), args.group_cv, args
        )
    head = dataclasses.replace(draft, threshold=threshold, meta=meta)
    write_bytes_atomic(args.out, head.to_bytes())
    print(json.dumps({"out": str(args.out), "threshold": threshold, **meta}), file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
