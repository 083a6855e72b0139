"""`bastion llm scan FILE|-`: JSON Lines of prompts (or outputs) in, verdicts out.

Exit codes: 0 nothing flagged, 1 at least one input flagged, 2 bad input (malformed JSON,
invalid UTF-8, wrong field types, a line over the size cap). With `--output FILE` the
verdicts are written atomically, so bad input leaves no half-written file.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import IO, Any

import typer

MAX_LINE_BYTES = 16 * 1024 * 1024

llm_app = typer.Typer(
    help="LLM guard: scan prompts and outputs for injection, leaks and PII.", no_args_is_help=True
)


def register(app: typer.Typer) -> None:
    app.add_typer(llm_app, name="llm")


def _records(handle: IO[bytes], name: str) -> Any:
    """Yield (line number, record dict) from a JSON Lines byte stream, bounded per line."""
    import json

    from bastion.core.errors import InputError

    number = 0
    while True:
        raw = handle.readline(MAX_LINE_BYTES + 1)
        if not raw:
            return
        number += 1
        if len(raw) > MAX_LINE_BYTES and not raw.endswith(b"\n"):
            raise InputError(
                f"{name}:{number}: line longer than {MAX_LINE_BYTES} bytes", fix="split the input"
            )
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InputError(
                f"{name}:{number}: not valid UTF-8 (byte {exc.start}: {exc.reason})",
                fix="encode the file as UTF-8",
            ) from exc
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputError(
                f"{name}:{number}: not JSON ({exc.msg} at column {exc.colno})",
                fix='write one JSON value per line: "text" or {"text": ..., "documents": [...]}',
            ) from exc
        if isinstance(value, str):
            value = {"text": value}
        if not isinstance(value, dict) or not isinstance(value.get("text"), str):
            raise InputError(
                f'{name}:{number}: expected a string or an object with a "text" string',
                fix='write {"text": ..., "documents": [...]} or a plain JSON string',
            )
        docs = value.get("documents", [])
        if not isinstance(docs, list) or not all(isinstance(d, str) for d in docs):
            raise InputError(
                f'{name}:{number}: "documents" must be a list of strings', fix="fix that line"
            )
        yield number, value


@llm_app.command("scan")
def scan_command(
    source: str = typer.Argument(..., help="JSON Lines file, or - for standard input."),
    output: Path | None = typer.Option(
        None, "--output", "-o", help="Write verdicts here (default: stdout)."
    ),
    outputs: bool = typer.Option(
        False, "--outputs", help="Lines are model outputs: check leaks, not injection."
    ),
    canary_marker: list[str] = typer.Option(
        [], "--canary", help="Canary marker to look for (with --outputs)."
    ),
    system_prompt: Path | None = typer.Option(
        None, "--system-prompt", help="File with the system prompt (with --outputs)."
    ),
    flag_pii: bool = typer.Option(False, "--flag-pii", help="Also flag inputs that carry PII."),
    rules_only: bool = typer.Option(
        False, "--rules-only", help="Skip the learned classifier (no model needed)."
    ),
) -> None:
    """Scan JSON Lines ("text" or {"text": ..., "documents": [...]}); write verdict JSON Lines."""
    import json

    from bastion.core.errors import InputError, SecurityError
    from bastion.core.fs import atomic_file
    from bastion.llm.detector import Detector
    from bastion.llm.scan import scan_output, scan_prompt

    detector = Detector(use_model=not rules_only)
    prompt_text = None
    if system_prompt is not None:
        try:
            prompt_text = system_prompt.read_text("utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise InputError(
                f"cannot read {system_prompt}: {exc}", fix="pass a readable UTF-8 file"
            ) from exc

    def run(sink: IO[str]) -> tuple[int, int]:
        if source == "-":
            handle: IO[bytes] = sys.stdin.buffer
        else:
            try:
                handle = open(source, "rb")  # noqa: SIM115 (closed below)
            except OSError as exc:
                raise InputError(
                    f"cannot read {source}: {exc.strerror}", fix="pass an existing file or -"
                ) from exc
        flagged = total = 0
        try:
            for number, record in _records(handle, source):
                if outputs:
                    verdict = scan_output(
                        record["text"],
                        canaries=canary_marker,
                        system_prompt=prompt_text,
                        flag_pii=flag_pii,
                        check_injection=False,
                        detector=detector,
                    )
                else:
                    verdict = scan_prompt(
                        record["text"],
                        record.get("documents"),
                        detector=detector,
                        flag_pii=flag_pii,
                    )
                row = {
                    "line": number,
                    **({"id": record["id"]} if "id" in record else {}),
                    **verdict.to_dict(),
                }
                sink.write(json.dumps(row, ensure_ascii=False) + "\n")
                total += 1
                flagged += verdict.flagged
        finally:
            if handle is not sys.stdin.buffer:
                handle.close()
        return total, flagged

    if output is None:
        total, flagged = run(sys.stdout)
    else:
        with atomic_file(output, "w") as sink:
            total, flagged = run(sink)  # type: ignore[arg-type]
    typer.echo(f"{flagged} of {total} flagged", err=True)
    if flagged:
        raise SecurityError(
            f"{flagged} of {total} inputs flagged", fix="see the verdicts for reasons"
        )
