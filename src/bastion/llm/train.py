"""Retrain the shipped head: `python -m bastion.llm.train` (or `make retrain-llm-head`).

Reproducible: the features are deterministic (int8 MiniLM + rules) and the logistic
regression is fitted with a fixed seed. Multiple-instance training: an attack row is positive
through its most suspicious window, so in the second round only that window stays positive
(a long e-mail with one injected line does not teach that every e-mail is an attack).
The threshold is the lowest score that keeps dev false positives at or under `--target-fpr`.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

import numpy as np

from bastion.core.fs import write_bytes_atomic
from bastion.llm.classifier import RULE_FEATURES, Featurizer, Head
from bastion.llm.detector import rule_hits
from bastion.llm.normalize import normalize
from bastion.llm.rules import rule_score

DEFAULT_DATA = Path("../shared/data/prompt-injection")
DEFAULT_OUT = Path(__file__).parent / "data" / "head.json"


def load_rows(path: Path) -> list[dict[str, object]]:
    """Rows of a JSON Lines data file (text, label, kind, source)."""
    with path.open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def featurize(
    rows: list[dict[str, object]], featurizer: Featurizer
) -> tuple[list[np.ndarray], np.ndarray]:
    """Per row: the instance feature matrix, and the rule score."""
    blocks: list[np.ndarray] = []
    scores = np.zeros(len(rows), dtype=np.float32)
    for i, row in enumerate(rows):
        norm = normalize(str(row["text"]))
        by_view = rule_hits(norm)
        x, _ = featurizer.instances(norm, by_view)
        blocks.append(x)
        scores[i] = rule_score([h for hits in by_view.values() for h in hits])
    return blocks, scores


def _fit(
    x: np.ndarray, y: np.ndarray, weight: np.ndarray, c: float, seed: int
) -> tuple[np.ndarray, float]:
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression(C=c, max_iter=3000, random_state=seed)
    model.fit(x, y, sample_weight=weight)
    return model.coef_[0].astype(np.float32), float(model.intercept_[0])


def fit_head(
    blocks: list[np.ndarray], labels: np.ndarray, c: float, seed: int, rounds: int = 2
) -> tuple[np.ndarray, float]:
    """Multiple-instance logistic regression (see the module docstring)."""
    keep = [np.ones(len(b), dtype=bool) for b in blocks]
    weights, bias = np.zeros(blocks[0].shape[1], dtype=np.float32), 0.0
    pos_total = max(1, int(labels.sum()))
    neg_total = max(1, int(len(labels) - labels.sum()))
    for _ in range(rounds):
        xs, ys, ws = [], [], []
        for block, label, mask in zip(blocks, labels, keep, strict=True):
            chosen = block[mask]
            if len(chosen) == 0:
                continue
            xs.append(chosen)
            ys.append(np.full(len(chosen), label))
            # each row weighs the same in total; classes are balanced
            ws.append(
                np.full(len(chosen), (1.0 / (pos_total if label else neg_total)) / len(chosen))
            )
        x, y, w = np.vstack(xs), np.concatenate(ys), np.concatenate(ws)
        weights, bias = _fit(x, y, w * len(y), c, seed)
        for i, block in enumerate(blocks):
            if labels[i] and len(block):
                z = block @ weights + bias
                keep[i] = z >= z.max()
    return weights, bias


def row_scores(blocks: list[np.ndarray], rules_only: np.ndarray, head: Head) -> np.ndarray:
    """The detector's score per row: max of the rules and the best instance."""
    model = np.array([float(head.score(b).max()) if len(b) else 0.0 for b in blocks])
    return np.maximum(model, rules_only)


def tune_threshold(scores: np.ndarray, labels: np.ndarray, target_fpr: float) -> float:
    """The lowest threshold whose false-positive rate is at most `target_fpr`."""
    negatives = np.sort(scores[labels == 0])[::-1]
    allowed = int(np.floor(target_fpr * len(negatives)))
    above = negatives[allowed] if allowed < len(negatives) else 0.0
    return float(min(0.999, np.nextafter(np.float32(above), np.float32(1.0))))


def rates(scores: np.ndarray, labels: np.ndarray, threshold: float) -> dict[str, float]:
    """TPR and FPR at `threshold`."""
    flagged = scores >= threshold
    return {
        "tpr": float(flagged[labels == 1].mean()),
        "fpr": float(flagged[labels == 0].mean()),
    }


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data", type=Path, default=DEFAULT_DATA, help="folder with train.jsonl and dev.jsonl"
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--c", type=float, default=4.0, help="inverse L2 strength")
    parser.add_argument("--target-fpr", type=float, default=0.0075)
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
    y_train = np.array([int(r["label"]) for r in train])  # type: ignore[call-overload]
    y_dev = np.array([int(r["label"]) for r in dev])  # type: ignore[call-overload]
    print(f"featurizing {len(train)} train and {len(dev)} dev rows", file=sys.stderr)
    train_blocks, _ = featurize(train, featurizer)
    dev_blocks, dev_rules = featurize(dev, featurizer)
    weights, bias = fit_head(train_blocks, y_train, args.c, args.seed)
    draft = Head(weights, bias, 0.5, {})
    dev_scores = row_scores(dev_blocks, dev_rules, draft)
    threshold = tune_threshold(dev_scores, y_dev, args.target_fpr)
    meta = {
        "trained_on": {"train.jsonl": _sha256(train_path), "dev.jsonl": _sha256(dev_path)},
        "seed": args.seed,
        "c": args.c,
        "target_fpr": args.target_fpr,
        "rule_features": list(RULE_FEATURES),
        "dev": rates(dev_scores, y_dev, threshold),
    }
    head = Head(weights, bias, threshold, meta)
    write_bytes_atomic(args.out, head.to_json().encode("utf-8"))
    print(json.dumps({"threshold": threshold, **meta["dev"]}), file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
