"""Run checks against a model with progress bars, and write the report atomically."""

from __future__ import annotations

import time
import traceback
from datetime import UTC, datetime
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn

from bastion import __version__
from bastion.assess.check import AssessmentData, Budget, Check
from bastion.assess.report import CheckResult, Report, write
from bastion.core.errors import BastionError, ModelOutputError
from bastion.core.fs import atomic_directory
from bastion.core.model import Model, is_differentiable


def assess(
    model: Model,
    data: AssessmentData,
    checks: list[Check],
    *,
    spec: str,
    budget: Budget = Budget.STANDARD,
    seed: int = 0,
    out: Path | None = None,
    console: Console | None = None,
) -> Report:
    """Run every applicable check; write the report to `out` (atomically) when given."""
    console = console or Console(stderr=True)
    started = time.perf_counter()
    results: list[CheckResult] = []
    columns = (
        TextColumn("{task.description:<28}"),
        BarColumn(),
        TaskProgressColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, transient=False) as bar:
        for check in checks:
            task = bar.add_task(check.title, total=1.0)
            results.append(
                _run_one(
                    check, model, data, budget, seed, lambda f, t=task: bar.update(t, completed=f)
                )
            )
            bar.update(task, completed=1.0)
    report = Report(
        model={
            "spec": spec,
            "n_classes": model.n_classes,
            "input_shape": list(model.input_shape),
            "input_bounds": list(model.input_bounds) if model.input_bounds else None,
            "white_box": is_differentiable(model),
        },
        budget=budget.value,
        seed=seed,
        created=datetime.now(UTC).isoformat(timespec="seconds"),
        duration_seconds=time.perf_counter() - started,
        results=results,
        bastion_version=__version__,
    )
    if out is not None:
        with atomic_directory(out) as tmp:
            write(report, tmp)
    return report


def _run_one(
    check: Check, model: Model, data: AssessmentData, budget: Budget, seed: int, progress: object
) -> CheckResult:
    start = time.perf_counter()
    if not check.applies_to(model, data):
        return CheckResult(
            check.name, check.title, "skipped", note="does not apply to this model or data"
        )
    try:
        findings = check.run(model, data, budget, seed, progress)  # type: ignore[arg-type]
    except ModelOutputError:
        raise  # the model itself is broken: no check can say anything meaningful
    except BastionError as exc:  # e.g. too little data for this check: the others still run
        note = exc.message + (f" (fix: {exc.fix})" if exc.fix else "")
        return CheckResult(
            check.name, check.title, "error", note=note, seconds=time.perf_counter() - start
        )
    except Exception as exc:  # a broken check must not lose the other checks' results
        note = f"{type(exc).__name__}: {exc}"
        traceback.print_exc()
        return CheckResult(
            check.name, check.title, "error", note=note, seconds=time.perf_counter() - start
        )
    return CheckResult(check.name, check.title, "ok", findings, seconds=time.perf_counter() - start)
