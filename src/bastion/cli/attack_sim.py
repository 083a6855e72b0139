"""`bastion attack-sim`: benign clients and attackers against a local gateway, per defence setup."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    app.command("attack-sim")(attack_sim_command)


def attack_sim_command(
    model: str = typer.Option("digits-cnn", "--model", help="A zoo model (see `bastion zoo`)."),
    configs: str = typer.Option(
        "undefended,detect-only,recommended", "--configs", help="Comma-separated configurations."
    ),
    benign: int = typer.Option(50, "--benign", min=0, max=1000, help="Benign clients."),
    benign_queries: int = typer.Option(100, "--benign-queries", min=1, help="Queries per client."),
    budget: int = typer.Option(2000, "--budget", min=10, help="Extraction queries per attacker."),
    strategies: str = typer.Option(
        "random,natural,jacobian,knockoff", "--strategies", help="Extraction strategies."
    ),
    evasion: str = typer.Option("square,hopskipjump", "--evasion", help="Evasion attacks."),
    dawn_budget: int = typer.Option(
        0,
        "--dawn-budget",
        min=0,
        help="Queries of a DAWN clone under watermark-only (0: none); tested with verify-clone.",
    ),
    dawn_independent: int = typer.Option(
        10, "--dawn-independent", min=0, help="Independently trained models tested too."
    ),
    out: Path | None = typer.Option(None, "--out", help="Write the JSON report here."),
    seed: int = typer.Option(0, "--seed", help="Seed for clients and attackers."),
) -> None:
    """Start the gateway on 127.0.0.1 under each configuration, replay benign traffic and run
    every attacker over HTTP; report queries until flagged, benign clients flagged, clone
    fidelity, evasion success and benign accuracy."""
    import json

    from bastion.cli.common import out as console
    from bastion.core.fs import write_bytes_atomic
    from bastion.gateway.simulate import SimSettings, simulate

    def split(text: str) -> tuple[str, ...]:
        return tuple(p.strip() for p in text.split(",") if p.strip())

    settings = SimSettings(
        model=model,
        configs=split(configs),
        benign=benign,
        benign_queries=benign_queries,
        budget=budget,
        strategies=split(strategies),
        evasion=split(evasion),
        dawn_budget=dawn_budget,
        dawn_independent=dawn_independent,
        seed=seed,
    )
    report = simulate(settings, progress=lambda msg: console.print(f"[dim]{msg}[/dim]"))
    for cfg in report["configs"]:
        console.print(
            f"[bold]{cfg['config']}[/bold]: benign accuracy {cfg['benign_accuracy']:.3f}, "
            f"benign flagged {cfg['benign_flagged']}/{benign}"
        )
        for name, row in {**cfg["extraction"], **cfg["evasion"]}.items():
            metric = (
                f"fidelity {row['fidelity']:.3f}"
                if "fidelity" in row
                else (f"success {row['success']:.2f}")
            )
            console.print(f"  {name:12s} flagged at {row['flagged_at']!s:>6}  {metric}")
        if cfg["dawn"].get("pairs"):
            dawn = cfg["dawn"]
            console.print(
                f"  DAWN clone p = 2^{dawn['clone_log2_p_value']:.1f}; best of "
                f"{len(dawn['independent'])} independent models "
                f"p = 2^{dawn['independent_best_log2_p_value']:.1f}"
            )
    if out is not None:
        write_bytes_atomic(out, json.dumps(report, indent=2).encode())
        console.print(f"report: {out}")
