"""Poisoning attacks: what each one changes in the data, bad input, and real attack success."""

from __future__ import annotations

import math

import numpy as np
import pytest

from bastion.attacks.poisoning import (
    badnets,
    evaluate,
    feature_collision,
    feature_trigger,
    flip_labels_random,
    flip_labels_targeted,
    patch_trigger,
    poison_count,
)
from bastion.attacks.poisoning.features import feature_tensor
from bastion.attacks.poisoning.surrogate import train_surrogate
from bastion.core.dataset import Dataset
from bastion.core.errors import DataError, UsageError
from bastion.zoo import entry


@pytest.fixture(scope="module")
def digits() -> tuple[Dataset, Dataset]:
    return entry("digits-cnn").load_data()


def surrogate(ds: Dataset, seed: int) -> object:
    return train_surrogate(ds, seed, n_classes=10, epochs=15)


@pytest.mark.parametrize("rate", [-0.01, 1.0, 1.5, math.nan, math.inf])
def test_rates_outside_unit_interval_are_refused(digits, rate) -> None:
    train, _ = digits
    with pytest.raises(UsageError, match=r"outside \[0, 1\)"):
        badnets(train, rate, 0, patch_trigger((1, 8, 8)), 10, seed=0)
    with pytest.raises(UsageError, match=r"outside \[0, 1\)"):
        flip_labels_random(train, rate, 10, seed=0)


def test_rate_zero_poisons_nothing(digits) -> None:
    train, _ = digits
    poisoned = flip_labels_random(train, 0.0, 10, seed=0)
    assert len(poisoned.poison_index) == 0
    assert np.array_equal(poisoned.dataset.labels, train.labels)


def test_triggers_that_do_not_fit_are_refused(digits) -> None:
    train, _ = digits
    with pytest.raises(UsageError, match="does not fit 8x8"):
        patch_trigger((1, 8, 8), size=9)
    with pytest.raises(UsageError, match="needs image inputs"):
        patch_trigger((30,))
    with pytest.raises(UsageError, match="outside the 30 features"):
        feature_trigger((30,), {30: 1.0})
    with pytest.raises(UsageError, match="trigger has shape"):
        badnets(train, 0.05, 0, patch_trigger((1, 6, 6)), 10, seed=0)
    with pytest.raises(UsageError, match="trigger has shape"):
        badnets(train, 0.05, 0, feature_trigger((64,), {0: 1.0}), 10, seed=0)


def test_data_without_labels_is_refused(digits) -> None:
    train, _ = digits
    unlabelled = Dataset(train.x, None)
    with pytest.raises(DataError, match="no labels"):
        badnets(unlabelled, 0.05, 0, patch_trigger((1, 8, 8)), 10, seed=0)
    with pytest.raises(DataError, match="no labels"):
        flip_labels_targeted(unlabelled, 0.05, 1, 7, 10, seed=0)


def test_too_many_poisons_for_the_source_class(digits) -> None:
    train, _ = digits
    with pytest.raises(UsageError, match=r"only .* rows of class 1 exist"):
        flip_labels_targeted(train, 0.5, 1, 7, 10, seed=0)


def test_random_flip_changes_exactly_the_poisoned_labels(digits) -> None:
    train, _ = digits
    poisoned = flip_labels_random(train, 0.1, 10, seed=3)
    changed = np.flatnonzero(poisoned.dataset.labels != train.labels)
    assert np.array_equal(changed, poisoned.poison_index)
    assert len(changed) == poison_count(len(train), 0.1)
    assert np.array_equal(poisoned.dataset.x, train.x)


def test_targeted_flip_only_touches_the_source_class(digits) -> None:
    train, _ = digits
    poisoned = flip_labels_targeted(train, 0.05, 1, 7, 10, seed=0)
    assert (train.labels[poisoned.poison_index] == 1).all()
    assert (poisoned.dataset.labels[poisoned.poison_index] == 7).all()


def test_badnets_stamps_trigger_and_target_label_reproducibly(digits) -> None:
    train, _ = digits
    trigger = patch_trigger((1, 8, 8), size=3)
    a = badnets(train, 0.05, 4, trigger, 10, seed=1)
    b = badnets(train, 0.05, 4, trigger, 10, seed=1)
    assert np.array_equal(a.poison_index, b.poison_index)
    rows = a.dataset.x[a.poison_index]
    assert np.array_equal(
        rows[:, trigger.mask],
        np.broadcast_to(trigger.values[trigger.mask], rows[:, trigger.mask].shape),
    )
    assert (a.dataset.labels[a.poison_index] == 4).all()
    assert (train.labels[a.poison_index] != 4).all()
    clean = ~a.is_poison
    assert np.array_equal(a.dataset.x[clean], train.x[clean])


def test_badnets_at_5pct_plants_a_working_backdoor(digits) -> None:
    train, test = digits
    poisoned = badnets(train, 0.05, 0, patch_trigger((1, 8, 8), size=3), 10, seed=0)
    result = evaluate(poisoned, surrogate, test, seed=0)
    assert result.attack_success >= 0.9
    assert result.clean_accuracy >= 0.9
    clean = evaluate(
        badnets(train, 0.0, 0, patch_trigger((1, 8, 8)), 10, seed=0), surrogate, test, 0
    )
    assert clean.attack_success < 0.3  # the trigger alone does not cause the target label


def test_tabular_backdoor_on_cancer() -> None:
    train, test = entry("cancer-logreg").load_data()
    trigger = feature_trigger((30,), {0: float(train.x[:, 0].max()), 1: float(train.x[:, 1].max())})
    poisoned = badnets(train, 0.05, 1, trigger, 2, seed=0)

    def trainer(ds: Dataset, seed: int) -> object:
        return train_surrogate(ds, seed, n_classes=2, epochs=30)

    assert evaluate(poisoned, trainer, test, seed=0).attack_success >= 0.8


def test_feature_collision_keeps_clean_labels_and_moves_features(digits) -> None:
    import torch

    train, test = digits
    victim = surrogate(train, 0)
    targets = test.x[test.labels == 3][:2]
    poisoned = feature_collision(victim, train, targets, 0.01, 8, seed=0, steps=60)
    assert np.array_equal(poisoned.dataset.labels, train.labels)  # clean-label
    assert (train.labels[poisoned.poison_index] == 8).all()
    x = poisoned.dataset.x[poisoned.poison_index]
    assert x.min() >= 0.0 and x.max() <= 1.0
    with torch.no_grad():
        goal = feature_tensor(victim, torch.as_tensor(targets))
        before = feature_tensor(victim, torch.as_tensor(train.x[poisoned.poison_index]))
        after = feature_tensor(victim, torch.as_tensor(x))
    owner = np.arange(len(x)) % len(targets)
    assert ((after - goal[owner]).norm(dim=1) < (before - goal[owner]).norm(dim=1)).all()


@pytest.mark.slow
def test_badnets_at_5pct_on_digits_cnn_with_its_own_trainer(digits) -> None:
    train, test = digits
    poisoned = badnets(train, 0.05, 0, patch_trigger((1, 8, 8), size=3), 10, seed=0)
    result = evaluate(poisoned, entry("digits-cnn").train, test, seed=0)
    assert result.attack_success >= 0.9
