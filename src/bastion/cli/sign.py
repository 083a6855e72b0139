"""`bastion sign`: hash every file of a model and sign the manifest.

A hot command (see `bastion.cli.entry`): argparse only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from bastion.cli import lean
from bastion.cli.passphrase import FILE_HELP

if TYPE_CHECKING:
    import argparse

HELP = "Hash every file of a model and sign the manifest (OpenSSF model-signing layout)."


def build_parser() -> argparse.ArgumentParser:
    parser = lean.parser("sign", HELP)
    add = parser.add_argument
    add("model", metavar="MODEL", help="Model file or directory.")
    add("--key", required=True, metavar="FILE", help="Private signing key (PEM).")
    add(
        "--signature",
        metavar="FILE",
        help="Where to write the bundle [MODEL/model.sig or FILE.sig].",
    )
    add(
        "--ignore",
        action="append",
        default=[],
        metavar="GLOB",
        help="Leave out files matching this glob (repeatable).",
    )
    add(
        "--hash",
        dest="hash_type",
        default="sha256",
        help="sha256 (sharded) or blake3. [default: sha256]",
    )
    add(
        "--shard-size",
        type=int,
        metavar="BYTES",
        help="SHA-256 shard size in bytes; 0 = whole files (model_signing CLI layout).",
    )
    add("--passphrase-file", metavar="FILE", help=FILE_HELP)
    return parser


def main(argv: list[str]) -> int:
    """Parse `argv` (the words after `sign`) and sign; returns the exit code."""
    opts = build_parser().parse_args(argv)
    return lean.run(lambda: _sign(opts))


def _sign(opts: argparse.Namespace) -> int:
    from pathlib import Path

    from bastion.cli.passphrase import private_key
    from bastion.integrity.signing import sign_model

    passfile = Path(opts.passphrase_file) if opts.passphrase_file else None
    result = sign_model(
        Path(opts.model),
        private_key(Path(opts.key), passfile),
        Path(opts.signature) if opts.signature else None,
        opts.ignore,
        opts.hash_type,
        opts.shard_size,
    )
    files = len(result.manifest.files or ())
    lean.echo(f"signed {files} files with {result.algorithm}: {result.signature}")
    return 0
