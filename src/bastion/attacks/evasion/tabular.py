"""Tabular evasion under constraints: the cheapest applicant-controlled edit that flips a decision.

Gradient-free (it needs only `predict_proba`, so it works on trees as on linear models)
and batched over examples and candidate edits. Each feature may be immutable, integer,
categorical (a set of allowed values) and bounded; only the `actionable` features move,
each at its own cost per unit of its range (a flat cost per change for categorical
ones). The search tries every single-feature edit, then a greedy multi-feature path
(best margin drop per unit cost), then shrinks each edit back toward the original
while the decision stays flipped; the cheapest flip found wins.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from bastion.core.dataset import Dataset
from bastion.core.errors import DataError, UsageError
from bastion.core.model import Model, check_inputs

TOLERANCE = 1e-6


@dataclass(frozen=True)
class TabularConstraints:
    """What an applicant may change, within which values, at what price.

    `actionable` None means every feature that is not immutable; `cost` is per unit of
    the feature's range (default 1 each).
    """

    lower: np.ndarray
    upper: np.ndarray
    feature_names: tuple[str, ...] = ()
    immutable: frozenset[int] = frozenset()
    integer: frozenset[int] = frozenset()
    categorical: Mapping[int, tuple[float, ...]] = field(default_factory=dict)
    actionable: frozenset[int] | None = None
    cost: np.ndarray | None = None

    @classmethod
    def for_dataset(
        cls,
        data: Dataset,
        *,
        immutable: Sequence[str] = (),
        integer: Sequence[str] = (),
        categorical: Mapping[str, Sequence[float]] | None = None,
        actionable: Sequence[str] | None = None,
        cost: Mapping[str, float] | None = None,
    ) -> TabularConstraints:
        """Constraints named by feature, within the data set's bounds (or its observed range)."""
        names = data.feature_names or tuple(f"f{i}" for i in range(data.x.shape[1]))
        index = {n: i for i, n in enumerate(names)}

        def idx(name: str) -> int:
            if name not in index:
                raise UsageError(
                    f"unknown feature {name!r} in constraints",
                    fix="use the data set's feature names",
                )
            return index[name]

        lo, hi = (
            data.bounds if data.bounds is not None else (data.x.min(axis=0), data.x.max(axis=0))
        )
        weights = None
        if cost:
            weights = np.ones(len(names))
            for n, c in cost.items():
                weights[idx(n)] = c
        return cls(
            lower=np.asarray(lo, dtype=np.float64).reshape(-1),
            upper=np.asarray(hi, dtype=np.float64).reshape(-1),
            feature_names=tuple(names),
            immutable=frozenset(idx(n) for n in immutable),
            integer=frozenset(idx(n) for n in integer),
            categorical={
                idx(n): tuple(float(v) for v in vals) for n, vals in (categorical or {}).items()
            },
            actionable=None if actionable is None else frozenset(idx(n) for n in actionable),
            cost=weights,
        )

    @property
    def n_features(self) -> int:
        return len(self.lower)

    def movable(self) -> list[int]:
        base = set(range(self.n_features)) if self.actionable is None else set(self.actionable)
        return sorted(base - set(self.immutable))

    def weights(self) -> np.ndarray:
        return (
            np.ones(self.n_features)
            if self.cost is None
            else np.asarray(self.cost, dtype=np.float64)
        )

    def validate(self) -> None:
        """Raise UsageError for constraints no point can satisfy or no edit can use."""
        d = self.n_features
        if self.upper.shape != (d,):
            raise UsageError(
                "lower and upper bounds differ in length", fix="give one bound per feature"
            )
        if np.any(self.lower > self.upper):
            j = int(np.argmax(self.lower > self.upper))
            raise UsageError(
                f"feature {self._name(j)}: lower bound {self.lower[j]:g} > upper {self.upper[j]:g}",
                fix="correct the bounds",
            )
        every = (
            set(self.immutable)
            | set(self.integer)
            | set(self.categorical)
            | set(self.actionable or ())
        )
        if any(j < 0 or j >= d for j in every):
            raise UsageError(
                "a constraint names a feature index out of range", fix=f"use indices 0..{d - 1}"
            )
        both = set(self.immutable) & set(self.actionable or ())
        if both:
            raise UsageError(
                f"features both immutable and actionable: {self._names(both)}",
                fix="a feature the applicant controls cannot be immutable; pick one",
            )
        if not self.movable():
            raise UsageError(
                "no feature is actionable", fix="mark at least one mutable feature actionable"
            )
        for j in self.integer:
            if np.floor(self.upper[j]) < np.ceil(self.lower[j]):
                raise UsageError(
                    f"integer feature {self._name(j)} has no integer within its bounds",
                    fix="widen its bounds or drop the integer constraint",
                )
        for j, values in self.categorical.items():
            inside = [v for v in values if self.lower[j] <= v <= self.upper[j]]
            if not inside:
                raise UsageError(
                    f"categorical feature {self._name(j)} allows no value within its bounds",
                    fix="list allowed values inside the bounds",
                )
            if j in self.integer and any(v != round(v) for v in values):
                raise UsageError(
                    f"feature {self._name(j)} is integer but allows non-integer categories",
                    fix="make the categories integers or drop the integer constraint",
                )
        w = self.weights()
        if w.shape != (d,) or not np.all(np.isfinite(w)) or np.any(w[self.movable()] <= 0):
            raise UsageError(
                "costs must be finite and positive for every actionable feature",
                fix="give each actionable feature a cost > 0",
            )

    def satisfied(self, x: np.ndarray) -> np.ndarray:
        """Per row: does it lie within the bounds, integer and categorical constraints?"""
        ok = np.all((x >= self.lower - TOLERANCE) & (x <= self.upper + TOLERANCE), axis=1)
        for j in self.integer:
            ok &= np.abs(x[:, j] - np.round(x[:, j])) <= TOLERANCE
        for j, values in self.categorical.items():
            ok &= np.isin(np.round(x[:, j], 9), np.round(np.asarray(values), 9))
        return np.asarray(ok)

    def grid(self, j: int, n_grid: int) -> np.ndarray:
        """The candidate values of feature j."""
        if j in self.categorical:
            v = np.asarray(self.categorical[j], dtype=np.float64)
            return v[(v >= self.lower[j]) & (v <= self.upper[j])]
        values = np.linspace(self.lower[j], self.upper[j], n_grid)
        if j in self.integer:
            values = np.unique(
                np.clip(np.round(values), np.ceil(self.lower[j]), np.floor(self.upper[j]))
            )
        return values

    def edit_cost(self, j: int, old: np.ndarray, new: np.ndarray) -> np.ndarray:
        """Cost to move feature j from `old` to `new` (per unit of range; flat for categories)."""
        w = self.weights()[j]
        if j in self.categorical:
            return w * (np.abs(new - old) > TOLERANCE)
        span = max(self.upper[j] - self.lower[j], 1e-12)
        return w * np.abs(new - old) / span

    def _name(self, j: int) -> str:
        return self.feature_names[j] if j < len(self.feature_names) else f"#{j}"

    def _names(self, js: set[int]) -> str:
        return ", ".join(self._name(j) for j in sorted(js))


@dataclass(frozen=True)
class TabularResult:
    """Per example: the cheapest flipping edit found, its cost, and the features it changes."""

    x_adv: np.ndarray
    success: np.ndarray
    cost: np.ndarray
    original_label: np.ndarray
    new_label: np.ndarray
    queries: np.ndarray
    edits: list[list[dict[str, float | str]]]

    @property
    def success_rate(self) -> float:
        return float(self.success.mean()) if len(self.success) else 0.0


class _Scorer:
    """Batched margins of the original decision, counting queries per example."""

    def __init__(self, model: Model, labels: np.ndarray) -> None:
        self.model = model
        self.labels = labels
        self.queries = np.zeros(len(labels), dtype=np.int64)

    def margins(self, cand: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """(R, M, d) candidates for example `rows` -> (R, M) margins (< 0 means flipped)."""
        r, m, d = cand.shape
        if r * m == 0:
            return np.zeros((r, m))
        probs = self.model.predict_proba(cand.reshape(r * m, d).astype(np.float32)).reshape(
            r, m, -1
        )
        np.add.at(self.queries, rows, m)
        lab = self.labels[rows][:, None]
        own = np.take_along_axis(probs, lab[..., None], axis=2)[..., 0]
        other = probs.copy()
        np.put_along_axis(other, lab[..., None], -np.inf, axis=2)
        return np.asarray(own - other.max(axis=2))


def _moves(c: TabularConstraints, n_grid: int) -> tuple[np.ndarray, np.ndarray]:
    feats, vals = [], []
    for j in c.movable():
        g = c.grid(j, n_grid)
        feats.extend([j] * len(g))
        vals.extend(g.tolist())
    return np.asarray(feats, dtype=np.int64), np.asarray(vals, dtype=np.float64)


def _apply(state: np.ndarray, feats: np.ndarray, vals: np.ndarray) -> np.ndarray:
    cand = np.repeat(state[:, None, :], len(feats), axis=1)
    cand[:, np.arange(len(feats)), feats] = vals
    return cand


def _total_cost(c: TabularConstraints, x0: np.ndarray, x: np.ndarray) -> np.ndarray:
    return np.sum([c.edit_cost(j, x0[..., j], x[..., j]) for j in c.movable()], axis=0)


def cheapest_flip(
    model: Model,
    x: np.ndarray,
    constraints: TabularConstraints,
    *,
    n_grid: int = 21,
    max_changes: int = 5,
) -> TabularResult:
    """For each row, the cheapest constraint-respecting edit that changes the model's decision."""
    constraints.validate()
    x0 = check_inputs(model, x).astype(np.float64)
    if x0.ndim != 2 or x0.shape[1] != constraints.n_features:
        raise DataError(
            f"inputs have {x0.shape[1:]} features, constraints {constraints.n_features}",
            fix="give constraints for exactly the model's features",
        )
    bad = ~constraints.satisfied(x0)
    if bad.any():
        raise DataError(
            f"{int(bad.sum())} input row(s) already violate the constraints (e.g. row "
            f"{int(np.argmax(bad))})",
            fix="fix the bounds/integer/categorical constraints or the data",
        )
    if n_grid < 2 or max_changes < 1:
        raise UsageError("n_grid must be >= 2 and max_changes >= 1", fix="pass larger values")
    n = len(x0)
    labels = model.predict_proba(x0.astype(np.float32)).argmax(axis=1)
    scorer = _Scorer(model, labels)
    feats, vals = _moves(constraints, n_grid)
    rows = np.arange(n)
    move_cost = (
        np.stack(
            [
                constraints.edit_cost(int(j), x0[:, j], np.full(n, v))
                for j, v in zip(feats, vals, strict=True)
            ],
            axis=1,
        )
        if len(feats)
        else np.zeros((n, 0))
    )
    # 1. every single-feature edit
    m0 = scorer.margins(_apply(x0, feats, vals), rows)
    best = x0.copy()
    best_cost = np.full(n, np.inf)
    single_cost = np.where(m0 < 0, move_cost, np.inf)
    pick = single_cost.argmin(axis=1) if len(feats) else np.zeros(n, dtype=np.int64)
    found = np.isfinite(single_cost[rows, pick]) if len(feats) else np.zeros(n, dtype=bool)
    best[found, feats[pick[found]]] = vals[pick[found]]
    best_cost[found] = single_cost[rows, pick][found]
    # 2. greedy multi-feature path: best margin drop per unit of added cost
    state = x0.copy()
    changed = np.zeros((n, constraints.n_features), dtype=bool)
    margin_now = scorer.margins(state[:, None, :], rows)[:, 0]
    open_rows = rows[margin_now >= 0]
    for _ in range(max_changes):
        if len(open_rows) == 0:
            break
        cand = _apply(state[open_rows], feats, vals)
        m = scorer.margins(cand, open_rows)
        added = (
            _total_cost(constraints, x0[open_rows][:, None, :], cand)
            - _total_cost(constraints, x0[open_rows], state[open_rows])[:, None]
        )
        allowed = ~changed[open_rows][:, feats]
        flip_cost = np.where(allowed & (m < 0), added, np.inf)
        drop = margin_now[open_rows][:, None] - m
        score = np.where(allowed & (drop > 0), drop / (np.maximum(added, 0) + 1e-9), -np.inf)
        choice = np.where(
            np.isfinite(flip_cost.min(axis=1)), flip_cost.argmin(axis=1), score.argmax(axis=1)
        )
        usable = np.isfinite(flip_cost.min(axis=1)) | np.isfinite(score.max(axis=1))
        r, ch = open_rows[usable], choice[usable]
        state[r, feats[ch]] = vals[ch]
        changed[r, feats[ch]] = True
        margin_now[r] = m[usable, ch]
        open_rows = r[margin_now[r] >= 0]
    flipped = margin_now < 0
    # 3. shrink each greedy edit toward the original while the decision stays flipped
    for j in constraints.movable():
        r = rows[flipped & changed[:, j]]
        if len(r) == 0:
            continue
        options = np.concatenate([[np.nan], constraints.grid(j, n_grid)])
        trial_vals = np.where(np.isnan(options)[None, :], x0[r, j][:, None], options[None, :])
        cand = np.repeat(state[r][:, None, :], len(options), axis=1)
        cand[:, :, j] = trial_vals
        m = scorer.margins(cand, r)
        cost = np.where(m < 0, constraints.edit_cost(j, x0[r, j][:, None], trial_vals), np.inf)
        k = cost.argmin(axis=1)
        state[r, j] = trial_vals[np.arange(len(r)), k]
    greedy_cost = np.where(flipped, _total_cost(constraints, x0, state), np.inf)
    use_greedy = greedy_cost < best_cost
    best[use_greedy] = state[use_greedy]
    best_cost[use_greedy] = greedy_cost[use_greedy]
    success = np.isfinite(best_cost)
    best[~success] = x0[~success]
    new_label = model.predict_proba(best.astype(np.float32)).argmax(axis=1)
    scorer.queries += 1
    success &= new_label != labels
    return TabularResult(
        x_adv=best,
        success=success,
        cost=np.where(success, best_cost, np.inf),
        original_label=labels,
        new_label=new_label,
        queries=scorer.queries,
        edits=[_edits(constraints, x0[i], best[i]) for i in rows],
    )


def _edits(
    c: TabularConstraints, before: np.ndarray, after: np.ndarray
) -> list[dict[str, float | str]]:
    out: list[dict[str, float | str]] = []
    for j in np.flatnonzero(np.abs(after - before) > TOLERANCE):
        out.append(
            {
                "feature": c._name(int(j)),
                "from": float(before[j]),
                "to": float(after[j]),
                "cost": float(c.edit_cost(int(j), before[j], after[j])),
            }
        )
    return out
