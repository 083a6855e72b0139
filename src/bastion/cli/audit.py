"""`bastion audit`: verify the tamper-evident log, prove inclusion and consistency, export it."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

if TYPE_CHECKING:
    from bastion.audit import AuditLog

audit_app = typer.Typer(
    name="audit",
    help="Verify the gateway's tamper-evident audit log, prove entries, export it.",
    no_args_is_help=True,
)

STATE_DIR = typer.Option(
    None, "--state-dir", help="State directory (default: BASTION_HOME or the platform's)."
)
STORE = typer.Option(
    None,
    "--store",
    envvar="BASTION_AUDIT__URL",
    help="SQLite path or postgresql+psycopg:// URL (default: <state dir>/audit.sqlite3).",
)


def register(app: typer.Typer) -> None:
    app.add_typer(audit_app)


def _open(state_dir: Path | None, store: str | None) -> AuditLog:
    """Open an existing log: never create an empty one or a new key by accident."""
    from bastion.audit import open_log
    from bastion.audit.checkpoint import KEY_FILE
    from bastion.audit.log import DEFAULT_FILE
    from bastion.core.errors import InputError
    from bastion.core.paths import data_dir

    state = data_dir(state_dir)
    if not (state / KEY_FILE).exists():
        raise InputError(
            f"no audit signing key in {state}",
            fix="pass the gateway's --state-dir (or set BASTION_HOME)",
        )
    file = state / DEFAULT_FILE if store is None else None if "://" in store else Path(store)
    if file is not None and not file.exists():
        raise InputError(f"no audit log at {file}", fix="pass --state-dir or --store")
    return open_log(store, state_dir=state)


def _print_json(data: dict[str, Any]) -> None:
    typer.echo(json.dumps(data, indent=2))


@audit_app.command("verify")
def verify_command(
    state_dir: Path | None = STATE_DIR,
    store: str | None = STORE,
    checkpoint: Path | None = typer.Option(
        None, "--checkpoint", help="A checkpoint kept elsewhere; the log must still contain it."
    ),
) -> None:
    """Recompute every leaf and the Merkle tree; check them against every signed checkpoint."""
    from bastion.audit import SignedCheckpoint

    trusted = SignedCheckpoint.load(checkpoint) if checkpoint else None
    log = _open(state_dir, store)
    try:
        result = log.verify(trusted)
    finally:
        log.close()
    if not result.ok:
        for message in result.messages()[1:]:
            typer.echo(f"  also: {message}", err=True)
        result.raise_if_bad()
    latest = result.latest_checkpoint
    signed = (
        f"signed checkpoint at size {latest.tree_size}" if latest else "no checkpoint (empty log)"
    )
    typer.echo(
        f"ok: {result.tree_size} leaves, root {result.root_hash.hex()}, {signed}, "
        f"{result.checkpoints_checked} checkpoints checked, "
        f"{result.unsigned_leaves} leaves after the latest"
    )


@audit_app.command("prove")
def prove_command(
    index: int = typer.Argument(..., help="Leaf index to prove."),
    size: int | None = typer.Option(
        None, "--size", help="Prove against the checkpoint of this size (default: the latest)."
    ),
    state_dir: Path | None = STATE_DIR,
    store: str | None = STORE,
) -> None:
    """Print the record at INDEX and its RFC 6962 inclusion proof against a signed checkpoint."""
    from bastion.audit import AuditTampered, canonical_json, leaf_hash
    from bastion.core.errors import UsageError

    log = _open(state_dir, store)
    try:
        current = log.size()
        if not 0 <= index < current:
            raise UsageError(
                f"leaf {index} is not in the log ({current} leaves)", fix="pick a smaller index"
            )
        covering = [c for c in log.checkpoints() if index < c.tree_size]
        if size is not None:
            covering = [c for c in covering if c.tree_size == size]
            if not covering:
                raise UsageError(
                    f"no checkpoint of size {size} covers leaf {index}",
                    fix="omit --size to use the latest checkpoint",
                )
        latest = max(covering, key=lambda c: (c.tree_size, c.timestamp_ms), default=None)
        checkpoint = latest if latest is not None else log.checkpoint()
        proof = log.inclusion_proof(index, checkpoint.tree_size)
        record = log.record(index)
    finally:
        log.close()
    if leaf_hash(canonical_json(record)) != proof.leaf_hash or not proof.verify():
        raise AuditTampered(
            f"leaf {index}: the stored proof does not verify", first_bad_index=index
        )
    if checkpoint.root_hash != proof.root_hash:
        raise AuditTampered(
            f"the tree of {proof.tree_size} leaves does not match its signed checkpoint",
            fix="run `bastion audit verify`",
        )
    _print_json({"record": record, "proof": proof.to_dict(), "checkpoint": checkpoint.to_dict()})


@audit_app.command("consistency")
def consistency_command(
    old_size: int = typer.Argument(..., help="Size of the older tree."),
    new_size: int = typer.Argument(..., help="Size of the newer tree."),
    state_dir: Path | None = STATE_DIR,
    store: str | None = STORE,
) -> None:
    """Print the RFC 6962 proof that the tree of OLD_SIZE leaves is a prefix of NEW_SIZE."""
    from bastion.audit import AuditTampered

    log = _open(state_dir, store)
    try:
        proof = log.consistency_proof(old_size, new_size)
        cps = log.checkpoints()
    finally:
        log.close()
    if not proof.verify():
        raise AuditTampered(f"the consistency proof {old_size} -> {new_size} does not verify")
    signed: dict[str, Any] = {}
    for label, n, root in (("old", old_size, proof.old_root), ("new", new_size, proof.new_root)):
        matching = [c for c in cps if c.tree_size == n]
        if any(c.root_hash != root for c in matching):
            raise AuditTampered(
                f"the tree of {n} leaves does not match its signed checkpoint",
                first_bad_index=0,
                fix="run `bastion audit verify`",
            )
        signed[label] = matching[-1].to_dict() if matching else None
    _print_json({"proof": proof.to_dict(), "checkpoints": signed})


@audit_app.command("export")
def export_command(
    out: Path | None = typer.Option(None, "--out", help="Write JSON Lines here (default: stdout)."),
    state_dir: Path | None = STATE_DIR,
    store: str | None = STORE,
) -> None:
    """Write every leaf as one JSON line: {index, leaf_hash, record}."""
    log = _open(state_dir, store)
    try:
        if out is not None:
            count = log.export_jsonl(out)
            typer.echo(f"wrote {count} records to {out}", err=True)
            return
        from bastion.audit.log import jsonl_lines

        for line in jsonl_lines(log):
            sys.stdout.write(line)
        sys.stdout.flush()
    finally:
        log.close()


@audit_app.command("checkpoint")
def checkpoint_command(
    out: Path | None = typer.Option(
        None, "--out", help="Also write the checkpoint JSON to this file."
    ),
    state_dir: Path | None = STATE_DIR,
    store: str | None = STORE,
) -> None:
    """Sign the current tree head and print it; keep a copy elsewhere for `verify --checkpoint`."""
    from bastion.core.fs import write_bytes_atomic

    log = _open(state_dir, store)
    try:
        checkpoint = log.checkpoint()
    finally:
        log.close()
    text = json.dumps(checkpoint.to_dict(), indent=2)
    if out is not None:
        write_bytes_atomic(out, (text + "\n").encode())
    typer.echo(text)
