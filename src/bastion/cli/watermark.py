"""`bastion watermark embed|verify`: plant a key-derived trigger set in a model, and test for it."""

from __future__ import annotations

from pathlib import Path

import typer

watermark_app = typer.Typer(
    name="watermark",
    help="Embed an ownership watermark in a model, or verify one (black-box).",
    no_args_is_help=True,
)


def register(app: typer.Typer) -> None:
    app.add_typer(watermark_app, name="watermark")


def read_key(path: Path) -> bytes:
    """The watermark key: the raw bytes of `path` (checked for length by the library)."""
    from bastion.core.errors import InputError

    if not path.is_file():
        raise InputError(
            f"key file not found: {path}",
            fix="create one with `head -c 32 /dev/urandom > watermark.key`",
        )
    return path.read_bytes()


@watermark_app.command("embed")
def embed_command(
    model: str = typer.Argument(..., help="builtin:NAME or a .safetensors torch model."),
    key_file: Path = typer.Option(..., "--key-file", help="Secret key (>= 16 random bytes)."),
    out: Path = typer.Option(..., "--out", help="Watermarked model (.safetensors)."),
    train_data: Path | None = typer.Option(
        None, "--train-data", help="Labelled training data (built-in models bring their own)."
    ),
    data: Path | None = typer.Option(None, "--data", help="Labelled held-out data."),
    triggers: int = typer.Option(100, "--triggers", help="Size of the trigger set."),
    epochs: int = typer.Option(20, "--epochs", help="Fine-tuning epochs."),
    audit_log: str | None = typer.Option(
        None, "--audit-log", help="Audit log (path or URL) for the ownership record."
    ),
    state_dir: Path | None = typer.Option(None, "--state-dir", help="Bastion state directory."),
    seed: int = typer.Option(0, "--seed", help="Seed for fine-tuning."),
) -> None:
    """Fine-tune MODEL on its training data plus the key's trigger set; write it to OUT.

    The ownership record (salted commitment to the key + timestamp) is written next to OUT
    and appended to the audit log when one is configured (--audit-log, or the state
    directory's log), followed by a signed checkpoint.
    """
    import json

    from bastion.assess.target import resolve
    from bastion.cli.common import out as console
    from bastion.core.errors import UsageError
    from bastion.core.fs import write_bytes_atomic
    from bastion.core.loading import save_model
    from bastion.core.paths import data_dir
    from bastion.defenses.watermark import embed, ownership_record, verify

    if out.suffix != ".safetensors":
        raise UsageError(f"--out {out} must end in .safetensors", fix="name it MODEL.safetensors")
    key = read_key(key_file)
    target, assessment = resolve(model, data, train_data)
    if assessment.train is None:
        raise UsageError("no training data for this model", fix="pass --train-data FILE")
    marked = embed(target, assessment.train, key, n_triggers=triggers, epochs=epochs, seed=seed)
    save_model(marked, out)
    record = ownership_record(key, marked, triggers)
    record_path = out.with_name(out.name + ".watermark.json")
    state = data_dir(state_dir)
    if audit_log is not None or (state / "audit.sqlite3").exists():
        from bastion.audit import open_log

        with open_log(audit_log, state_dir=state_dir) as log:
            record["audit_index"] = log.append_sync(record)
            log.checkpoint()
    write_bytes_atomic(record_path, json.dumps(record, indent=2).encode())
    verdict = verify(marked, key, n_triggers=triggers)
    acc_before = _accuracy(target, assessment.test)
    acc_after = _accuracy(marked, assessment.test)
    console.print(
        f"watermarked model: {out}  trigger agreement {verdict.matches}/{verdict.n_triggers} "
        f"(p = {verdict.p_value:.2e}); clean accuracy {acc_before:.1%} -> {acc_after:.1%}"
    )
    where = f", audit log index {record['audit_index']}" if "audit_index" in record else ""
    console.print(f"ownership record: {record_path}{where}")


def _accuracy(model: object, test: object) -> float:
    from bastion.core.dataset import Dataset
    from bastion.core.model import Model, predict_labels

    assert isinstance(test, Dataset) and isinstance(model, Model)
    return float((predict_labels(model, test.x) == test.labels).mean())


@watermark_app.command("verify")
def verify_command(
    model: str = typer.Argument(..., help="builtin:NAME, a model file, or an http(s):// endpoint."),
    key_file: Path = typer.Option(..., "--key-file", help="The secret key used to embed."),
    triggers: int = typer.Option(100, "--triggers", help="Size of the trigger set."),
    alpha: float = typer.Option(1e-6, "--alpha", help="Significance level of the claim."),
    api_key: str | None = typer.Option(
        None, "--api-key", envvar="BASTION_API_KEY", help="API key for a remote endpoint."
    ),
    fmt: str = typer.Option("text", "--format", help="text or json."),
) -> None:
    """Query MODEL on the key's trigger set; exit 0 if the watermark is present, 1 if not."""
    import json

    from bastion.cli.common import out as console
    from bastion.core.errors import SecurityError, UsageError
    from bastion.core.loading import load_model
    from bastion.defenses.watermark import verify

    if fmt not in ("text", "json"):
        raise UsageError(f"unknown format {fmt!r}", fix="use text or json")
    key = read_key(key_file)
    verdict = verify(load_model(model, api_key=api_key), key, n_triggers=triggers, alpha=alpha)
    if fmt == "json":
        typer.echo(
            json.dumps(
                {
                    "verified": verdict.verified,
                    "matches": verdict.matches,
                    "n_triggers": verdict.n_triggers,
                    "chance": verdict.chance,
                    "p_value": verdict.p_value,
                    "alpha": verdict.alpha,
                }
            )
        )
    else:
        console.print(
            f"trigger agreement {verdict.matches}/{verdict.n_triggers} "
            f"(chance {verdict.chance:.3f}), binomial p = {verdict.p_value:.3e}"
        )
    if not verdict.verified:
        raise SecurityError(
            f"watermark not found: p = {verdict.p_value:.3e} >= alpha {alpha:g}",
            fix="check the key and trigger count, or the model is not yours",
        )


@watermark_app.command("verify-clone")
def verify_clone_command(
    model: str = typer.Argument(..., help="The suspected copy: builtin:NAME, a file or an URL."),
    pairs: Path = typer.Option(..., "--pairs", help="The gateway's DAWN pairs file."),
    served_as: str | None = typer.Option(
        None, "--served-as", help="Only pairs recorded for this served model name."
    ),
    log2_alpha: float = typer.Option(-40.0, "--log2-alpha", help="Claim when p <= 2^this."),
    api_key: str | None = typer.Option(
        None, "--api-key", envvar="BASTION_API_KEY", help="API key for a remote endpoint."
    ),
    fmt: str = typer.Option("text", "--format", help="text or json."),
) -> None:
    """Test a suspected clone against the DAWN pairs the gateway recorded; exit 0 when it is
    proven to be extracted from our answers (p <= 2^LOG2_ALPHA), 1 when not."""
    import json

    from bastion.cli.common import out as console
    from bastion.core.errors import SecurityError, UsageError
    from bastion.core.loading import load_model
    from bastion.defenses.dawn import read_pairs, verify_clone

    if fmt not in ("text", "json"):
        raise UsageError(f"unknown format {fmt!r}", fix="use text or json")
    suspect = load_model(model, api_key=api_key)
    verdict = verify_clone(suspect, read_pairs(pairs, suspect.input_shape, served_as))
    proven = verdict.proven(log2_alpha)
    if fmt == "json":
        typer.echo(
            json.dumps(
                {
                    "proven": proven,
                    "pairs": verdict.pairs,
                    "matches": verdict.matches,
                    "controls": verdict.controls,
                    "control_disagreements": verdict.disagreements,
                    "chance": verdict.chance,
                    "log2_p_value": verdict.log2_p_value,
                }
            )
        )
    else:
        console.print(
            f"watermark agreement {verdict.matches}/{verdict.pairs}, disagreement on controls "
            f"{verdict.disagreements}/{verdict.controls}, p = 2^{verdict.log2_p_value:.1f}"
        )
    if not proven:
        raise SecurityError(
            f"not proven: p = 2^{verdict.log2_p_value:.1f} > 2^{log2_alpha:g}",
            fix="record more traffic, or the model was not extracted from this gateway",
        )
