"""`bastion harden`: train a more robust copy of a model (adversarial training; more to come)."""

from __future__ import annotations

from pathlib import Path

import typer

harden_app = typer.Typer(
    name="harden",
    help="Write a hardened copy of a model, with a before/after comparison.",
    no_args_is_help=True,
)


def register(app: typer.Typer) -> None:
    app.add_typer(harden_app, name="harden")


@harden_app.command("adversarial")
def adversarial_command(
    model: str = typer.Argument(..., help="builtin:NAME or a .safetensors torch model."),
    epsilon: float = typer.Option(
        ..., "--epsilon", help="L-inf (or L2) radius to resist, in input units."
    ),
    out: Path = typer.Option(
        ..., "--out", help="Where to write the hardened model (.safetensors)."
    ),
    method: str = typer.Option("pgd", "--method", help="pgd (Madry) or trades."),
    norm: str = typer.Option("linf", "--norm", help="linf or l2."),
    epochs: int = typer.Option(30, "--epochs", help="Training epochs."),
    steps: int = typer.Option(10, "--steps", help="Inner attack steps per batch."),
    train_data: Path | None = typer.Option(
        None, "--train-data", help="Labelled training data (.npz/.csv)."
    ),
    data: Path | None = typer.Option(
        None, "--data", help="Labelled held-out data for the comparison."
    ),
    seed: int = typer.Option(0, "--seed", help="Seed for every randomized step."),
) -> None:
    """Adversarially train MODEL against EPSILON perturbations and write it to OUT."""
    from rich.table import Table

    from bastion.assess.target import resolve
    from bastion.attacks.evasion.worstcase import Suite, worst_case
    from bastion.cli.common import err
    from bastion.cli.common import out as console
    from bastion.core.errors import UsageError
    from bastion.core.loading import save_model
    from bastion.core.model import is_differentiable
    from bastion.defenses.adversarial import TrainingConfig, accuracy, adversarial_train

    if out.suffix != ".safetensors":
        raise UsageError(
            f"--out {out} must end in .safetensors", fix="name the output MODEL.safetensors"
        )
    target, assessment = resolve(model, data, train_data)
    if not is_differentiable(target):
        raise UsageError(
            "adversarial training needs a torch model (gradients)",
            fix="pass builtin:digits-cnn / digits-mlp or a Bastion .safetensors model",
        )
    train = assessment.train
    if train is None:
        raise UsageError("no training data for this model", fix="pass --train-data FILE")
    test = assessment.test
    config = TrainingConfig(method=method, epochs=epochs, steps=steps)  # type: ignore[arg-type]
    err.print(
        f"Adversarial training ({method}, {norm} epsilon {epsilon:g}, {epochs} epochs) of {model}"
    )
    hardened = adversarial_train(
        target, train, epsilon=epsilon, norm=norm, config=config, seed=seed
    )
    save_model(hardened, out)
    suite = Suite.for_budget("quick")
    before = worst_case(
        target, test.x, test.labels, epsilons=[epsilon], norm=norm, suite=suite, seed=seed
    )
    after = worst_case(
        hardened, test.x, test.labels, epsilons=[epsilon], norm=norm, suite=suite, seed=seed
    )
    table = Table(title=f"Before / after on {len(test)} held-out examples")
    for column in ("metric", "before", "after"):
        table.add_column(column)
    table.add_row(
        "clean accuracy",
        f"{accuracy(target, test.x, test.labels):.1%}",
        f"{accuracy(hardened, test.x, test.labels):.1%}",
    )
    table.add_row(
        f"robust accuracy ({norm} eps {epsilon:g}, FGSM+PGD+APGD)",
        f"{before.robust_accuracy[0]:.1%}",
        f"{after.robust_accuracy[0]:.1%}",
    )
    console.print(table)
    console.print(f"Hardened model: {out.resolve()}")


@harden_app.command("dp")
def dp_command(
    model: str = typer.Argument(..., help="builtin:NAME or a .safetensors torch model."),
    out: Path = typer.Option(..., "--out", help="Where to write the private model (.safetensors)."),
    epsilon: float = typer.Option(8.0, "--epsilon", help="Privacy budget epsilon."),
    delta: float = typer.Option(1e-5, "--delta", help="Privacy budget delta."),
    epochs: int = typer.Option(30, "--epochs", help="Training epochs."),
    batch_size: int = typer.Option(512, "--batch-size", help="Expected batch size (Poisson)."),
    max_grad_norm: float = typer.Option(1.0, "--max-grad-norm", help="Per-example clip norm."),
    train_data: Path | None = typer.Option(
        None, "--train-data", help="Labelled training data (.npz/.csv)."
    ),
    data: Path | None = typer.Option(None, "--data", help="Labelled held-out data."),
    seed: int = typer.Option(0, "--seed", help="Seed for every randomized step."),
) -> None:
    """Retrain MODEL's architecture with DP-SGD (Opacus) at (EPSILON, DELTA); write it to OUT."""
    from bastion.assess.target import resolve
    from bastion.cli.common import err
    from bastion.cli.common import out as console
    from bastion.core.errors import UsageError
    from bastion.core.loading import save_model
    from bastion.defenses.adversarial import accuracy
    from bastion.defenses.dp import train_dp

    if out.suffix != ".safetensors":
        raise UsageError(
            f"--out {out} must end in .safetensors", fix="name the output MODEL.safetensors"
        )
    target, assessment = resolve(model, data, train_data)
    if assessment.train is None:
        raise UsageError("no training data for this model", fix="pass --train-data FILE")
    err.print(f"DP-SGD training of {model} at epsilon {epsilon:g}, delta {delta:g}")
    result = train_dp(
        target,
        assessment.train,
        epsilon=epsilon,
        delta=delta,
        epochs=epochs,
        batch_size=batch_size,
        max_grad_norm=max_grad_norm,
        seed=seed,
    )
    save_model(result.model, out)
    test = assessment.test
    console.print(
        f"epsilon {result.epsilon:.2f} at delta {result.delta:g} (noise multiplier "
        f"{result.noise_multiplier:.2f}); clean accuracy "
        f"{accuracy(target, test.x, test.labels):.1%} -> "
        f"{accuracy(result.model, test.x, test.labels):.1%}"
    )
    console.print(f"Private model: {out.resolve()}")
