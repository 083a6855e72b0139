"""`bastion verify`: check a model's signature and every file.

A hot command (see `bastion.cli.entry`): argparse only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from bastion.cli import lean

if TYPE_CHECKING:
    import argparse

HELP = "Check the signature and every file; exit 1 listing changed, missing and extra files."


def build_parser() -> argparse.ArgumentParser:
    parser = lean.parser("verify", HELP)
    add = parser.add_argument
    add("model", metavar="MODEL", help="Model file or directory.")
    add(
        "--key",
        action="append",
        required=True,
        metavar="FILE",
        help="Trusted public key (repeatable).",
    )
    add(
        "--signature",
        metavar="FILE",
        help="Bundle to check [MODEL/model.sig or FILE.sig].",
    )
    add("--format", dest="fmt", default="text", help="text or json. [default: text]")
    return parser


def main(argv: list[str]) -> int:
    """Parse `argv` (the words after `verify`) and verify; returns the exit code."""
    opts = build_parser().parse_args(argv)
    return lean.run(lambda: _verify(opts))


def _verify(opts: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from bastion.core.errors import BastionError, UsageError
    from bastion.integrity.keys import load_public_key
    from bastion.integrity.signing import ModelMismatchError, verify_model

    if opts.fmt not in ("text", "json"):
        raise UsageError(f"unknown format {opts.fmt!r}", fix="use --format text or --format json")
    model = Path(opts.model)
    report: dict[str, Any] = {"model": str(model), "verified": False}
    try:
        keys = [load_public_key(Path(k)) for k in opts.key]
        result = verify_model(model, keys, Path(opts.signature) if opts.signature else None)
    except ModelMismatchError as exc:
        report.update(
            changed=exc.diff.changed,
            missing=exc.diff.missing,
            extra=exc.diff.extra,
            error=exc.message,
        )
        if opts.fmt == "json":
            lean.echo(json.dumps(report, indent=2))
            return exc.exit_code
        for label, names in (
            ("changed", exc.diff.changed),
            ("missing", exc.diff.missing),
            ("extra", exc.diff.extra),
        ):
            for name in names:
                lean.echo(f"{label}: {name}")
        raise
    except BastionError as exc:
        if opts.fmt != "json":
            raise
        report.update(error=exc.message, fix=exc.fix, exit_code=exc.exit_code)
        lean.echo(json.dumps(report, indent=2))
        return exc.exit_code
    files = len(result.manifest.paths())
    if opts.fmt == "json":
        report.update(
            verified=True,
            key=result.key.source,
            algorithm=result.key.algorithm,
            files=files,
            hash=result.manifest.serialization.hash_type,
            changed=[],
            missing=[],
            extra=[],
        )
        lean.echo(json.dumps(report, indent=2))
        return 0
    lean.echo(f"verified {files} files; signed with {result.key.algorithm} key {result.key.source}")
    return 0
