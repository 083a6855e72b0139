"""`extraction-defence`: the offline version of `bastion attack-sim`.

The gateway's detectors are fitted on the training inputs; benign clients replay test data and
one attacker per extraction strategy queries the model through the same detectors (the
`Watched` wrapper), served a decoy once flagged, as the recommended gateway configuration does.
Reports after how many queries each strategy was flagged, how many benign clients were, and
the fidelity the attacker's clone reached.
"""

from __future__ import annotations

import math

import numpy as np

from bastion.assess.check import AssessmentData, Budget, ProgressFn
from bastion.core.finding import Finding, Severity
from bastion.core.model import Model

FLAG_WITHIN = 500


class ExtractionDefenceCheck:
    """Would the gateway's detectors catch extraction before it succeeds?"""

    name = "extraction-defence"
    title = "Extraction detection at the gateway"

    def applies_to(self, model: Model, data: AssessmentData) -> bool:
        return data.train is not None and len(data.train.x) >= 50 and model.n_classes >= 2

    def run(
        self, model: Model, data: AssessmentData, budget: Budget, seed: int, progress: ProgressFn
    ) -> list[Finding]:
        from bastion.attacks.clone import one_torch_thread

        with one_torch_thread():  # small models: more threads only contend
            return self._run(model, data, budget, seed, progress)

    def _run(
        self, model: Model, data: AssessmentData, budget: Budget, seed: int, progress: ProgressFn
    ) -> list[Finding]:
        from bastion.attacks.clone import CloneSettings
        from bastion.attacks.extraction import STRATEGIES, extract, fidelity
        from bastion.defenses.moving_target import Decoy
        from bastion.monitor.monitor import fit_monitor
        from bastion.monitor.offline import Watched

        assert data.train is not None
        queries = budget.pick(300, 500, 2000)
        clients = budget.pick(10, 10, 50)
        rng = np.random.default_rng(seed)
        monitor = fit_monitor(model, data.train.x, seed=seed, streams=budget.pick(4, 5, 20))
        progress(0.2)
        test_x = data.test.x
        flagged_benign = 0
        for i in range(clients):
            client = Watched(model, monitor, key=f"benign-{i}")
            rows = rng.permutation(len(test_x))[: min(100, len(test_x))]
            for start in range(0, len(rows), 8):
                client.predict_proba(test_x[rows[start : start + 8]])
            flagged_benign += bool(client.flagged_at)
        progress(0.3)
        attacker_x = data.train.x[rng.permutation(len(data.train.x))[:100]]
        decoy = Decoy(model, seed.to_bytes(8, "big") + b"extraction-defence")
        findings = []
        settings = CloneSettings(epochs=5, max_steps=60)
        for n, strategy in enumerate(STRATEGIES):
            attacker = Watched(model, monitor, key=f"attacker-{strategy}", on_flag=decoy)
            result = extract(
                attacker,
                attacker_x,
                None,  # only the attack's queries reach the watched API; fidelity is offline
                strategy=strategy,
                budget=queries,
                seed=seed,
                rounds=2,
                settings=settings,
            )
            fid = fidelity(model, result.clone, test_x)
            findings.append(
                strategy_finding(
                    strategy,
                    attacker.first_flag,
                    queries,
                    attacker.queries,
                    attacker.flagged_at,
                    fid,
                )
            )
            progress(0.3 + 0.7 * (n + 1) / len(STRATEGIES))
        rate = flagged_benign / clients
        findings.append(
            Finding(
                id="extraction-defence.benign",
                check=self.name,
                title=f"{flagged_benign} of {clients} benign clients flagged",
                severity=Severity.MEDIUM if rate > 0.02 else Severity.INFO,
                metric="benign_flag_rate",
                value=rate,
                threshold=0.02,
                evidence={"clients": clients, "queries_each": min(100, len(test_x))},
                recommendation="Raise detector thresholds if benign clients are flagged.",
                headline=True,
            )
        )
        return findings


def strategy_finding(
    strategy: str,
    at: int | None,
    queries: int,
    sent: int,
    detectors: dict[str, int],
    fid: float,
) -> Finding:
    """How soon one extraction strategy was flagged; `at=None` means never within the budget
    `queries` (value inf, which the report writes as null: no query count is invented). `sent`
    is how many rows reached the watched API (the attack's queries only)."""
    flagged = f"after {at} queries" if at is not None else f"never flagged within {queries} queries"
    return Finding(
        id=f"extraction-defence.{strategy}",
        check=ExtractionDefenceCheck.name,
        title=f"{strategy} extraction flagged {flagged}"
        if at is not None
        else f"{strategy} extraction {flagged}",
        severity=Severity.HIGH
        if at is None
        else Severity.MEDIUM
        if at > FLAG_WITHIN
        else Severity.INFO,
        metric="queries_until_flagged",
        value=float(at) if at is not None else math.inf,
        threshold=float(FLAG_WITHIN),
        evidence={
            "detectors": detectors,
            "budget": queries,
            "queries_sent": sent,
            "flagged": flagged,
            "clone_fidelity_with_decoy": fid,
        },
        recommendation=(
            "Serve with the detect, defend_route and enforce stages "
            "(docs/serving-defences.md); flagged keys then get the decoy."
        ),
    )


CHECK = ExtractionDefenceCheck()
