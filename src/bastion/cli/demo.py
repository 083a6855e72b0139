"""`bastion demo`: the main job, end to end on the built-in demo model."""

from __future__ import annotations

from pathlib import Path

import typer

DEMO_MODEL = "builtin:digits-cnn"


def register(app: typer.Typer) -> None:
    app.command("demo")(demo_command)


def demo_command(
    out: Path = typer.Option(Path("bastion-report"), "--out", help="Report directory."),
    budget: str = typer.Option("standard", "--budget", help="quick, standard or thorough."),
    seed: int = typer.Option(0, "--seed"),
) -> None:
    """Build the demo model (digits-cnn), run every check, and write the report."""
    from bastion.assess.check import Budget
    from bastion.assess.registry import all_checks
    from bastion.assess.runner import assess
    from bastion.assess.target import resolve
    from bastion.cli.assess import finish
    from bastion.cli.common import err

    model, data = resolve(DEMO_MODEL)
    _show_artifact_check(DEMO_MODEL.removeprefix("builtin:"))
    _show_llm_guard()
    err.print(f"Bastion demo: assessing {DEMO_MODEL} with every registered check")
    report = assess(
        model, data, all_checks(), spec=DEMO_MODEL, budget=Budget(budget), seed=seed, out=out
    )
    finish(report, out, None)


def _show_artifact_check(name: str) -> None:
    """Sign the demo model's file, load it through the trusted loader, catch a flipped byte."""
    import tempfile

    from rich.markup import escape

    from bastion.cli.common import err
    from bastion.integrity.walkthrough import check_artifact
    from bastion.zoo.registry import model_path

    with tempfile.TemporaryDirectory(prefix="bastion-demo-") as tmp:
        seen = check_artifact(model_path(name), Path(tmp))
    err.print(
        f"Bastion demo: signed {escape(seen.file)} ({seen.size / 1e3:.0f} kB) with a fresh "
        f"{seen.algorithm} key; the trusted loader verified it, scanned it ({seen.scan_verdict}) "
        "and loaded it with a safe loader"
    )
    err.print(f"Bastion demo: one flipped byte fails verification: {escape(seen.tamper_caught)}")


def _show_llm_guard() -> None:
    """Score a few prompts with the LLM guard and redact PII (needs the `llm` extra)."""
    from rich.markup import escape

    from bastion.cli.common import err
    from bastion.core.errors import UsageError
    from bastion.llm.walkthrough import PII_SAMPLE, guard_examples

    try:
        scored, redacted = guard_examples()
    except UsageError as exc:
        err.print(f"Bastion demo: LLM guard skipped: {escape(str(exc))}")
        return
    for item in scored:
        verdict = "flagged" if item.flagged else "passed"
        err.print(
            f"Bastion demo: LLM guard: {item.what}: {verdict} as {item.label} "
            f"(score {item.score:.2f}, threshold {item.threshold:.2f})"
        )
    err.print(
        f"Bastion demo: LLM guard: {escape(repr(PII_SAMPLE))} redacted to {escape(repr(redacted))}"
    )
