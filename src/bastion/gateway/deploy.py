"""Served models and deployment control: registered versions, blue-green and canary weights.

Each model has variants (versions) with traffic weights. The state lives in the shared
store so a restart, or another replica, sees the same deployment; replicas re-read it
every `deploy.refresh_seconds`.
"""

from __future__ import annotations

import hashlib
import math
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, insert, select, update

from bastion.core.errors import BastionError
from bastion.core.model import Model
from bastion.gateway.chain import Rejected
from bastion.gateway.config import DeployConfig, ModelEntry
from bastion.gateway.keystore import StoreUnavailable, _Guarded
from bastion.gateway.store import deployments


@dataclass
class Variant:
    """One loaded version of a model."""

    name: str
    model: Model
    spec: str
    digest: str
    signed: bool
    signature: str | None = None


@dataclass
class Deployment:
    """A model as clients see it: its tenant, variants and traffic weights."""

    name: str
    tenant: str
    variants: dict[str, Variant] = field(default_factory=dict)
    weights: dict[str, float] = field(default_factory=dict)

    @property
    def signature(self) -> Model:
        """Any variant: all variants of a deployment share input shape and classes."""
        return next(iter(self.variants.values())).model

    def choose(self, rng: random.Random) -> Variant:
        names = [n for n, w in self.weights.items() if w > 0 and n in self.variants]
        if not names:
            raise Rejected(
                503, "no_active_variant", f"model {self.name!r} has no variant receiving traffic"
            )
        if len(names) == 1:
            return self.variants[names[0]]
        chosen = rng.choices(names, weights=[self.weights[n] for n in names])[0]
        return self.variants[chosen]

    def public(self) -> dict[str, Any]:
        return {
            "model": self.name,
            "tenant": self.tenant,
            "variants": [
                {
                    "variant": v.name,
                    "digest": v.digest,
                    "signed": v.signed,
                    "weight": self.weights.get(v.name, 0.0),
                }
                for v in self.variants.values()
            ],
        }


def spec_digest(spec: str) -> str:
    """SHA-256 of the model file, or of the spec text for built-in models."""
    path = Path(spec)
    if path.is_file():
        h = hashlib.sha256()
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                h.update(block)
        return h.hexdigest()
    return hashlib.sha256(spec.encode()).hexdigest()


def load_variant_model(
    spec: str, config: DeployConfig, signature: str | None = None
) -> tuple[Model, bool]:
    """Load through the trusted loader; verify the signature when trusted keys are configured."""
    from bastion.core.loading import load_model

    if config.trusted_keys:
        keys = [str(k) for k in config.trusted_keys]
        return load_model(spec, trusted_keys=keys, signature=signature), True
    return load_model(spec), False


class Deployments:
    """The gateway's models, persisted in the store and refreshed from it."""

    def __init__(self, engine: Engine, config: DeployConfig, models_root: Path) -> None:
        self.engine = engine
        self.config = config
        self.models_root = models_root
        self.models: dict[str, Deployment] = {}
        self.rng = random.Random()
        self._refreshed = 0.0

    def bootstrap(self, entries: list[ModelEntry]) -> None:
        """Serve the configured models; keep any deployment state the store already holds."""
        for entry in entries:
            model, signed = load_variant_model(entry.spec, self.config)
            variant = Variant(entry.variant, model, entry.spec, spec_digest(entry.spec), signed)
            self.models[entry.name] = Deployment(
                entry.name, entry.tenant, {variant.name: variant}, {variant.name: 1.0}
            )
            try:
                with _Guarded(self.engine, begin=True) as conn:
                    known = conn.execute(
                        select(deployments.c.variant).where(deployments.c.model == entry.name)
                    ).first()
                    if known is None:
                        conn.execute(
                            insert(deployments).values(
                                **_row(entry.name, entry.tenant, variant, 1.0, "config")
                            )
                        )
            except StoreUnavailable:
                continue
        self.refresh(force=True)

    def get(self, name: str) -> Deployment | None:
        self.refresh()
        return self.models.get(name)

    def refresh(self, force: bool = False) -> None:
        """Re-read variants and weights from the store (other replicas may have changed them)."""
        now = time.monotonic()
        if not force and now - self._refreshed < self.config.refresh_seconds:
            return
        self._refreshed = now
        try:
            with _Guarded(self.engine, begin=False) as conn:
                rows = [dict(r._mapping) for r in conn.execute(select(deployments))]
        except StoreUnavailable:
            return  # keep serving the last known deployment
        for row in rows:
            dep = self.models.setdefault(row["model"], Deployment(row["model"], row["tenant"]))
            if row["variant"] not in dep.variants:
                try:
                    if row["registered_by"] != "config":  # stored before models_root existed?
                        confine_spec(row["spec"], self.models_root)
                    model, signed = load_variant_model(row["spec"], self.config, row["signature"])
                except (BastionError, Rejected, OSError):
                    continue
                dep.variants[row["variant"]] = Variant(
                    row["variant"], model, row["spec"], row["digest"], signed
                )
            weight = row["weight"]
            finite = math.isfinite(weight) and weight >= 0
            dep.weights[row["variant"]] = weight if finite else 0.0

    def prepare_version(
        self, name: str, variant: str, spec: str, tenant: str, signature: str | None = None
    ) -> Variant:
        """Load and verify a version from the models root; nothing is stored yet."""
        self.refresh(force=True)
        dep = self.models.get(name)
        if dep is not None and dep.tenant != tenant:
            raise Rejected(404, "model_not_found", f"no model named {name!r}")
        if dep is not None and variant in dep.variants:
            raise Rejected(
                409, "variant_exists", f"model {name!r} already has a variant {variant!r}"
            )
        path = confine_spec(spec, self.models_root)
        if signature is not None:  # a signature bundle is a server path too
            signature = str(confine_spec(signature, self.models_root))
        try:
            model, signed = load_variant_model(str(path), self.config, signature)
        except (BastionError, OSError, ValueError):
            raise _refused() from None
        if dep is not None and (dep.signature.input_shape, dep.signature.n_classes) != (
            model.input_shape,
            model.n_classes,
        ):
            raise Rejected(
                422,
                "signature_mismatch",
                "the new version's input shape or classes differ from the model's",
            )
        return Variant(variant, model, str(path), spec_digest(str(path)), signed, signature)

    def commit_version(self, name: str, tenant: str, entry: Variant, by: str) -> Deployment:
        """Store a prepared version (weight 0); refuse a name another tenant owns."""
        with _Guarded(self.engine, begin=True) as conn:
            owner = conn.execute(
                select(deployments.c.tenant).where(
                    deployments.c.model == name, deployments.c.tenant != tenant
                )
            ).first()
            if owner is not None:
                raise Rejected(404, "model_not_found", f"no model named {name!r}")
            conn.execute(insert(deployments).values(**_row(name, tenant, entry, 0.0, by)))
        dep = self.models.setdefault(name, Deployment(name, tenant))
        dep.variants[entry.name] = entry
        dep.weights[entry.name] = 0.0
        return dep

    def plan_weights(
        self, name: str, weights: dict[str, float], tenant: str
    ) -> tuple[Deployment, dict[str, float]]:
        """Validate blue-green (one variant at 1) or canary weights; nothing is stored yet."""
        dep = self.get(name)
        if dep is None or dep.tenant != tenant:
            raise Rejected(404, "model_not_found", f"no model named {name!r}")
        unknown = sorted(set(weights) - set(dep.variants))
        if unknown:
            raise Rejected(422, "unknown_variant", f"model {name!r} has no variant {unknown[0]!r}")
        values = [float(w) for w in weights.values()]
        if (
            not all(math.isfinite(w) and w >= 0 for w in values)
            or not math.isfinite(sum(values))
            or sum(values) <= 0
        ):
            raise Rejected(
                422,
                "invalid_weights",
                "weights must be finite, non-negative and sum to more than 0",
            )
        return dep, {v: float(weights.get(v, 0.0)) for v in dep.variants}

    def commit_weights(self, dep: Deployment, new: dict[str, float]) -> Deployment:
        with _Guarded(self.engine, begin=True) as conn:
            for variant, weight in new.items():
                conn.execute(
                    update(deployments)
                    .where(deployments.c.model == dep.name, deployments.c.variant == variant)
                    .values(weight=weight)
                )
        dep.weights = new
        return dep


def _refused() -> Rejected:
    """One answer for every refused spec, so it reveals nothing about paths on the server."""
    return Rejected(
        422,
        "model_refused",
        "the model was refused; register a safe model file or signed bundle from the "
        "models root ([deploy] models_root), by a path relative to it",
    )


def confine_spec(spec: str, root: Path) -> Path:
    """The real path of `spec` inside `root`; URLs, built-ins and anything outside are refused.

    The path is resolved (symlinks followed) before the containment check, so a symlink
    pointing out of the root is refused like a path outside it; a bundle directory must
    hold nothing that resolves outside the root either.
    """
    if "://" in spec or spec.startswith("builtin:") or "\x00" in spec:
        raise _refused()
    try:
        real_root = root.resolve(strict=True)
        candidate = Path(spec)
        real = (candidate if candidate.is_absolute() else real_root / candidate).resolve(
            strict=True
        )
        if not real.is_relative_to(real_root) or real == real_root:
            raise _refused()
        if real.is_dir():
            for child in real.rglob("*"):
                if not child.resolve(strict=True).is_relative_to(real_root):
                    raise _refused()
    except (OSError, RuntimeError, ValueError):
        raise _refused() from None
    return real


def _row(name: str, tenant: str, variant: Variant, weight: float, by: str) -> dict[str, Any]:
    return {
        "model": name,
        "variant": variant.name,
        "tenant": tenant,
        "spec": variant.spec,
        "signature": variant.signature,
        "digest": variant.digest,
        "signed": variant.signed,
        "weight": weight,
        "registered_at": time.time(),
        "registered_by": by,
    }
