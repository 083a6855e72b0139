"""Adversarial training (PGD, TRADES) and `bastion harden adversarial`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bastion.attacks.evasion import pgd
from bastion.attacks.evasion.worstcase import Suite, worst_case
from bastion.cli.main import main
from bastion.core.errors import UsageError
from bastion.core.loading import load_file
from bastion.defenses.adversarial import TrainingConfig, accuracy, adversarial_train
from bastion.zoo import build, entry


@pytest.fixture(scope="module")
def digits():
    train, test = entry("digits-mlp").load_data()
    return build("digits-mlp"), train, test


@pytest.mark.parametrize("method", ["pgd", "trades"])
def test_adversarial_training_raises_robust_accuracy(digits, method) -> None:
    model, train, test = digits
    cfg = TrainingConfig(method=method, epochs=4, steps=5)
    hardened = adversarial_train(model, train, epsilon=0.1, config=cfg, seed=0)
    x, y = test.x[:150], test.labels[:150]
    before = 1 - pgd(model, x, y, epsilon=0.1, steps=10).success.mean()
    after = 1 - pgd(hardened, x, y, epsilon=0.1, steps=10).success.mean()
    assert after > before + 0.1
    assert accuracy(hardened, x, y) > 0.85
    # the input model is left untouched
    assert accuracy(model, x, y) == accuracy(build("digits-mlp"), x, y)


def test_adversarial_training_is_deterministic(digits) -> None:
    model, train, test = digits
    cfg = TrainingConfig(epochs=1, steps=2)
    a = adversarial_train(model, train, epsilon=0.1, config=cfg, seed=5)
    b = adversarial_train(model, train, epsilon=0.1, config=cfg, seed=5)
    np.testing.assert_array_equal(a.predict_proba(test.x), b.predict_proba(test.x))


def test_bad_training_requests_are_refused(digits) -> None:
    model, train, _ = digits
    with pytest.raises(UsageError, match="method"):
        adversarial_train(model, train, epsilon=0.1, config=TrainingConfig(method="magic"))  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="epsilon"):
        adversarial_train(model, train, epsilon=2.0)
    logreg = build("cancer-logreg")
    ctrain, _ = entry("cancer-logreg").load_data()
    with pytest.raises(UsageError, match="gradients"):
        adversarial_train(logreg, ctrain, epsilon=0.1)


def test_harden_cli_writes_safe_model_and_compares(tmp_path: Path, bastion_home, capsys) -> None:
    out = tmp_path / "hard.safetensors"
    with pytest.raises(SystemExit) as exit_info:
        main(
            [
                "harden",
                "adversarial",
                "builtin:digits-mlp",
                "--epsilon",
                "0.1",
                "--out",
                str(out),
                "--epochs",
                "2",
                "--steps",
                "3",
            ]
        )
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert "before" in text and "after" in text and "robust accuracy" in text
    hardened = load_file(out)
    _, test = entry("digits-mlp").load_data()
    assert accuracy(hardened, test.x, test.labels) > 0.8
    assert not list(tmp_path.glob("*.partial"))


@pytest.mark.parametrize(
    "args,needle",
    [
        (["builtin:digits-mlp", "--epsilon", "0.1", "--out", "m.pkl"], ".safetensors"),
        (["builtin:cancer-logreg", "--epsilon", "0.1", "--out", "m.safetensors"], "torch model"),
        (
            ["builtin:digits-mlp", "--epsilon", "-1", "--out", "m.safetensors", "--epochs", "1"],
            "epsilon",
        ),
    ],
)
def test_harden_cli_bad_input_exits_2(
    tmp_path: Path, bastion_home, capsys, monkeypatch, args, needle
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        main(["harden", "adversarial", *args])
    assert exit_info.value.code == 2
    assert needle in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


@pytest.mark.slow
def test_adversarially_trained_digits_cnn_meets_robustness_target() -> None:
    """Issue target: worst-case robust accuracy >= 60% at L-inf 0.1 with clean >= 93%."""
    train, test = entry("digits-cnn").load_data()
    model = build("digits-cnn")
    hardened = adversarial_train(
        model, train, epsilon=0.1, config=TrainingConfig(epochs=30), seed=0
    )
    suite = Suite.for_budget("thorough")
    before = worst_case(model, test.x, test.labels, epsilons=[0.1], suite=suite)
    after = worst_case(hardened, test.x, test.labels, epsilons=[0.1], suite=suite)
    assert accuracy(hardened, test.x, test.labels) >= 0.93
    assert after.robust_accuracy[0] >= 0.60
    assert after.robust_accuracy[0] > before.robust_accuracy[0]
