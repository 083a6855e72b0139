"""Retrain the shipped head: `python -m bastion.llm.train` (or `make retrain-llm-head`).

Reproducible: the features are deterministic (int8 MiniLM windows, hashed n-grams, rules) and
the logistic regression is fitted with a fixed seed. The threshold is the lowest score that
keeps dev false positives at or under `--target-fpr` (default 1%).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from bastion.core.fs import write_bytes_atomic
from bastion.llm.classifier import HASH_BLOCK, HASH_FEATURES, Featurizer, Head
from bastion.llm.detector import STRONG_RULES, rule_hits
from bastion.llm.normalize import normalize
from bastion.llm.rules import rule_score

DEFAULT_DATA = Path("../shared/data/prompt-injection")
DEFAULT_OUT = Path(__file__).parent / "data" / "head.safetensors"


def load_rows(path: Path) -> list[dict[str, Any]]:
    """Rows of a JSON Lines data file (text, label, kind, source)."""
    with path.open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def featurize(
    rows: list[dict[str, Any]], featurizer: Featurizer
) -> tuple[Any, np.ndarray, np.ndarray, np.ndarray]:
    """Per reading: hashed counts (CSR) and dense row; per row: rule score; reading -> row."""
    import scipy.sparse as sp

    lexical, dense, owner = [], [], []
    strong = np.zeros(len(rows), dtype=np.float32)
    started = time.time()
    for i, row in enumerate(rows):
        norm = normalize(str(row["text"]))
        by_view = rule_hits(norm)
        counts, vectors, _ = featurizer.features(norm, by_view)
        lexical.append(counts)
        dense.append(vectors)
        owner.extend([i] * len(vectors))
        strong[i] = rule_score([h for hits in by_view.values() for h in hits])
        if i % 500 == 0:
            print(f"  {i}/{len(rows)} rows ({time.time() - started:.0f}s)", file=sys.stderr)
    return sp.vstack(lexical).tocsr(), np.vstack(dense), strong, np.array(owner)


def fit_head(lexical: Any, dense: np.ndarray, labels: np.ndarray, c: float, seed: int) -> Head:
    """Fit IDF and the logistic regression (classes balanced); threshold left at 0.5."""
    import scipy.sparse as sp
    from sklearn.feature_extraction.text import TfidfTransformer
    from sklearn.linear_model import LogisticRegression

    from bastion.llm.classifier import tfidf

    lexical = lexical.tocsc()
    idf = np.concatenate(
        [
            TfidfTransformer(sublinear_tf=True).fit(lexical[:, k : k + HASH_BLOCK]).idf_
            for k in range(0, HASH_FEATURES, HASH_BLOCK)
        ]
    ).astype(np.float32)
    x = sp.hstack([tfidf(lexical, idf), sp.csr_matrix(dense)]).tocsr()
    model = LogisticRegression(C=c, max_iter=5000, class_weight="balanced", random_state=seed)
    model.fit(x, labels)
    weights = model.coef_[0].astype(np.float32)
    return Head(
        weights[:HASH_FEATURES], idf, weights[HASH_FEATURES:], float(model.intercept_[0]), 0.5, {}
    )


def detector_scores(
    head: Head, lexical: Any, dense: np.ndarray, rules_only: np.ndarray, owner: np.ndarray
) -> np.ndarray:
    """What `Detector.analyse(...).score` gives for each row (max over its readings)."""
    model = np.zeros(len(rules_only))
    np.maximum.at(model, owner, head.score(lexical, dense))
    return np.maximum(model, np.where(rules_only >= STRONG_RULES, rules_only, 0.0))


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
    parser.add_argument("--target-fpr", type=float, default=0.01)
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
    train_lex, train_dense, _, train_owner = featurize(train, featurizer)
    print(f"featurizing {len(dev)} dev rows", file=sys.stderr)
    dev_lex, dev_dense, dev_rules, dev_owner = featurize(dev, featurizer)
    # every reading is a sample: the decoded-views-only reading learns what encodings hide
    draft = fit_head(train_lex, train_dense, y_train[train_owner], args.c, args.seed)
    dev_scores = detector_scores(draft, dev_lex, dev_dense, dev_rules, dev_owner)
    threshold = tune_threshold(dev_scores, y_dev, args.target_fpr)
    meta = {
        "trained_on": {"train.jsonl": _sha256(train_path), "dev.jsonl": _sha256(dev_path)},
        "seed": args.seed,
        "c": args.c,
        "target_fpr": args.target_fpr,
        "dev_at_threshold": rates(dev_scores, y_dev, threshold),
    }
    head = Head(draft.lexical, draft.idf, draft.dense, draft.bias, threshold, meta)
    write_bytes_atomic(args.out, head.to_bytes())
    print(
        json.dumps({"out": str(args.out), "threshold": threshold, **meta["dev_at_threshold"]}),
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
