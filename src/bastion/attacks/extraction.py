"""Model extraction through the prediction API: equation solving (Tramer et al. 2016) and
learning-based cloning with a query budget and a query-selection strategy (random in bounds,
a natural out-of-distribution pool, Jacobian-based augmentation after Papernot et al. 2017, and
Knockoff-style adaptive sampling after Orekondy et al. 2019), each also label-only."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import numpy as np

from bastion.attacks.clone import CloneSettings, fit_clone, new_clone
from bastion.attacks.extraction_pools import feature_bounds, natural_pool, uniform_in_bounds
from bastion.attacks.oracle import LabelOnlyError, Oracle, check_budget, check_features
from bastion.core.dataset import Dataset
from bastion.core.errors import DataError, UsageError
from bastion.core.model import Model, predict_labels

STRATEGIES = ("random", "natural", "jacobian", "knockoff")


@dataclass(frozen=True)
class ExtractionResult:
    """A clone, how closely it follows the victim, and what it cost.

    `fidelity` is top-1 agreement with the victim on held-out inputs; `curve` holds
    (queries used, fidelity) after each training round. Both are absent (None, empty) when
    the attack ran without an evaluation set. `queries` counts only the attack's own queries.
    """

    method: str
    clone: Model
    fidelity: float | None
    accuracy: float | None
    victim_accuracy: float | None
    queries: int
    label_only: bool
    curve: tuple[tuple[int, float], ...] = field(default=())


class LinearSoftmaxModel:
    """A recovered (multinomial) logistic regression: probabilities = softmax(x W^T + b)."""

    def __init__(
        self,
        weights: np.ndarray,
        bias: np.ndarray,
        input_shape: tuple[int, ...],
        input_bounds: tuple[float, float] | None = None,
    ) -> None:
        self.weights = weights
        self.bias = bias
        self.n_classes = len(bias)
        self.input_shape = input_shape
        self.input_bounds = input_bounds

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        z = np.asarray(x, dtype=np.float64).reshape(len(x), -1) @ self.weights.T + self.bias
        z -= z.max(axis=1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(axis=1, keepdims=True)


def fidelity(victim: Model, clone: Model, x: np.ndarray) -> float:
    """Fraction of inputs where clone and victim predict the same class (not counted as queries)."""
    return float((predict_labels(victim, x) == predict_labels(clone, x)).mean())


@dataclass(frozen=True)
class _Reference:
    """Held-out inputs with the victim's labels on them, read once before the attack starts so
    that measuring the clone never sends evaluation rows through the attacker's channel."""

    x: np.ndarray
    victim_labels: np.ndarray
    true_labels: np.ndarray | None

    def agreement(self, clone: Model) -> float:
        return float((predict_labels(clone, self.x) == self.victim_labels).mean())


def _reference(
    model: Model, evaluation: Dataset | None, evaluation_labels: np.ndarray | None
) -> _Reference | None:
    """The evaluation set and the victim's labels on it (given, or read once from `model`)."""
    if evaluation is None:
        if evaluation_labels is not None:
            raise UsageError(
                "evaluation_labels were given without an evaluation set",
                fix="pass the evaluation Dataset the labels belong to",
            )
        return None
    x = check_features(model, evaluation.x, "evaluation data")
    if evaluation_labels is None:
        labels = predict_labels(model, x)
    else:
        labels = np.asarray(evaluation_labels)
        if labels.shape != (len(x),):
            raise DataError(
                f"evaluation_labels has shape {labels.shape}, expected ({len(x)},)",
                fix="pass one victim label per evaluation row",
            )
    return _Reference(x, labels, evaluation.labels if evaluation.y is not None else None)


def _scores(
    method: str,
    clone: Model,
    reference: _Reference | None,
    queries: int,
    label_only: bool,
    curve: list[tuple[int, float]],
) -> ExtractionResult:
    acc = victim_acc = agreement = None
    if reference is not None:
        agreement = reference.agreement(clone)
        if reference.true_labels is not None:
            acc = float((predict_labels(clone, reference.x) == reference.true_labels).mean())
            victim_acc = float((reference.victim_labels == reference.true_labels).mean())
    return ExtractionResult(
        method, clone, agreement, acc, victim_acc, queries, label_only, tuple(curve)
    )


def equation_solving(
    model: Model,
    attacker_x: np.ndarray,
    evaluation: Dataset | None,
    *,
    seed: int,
    spread: float = 0.5,
    evaluation_labels: np.ndarray | None = None,
) -> ExtractionResult:
    """Recover a (multinomial) logistic regression from d+1 probability vectors by solving
    log(p_k / p_0) = (w_k - w_0) . x + (b_k - b_0) exactly.

    Queries sit around the mean of the attacker's unlabelled data (`spread` standard deviations
    away) so that probabilities stay far from 0 and 1. Exact for models linear in the raw input
    (including a StandardScaler in front); for anything else the fidelity shows the mismatch.
    Evaluation works as in `extract`.
    """
    x_ref = (
        check_features(model, attacker_x, "attacker data")
        .reshape(len(attacker_x), -1)
        .astype(np.float64)
    )
    d = x_ref.shape[1]
    rng = np.random.default_rng(seed)
    center = x_ref.mean(axis=0)
    std = x_ref.std(axis=0) if len(x_ref) > 1 else np.abs(center)
    std = np.where(std > 0, std, 1.0)
    reference = _reference(model, evaluation, evaluation_labels)
    queries = (center + spread * std * rng.standard_normal((d + 1, d))).astype(np.float32)
    oracle = Oracle(model, budget=d + 1)
    probs = oracle.query(queries.reshape((d + 1, *model.input_shape)))
    if oracle.label_only:
        raise LabelOnlyError(
            "equation solving needs probabilities but this model returns only labels",
            fix="use learning-based extraction with label_only=True (e.g. strategy 'jacobian')",
        )
    if (probs <= 0).any():
        raise UsageError(
            "some queried probabilities are exactly 0, so their log-odds are unknown",
            fix="lower `spread` so the queries stay nearer the data mean",
        )
    design = np.hstack([queries.astype(np.float64), np.ones((d + 1, 1))])
    log_odds = np.log(probs[:, 1:]) - np.log(probs[:, :1])
    solution, *_ = np.linalg.lstsq(design, log_odds, rcond=None)
    weights = np.vstack([np.zeros((1, d)), solution[:d].T])
    bias = np.concatenate([[0.0], solution[d]])
    clone = LinearSoftmaxModel(weights, bias, model.input_shape, model.input_bounds)
    return _scores("equation-solving", clone, reference, oracle.queries, False, [])


def extract(
    model: Model,
    attacker_x: np.ndarray,
    evaluation: Dataset | None,
    *,
    strategy: str,
    budget: int,
    seed: int,
    label_only: bool | None = None,
    rounds: int = 4,
    settings: CloneSettings | None = None,
    evaluation_labels: np.ndarray | None = None,
) -> ExtractionResult:
    """Train a clone from at most `budget` victim answers chosen by `strategy` (see STRATEGIES).

    `attacker_x` is the attacker's own unlabelled data (seed set / pool material). With
    `label_only=None` the clone trains on probabilities unless the API turns out to return only
    labels; `label_only=True` forces the label-only variant.

    Only the attack's queries (exactly `budget` rows at most) go to `model` during the attack.
    The fidelity curve compares the clone with the victim's labels on `evaluation`: pass them
    as `evaluation_labels` (required when `model` is a monitored API, so evaluation rows never
    look like attacker traffic); otherwise they are read from `model` once, before the attack.
    With `evaluation=None` there is no fidelity and no curve.
    """
    if strategy not in STRATEGIES:
        raise UsageError(
            f"unknown extraction strategy {strategy!r}", fix=f"choose from: {', '.join(STRATEGIES)}"
        )
    budget = check_budget(budget)
    rounds = check_budget(rounds, "number of rounds")
    x_att = check_features(model, attacker_x, "attacker data")
    if len(x_att) == 0:
        raise DataError("the attacker data is empty", fix="give at least one unlabelled example")
    reference = _reference(model, evaluation, evaluation_labels)
    run = _Run(model, x_att, reference, budget, seed, label_only, settings or CloneSettings())
    if strategy in ("random", "natural"):
        run.fixed_pool(strategy, rounds)
    elif strategy == "jacobian":
        run.jacobian(rounds)
    else:
        run.knockoff(rounds)
    return _scores(strategy, run.clone, reference, run.oracle.queries, run.hard_labels, run.curve)


class _Run:
    """State shared by the strategies: the oracle, the labelled transfer set and the clone."""

    def __init__(
        self,
        model: Model,
        x_att: np.ndarray,
        reference: _Reference | None,
        budget: int,
        seed: int,
        label_only: bool | None,
        settings: CloneSettings,
    ) -> None:
        self.model = model
        self.x_att = x_att
        self.reference = reference
        self.oracle = Oracle(model, budget)
        self.budget = budget
        self.seed = seed
        self.rng = np.random.default_rng(seed)
        self.forced_label_only = bool(label_only)
        self.settings = settings
        self.bounds = feature_bounds(model, x_att)
        self.clone = new_clone(model.input_shape, model.n_classes, x_att, seed, model.input_bounds)
        self.xs: list[np.ndarray] = []
        self.ys: list[np.ndarray] = []
        self.curve: list[tuple[int, float]] = []
        self.rounds = 0

    @property
    def hard_labels(self) -> bool:
        return self.forced_label_only or bool(self.oracle.label_only)

    def ask(self, x: np.ndarray) -> np.ndarray:
        """Query the victim on `x` (trimmed to the remaining budget) and keep the answers."""
        remaining = self.oracle.remaining or 0
        x = x[:remaining]
        if len(x) == 0:
            return np.zeros((0, self.model.n_classes))
        probs = self.oracle.query(x)
        self.xs.append(x)
        self.ys.append(probs)
        return probs

    def train(self) -> None:
        """Fit the clone on every answer so far (one-hot targets in the label-only variant)."""
        x, y = np.concatenate(self.xs), np.concatenate(self.ys)
        if self.hard_labels:
            y = np.eye(self.model.n_classes)[y.argmax(axis=1)]
        fit_clone(self.clone, x, y, self.seed + self.rounds, self.settings)
        self.rounds += 1
        if self.reference is not None:
            self.curve.append((self.oracle.queries, self.reference.agreement(self.clone)))

    def fixed_pool(self, strategy: str, rounds: int) -> None:
        if strategy == "random":
            pool = uniform_in_bounds(self.bounds, self.budget, self.rng)
        else:
            pool = natural_pool(self.model, self.x_att, self.bounds, self.budget, self.rng)
        edges = np.linspace(0, self.budget, min(rounds, self.budget) + 1).astype(int)
        for start, stop in itertools.pairwise(edges):
            self.ask(pool[start:stop])
            self.train()

    def jacobian(self, rounds: int) -> None:
        """Papernot et al.: a seed set sized so `rounds` doublings fit the budget, then repeatedly
        step every point along the sign of the clone's gradient for the victim's label and query
        the new points (the step sign alternates per round) until the budget is spent."""
        import torch

        lo, hi = self.bounds
        step = 0.1 * (hi - lo)
        n_seed = max(1, min(len(self.x_att), self.budget // (2 ** (rounds - 1))))
        current = self.x_att[self.rng.permutation(len(self.x_att))[:n_seed]]
        self.ask(current)
        self.train()
        r = 0
        while self.oracle.remaining:  # double the set each round until the budget is spent
            r += 1
            x_all, y_all = np.concatenate(self.xs), np.concatenate(self.ys).argmax(axis=1)
            pick = self.rng.permutation(len(x_all))[: self.oracle.remaining]
            xt = torch.as_tensor(x_all[pick]).requires_grad_(True)
            chosen = self.clone.logits(xt).gather(1, torch.as_tensor(y_all[pick])[:, None]).sum()
            (grad,) = torch.autograd.grad(chosen, xt)
            sign = 1.0 if r % 2 else -1.0
            current = np.clip(x_all[pick] + sign * step * np.sign(grad.numpy()), lo, hi).astype(
                np.float32
            )
            self.ask(current)
            self.train()

    def knockoff(self, rounds: int) -> None:
        """Knockoff-style adaptive sampling: a gradient bandit over clusters of the natural pool,
        rewarded by the victim's certainty, the clone's loss and label diversity."""
        from sklearn.cluster import KMeans

        pool = natural_pool(
            self.model, self.x_att, self.bounds, max(4 * self.budget, 1000), self.rng
        )
        n_arms = max(2, 2 * self.model.n_classes)
        arms = KMeans(n_arms, n_init=1, random_state=self.seed).fit_predict(
            pool.reshape(len(pool), -1)
        )
        unused = np.ones(len(pool), bool)
        prefs, baseline, lr = np.zeros(n_arms), 0.0, 0.5
        per_round = max(1, self.budget // rounds)
        while self.oracle.remaining:
            avail = np.array([unused & (arms == a) for a in range(n_arms)]).any(axis=1)
            policy = np.where(avail, np.exp(prefs - prefs.max()), 0.0)
            policy /= policy.sum()
            counts = self.rng.multinomial(
                min(per_round, self.oracle.remaining, int(unused.sum())), policy
            )
            picked = np.concatenate(
                [
                    self.rng.permutation(np.flatnonzero(unused & (arms == a)))[:k]
                    for a, k in enumerate(counts)
                    if k
                ]
            )
            unused[picked] = False
            before = self.clone.predict_proba(pool[picked])
            answers = self.ask(pool[picked])
            reward = _knockoff_reward(answers, before, np.concatenate(self.ys))
            for a in np.unique(arms[picked]):
                r = float(reward[arms[picked] == a].mean())
                one_hot = np.eye(n_arms)[a]
                prefs += lr * (r - baseline) * (one_hot - policy)
            baseline = (
                0.8 * baseline + 0.2 * float(reward.mean()) if self.rounds else float(reward.mean())
            )
            self.train()
            if not unused.any():
                break


def _knockoff_reward(
    answers: np.ndarray, clone_probs: np.ndarray, history: np.ndarray
) -> np.ndarray:
    """Per-query reward: certainty (top-1 minus top-2), clone loss, distance from mean answer."""
    top2 = np.sort(answers, axis=1)[:, -2:]
    certainty = top2[:, 1] - top2[:, 0]
    loss = -(answers * np.log(np.clip(clone_probs, 1e-12, 1.0))).sum(axis=1)
    diversity = np.abs(answers - history.mean(axis=0)).sum(axis=1)
    return certainty + loss / max(float(loss.max()), 1e-12) + diversity / 2.0
