"""`bastion sanitize`: find poisoned rows in a training set and write the cleaned set."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    app.command("sanitize")(sanitize_command)


def sanitize_command(
    data: Path = typer.Argument(..., help="Labelled training data (.npz with x, y, or .csv)."),
    model: str | None = typer.Option(
        None, "--model", help="A torch model trained on DATA (needed by spectral / activation)."
    ),
    method: str = typer.Option("activation", "--method", help="activation, spectral or knn."),
    expected_rate: float = typer.Option(
        0.1, "--expected-rate", help="spectral: upper bound on the poisoned share of a class."
    ),
    out: Path | None = typer.Option(
        None, "--out", help="Write the cleaned data set here (.npz; default DATA.clean.npz)."
    ),
    report: Path | None = typer.Option(
        None, "--report", help="Write suspect indices and scores as JSON here."
    ),
    seed: int = typer.Option(0, "--seed", help="Seed for clustering."),
) -> None:
    """Flag suspect rows of DATA; exit 1 when any are found (the cleaned set is written anyway)."""
    import io
    import json

    import numpy as np

    from bastion.cli.common import out as console
    from bastion.core.dataset import Dataset, load_dataset
    from bastion.core.errors import DataError, SecurityError
    from bastion.core.fs import write_bytes_atomic
    from bastion.core.loading import load_model
    from bastion.core.model import check_inputs
    from bastion.defenses.sanitize import sanitize

    dataset = load_dataset(data)
    if dataset.y is None:
        raise DataError(
            f"{data} has no labels", fix="include labels (y= in .npz, a 'label' column in .csv)"
        )
    target = load_model(model) if model else None
    if target is not None:
        x = dataset.x
        if x.ndim == 2 and len(target.input_shape) > 1:
            x = x.reshape((len(x), *target.input_shape))
        dataset = Dataset(check_inputs(target, x), dataset.y, dataset.feature_names)
    result = sanitize(method, dataset, target, expected_rate=expected_rate, seed=seed)
    cleaned_path = out or data.with_name(data.stem + ".clean.npz")
    buffer = io.BytesIO()
    np.savez(buffer, x=result.cleaned.x, y=result.cleaned.labels)
    write_bytes_atomic(cleaned_path, buffer.getvalue())
    if report is not None:
        body = {
            "method": result.method,
            "n_rows": len(dataset),
            "suspects": [
                {"index": int(i), "score": float(result.scores[i])} for i in result.suspect_index
            ],
        }
        write_bytes_atomic(report, json.dumps(body, indent=2).encode())
    console.print(
        f"{result.method}: {len(result.suspect_index)} of {len(dataset)} rows suspect; "
        f"cleaned data: {cleaned_path}"
    )
    if len(result.suspect_index):
        raise SecurityError(
            f"{len(result.suspect_index)} suspect rows found by {result.method}",
            fix=f"train on {cleaned_path} and review the suspects",
        )
