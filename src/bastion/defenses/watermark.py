"""Model watermarks (Adi et al. 2018): a secret trigger set the owner's model answers on cue.

The trigger set is derived from a secret key with HKDF, so the owner stores only the key:
random inputs within the model's bounds, each with a random label. A model trained on
them answers with those labels; any other model matches each one with probability
1/n_classes, so a binomial test gives the p-value of "this model is not mine".
Verification needs only `predict_proba`: it works through any Model, remote ones included.
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np

from bastion.core.dataset import Dataset
from bastion.core.errors import DataError, UsageError
from bastion.core.model import Model, is_differentiable, predict_labels

MIN_KEY_BYTES = 16
DEFAULT_TRIGGERS = 100
DEFAULT_ALPHA = 1e-6
HKDF_SALT = b"bastion-watermark-v1"
COMMIT_TAG = b"bastion-watermark-commitment-v1"


@dataclass(frozen=True)
class Verdict:
    """How many trigger labels the model reproduced, and the binomial p-value under chance."""

    matches: int
    n_triggers: int
    chance: float
    p_value: float
    alpha: float

    @property
    def verified(self) -> bool:
        """True when chance agreement is rejected at level `alpha`."""
        return self.p_value < self.alpha


def check_key(key: bytes) -> bytes:
    """The key, or a UsageError when it is too short to be a secret."""
    if len(key) < MIN_KEY_BYTES:
        raise UsageError(
            f"the watermark key has {len(key)} bytes; at least {MIN_KEY_BYTES} are needed",
            fix="use a random key of 32 bytes, e.g. `head -c 32 /dev/urandom > watermark.key`",
        )
    return key


def trigger_set(
    key: bytes,
    input_shape: tuple[int, ...],
    n_classes: int,
    bounds: tuple[float, float] | None,
    n_triggers: int = DEFAULT_TRIGGERS,
) -> Dataset:
    """The trigger inputs and labels for `key`: the same key and model shape give the same set."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    check_key(key)
    if n_triggers < 1 or n_classes < 2:
        raise UsageError(
            f"{n_triggers} triggers for {n_classes} classes",
            fix="use at least one trigger and a classifier with two or more classes",
        )
    info = f"shape={list(input_shape)};classes={n_classes};n={n_triggers}".encode()
    seed = HKDF(algorithm=hashes.SHA256(), length=32, salt=HKDF_SALT, info=info).derive(key)
    rng = np.random.default_rng(np.frombuffer(seed, dtype=np.uint32))
    low, high = bounds if bounds is not None else (0.0, 1.0)
    x = rng.uniform(low, high, size=(n_triggers, *input_shape)).astype(np.float32)
    y = rng.integers(0, n_classes, size=n_triggers)
    return Dataset(x, y)


def binomial_p_value(matches: int, n: int, chance: float) -> float:
    """P(X >= matches) for X ~ Binomial(n, chance)."""
    from scipy.stats import binom

    return float(binom.sf(matches - 1, n, chance))


def verify(
    model: Model,
    key: bytes,
    *,
    n_triggers: int = DEFAULT_TRIGGERS,
    alpha: float = DEFAULT_ALPHA,
) -> Verdict:
    """Query `model` (black-box) on the key's trigger set and test agreement against chance."""
    triggers = trigger_set(key, model.input_shape, model.n_classes, model.input_bounds, n_triggers)
    matches = int((predict_labels(model, triggers.x) == triggers.labels).sum())
    chance = 1.0 / model.n_classes
    return Verdict(
        matches, n_triggers, chance, binomial_p_value(matches, n_triggers, chance), alpha
    )


def embed(
    model: Model,
    train: Dataset,
    key: bytes,
    *,
    n_triggers: int = DEFAULT_TRIGGERS,
    epochs: int = 20,
    lr: float = 1e-3,
    batch_size: int = 64,
    triggers_per_batch: int = 32,
    seed: int = 0,
) -> Model:
    """Fine-tune a copy of a torch `model` on `train` plus the key's trigger set.

    Every batch mixes `triggers_per_batch` triggers into the training rows so the
    watermark is learned without drifting from the clean task.
    """
    import torch

    from bastion.core.adapters.torch import TorchModel
    from bastion.core.adapters.torch_fit import fit_cross_entropy

    if not is_differentiable(model):
        raise UsageError(
            "embedding by fine-tuning needs a torch model",
            fix="pass a .safetensors / builtin torch model, or use embed_with_trainer",
        )
    if train.y is None:
        raise DataError("the training data has no labels", fix="provide labels (y)")
    triggers = trigger_set(key, model.input_shape, model.n_classes, model.input_bounds, n_triggers)
    torch.manual_seed(seed)
    module = copy.deepcopy(model.module)  # type: ignore[attr-defined]
    x, y = torch.as_tensor(train.x, dtype=torch.float32), torch.as_tensor(train.labels)
    tx, ty = torch.as_tensor(triggers.x), torch.as_tensor(triggers.labels)

    def some_triggers(gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        pick = torch.randint(0, len(tx), (triggers_per_batch,), generator=gen)
        return tx[pick], ty[pick]

    fit_cross_entropy(
        module,
        x,
        y,
        epochs=epochs,
        lr=lr,
        batch_size=batch_size,
        seed=seed,
        extra_rows=some_triggers,
    )
    return TorchModel(
        module,
        input_shape=model.input_shape,
        n_classes=model.n_classes,
        input_bounds=model.input_bounds,
        class_names=getattr(model, "class_names", None),
    )


def embed_with_trainer(
    trainer: Any,
    train: Dataset,
    key: bytes,
    *,
    input_shape: tuple[int, ...],
    n_classes: int,
    bounds: tuple[float, float] | None,
    n_triggers: int = DEFAULT_TRIGGERS,
    repeat: int = 5,
    seed: int = 0,
) -> Model:
    """Train with `trainer(dataset, seed)` on `train` plus `repeat` copies of the triggers."""
    labels = train.labels
    triggers = trigger_set(key, input_shape, n_classes, bounds, n_triggers)
    x = np.concatenate([train.x, *[triggers.x] * repeat]).astype(np.float32)
    y = np.concatenate([labels, *[triggers.labels] * repeat])
    model: Model = trainer(
        Dataset(x, y, train.feature_names, train.class_names, train.bounds), seed
    )
    return model


def ownership_record(
    key: bytes, model: Model, n_triggers: int = DEFAULT_TRIGGERS
) -> dict[str, Any]:
    """A record committing to the key (salted SHA-256) with a timestamp, for the audit log.

    Revealing the key and salt later proves the record was made by the key's holder.
    """
    check_key(key)
    salt = os.urandom(16)
    commitment = hmac.new(salt, COMMIT_TAG + key, hashlib.sha256).hexdigest()
    return {
        "type": "watermark.ownership",
        "commitment": commitment,
        "salt": salt.hex(),
        "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
        "n_triggers": n_triggers,
        "n_classes": model.n_classes,
        "input_shape": list(model.input_shape),
    }


def opens_commitment(record: dict[str, Any], key: bytes) -> bool:
    """True when `key` is the key the record commits to."""
    salt = bytes.fromhex(str(record["salt"]))
    expected = hmac.new(salt, COMMIT_TAG + key, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, str(record["commitment"]))


def prune(model: Model, fraction: float) -> Model:
    """A copy of a torch model with the smallest-magnitude `fraction` of weights set to zero.

    A removal attack to measure watermark robustness against (global magnitude pruning
    over every linear and convolutional weight).
    """
    import torch

    from bastion.core.adapters.torch import TorchModel

    if not 0.0 <= fraction < 1.0:
        raise UsageError(f"pruning fraction {fraction} is outside [0, 1)", fix="e.g. 0.5")
    module = copy.deepcopy(model.module)  # type: ignore[attr-defined]
    weights = [
        m.weight for m in module.modules() if isinstance(m, torch.nn.Linear | torch.nn.Conv2d)
    ]
    magnitudes = torch.cat([w.detach().abs().flatten() for w in weights])
    k = int(fraction * len(magnitudes))
    if k:
        cut = magnitudes.kthvalue(k).values
        with torch.no_grad():
            for w in weights:
                w.mul_((w.abs() > cut).to(w.dtype))
    return TorchModel(
        module.eval(),
        input_shape=model.input_shape,
        n_classes=model.n_classes,
        input_bounds=model.input_bounds,
        class_names=getattr(model, "class_names", None),
    )


def fine_tune(
    model: Model, data: Dataset, *, epochs: int = 10, lr: float = 1e-3, seed: int = 0
) -> Model:
    """A copy of a torch model fine-tuned (all layers) on `data`: a removal attack."""
    import torch

    from bastion.core.adapters.torch import TorchModel
    from bastion.core.adapters.torch_fit import fit_cross_entropy

    torch.manual_seed(seed)
    module = copy.deepcopy(model.module)  # type: ignore[attr-defined]
    x, y = torch.as_tensor(data.x, dtype=torch.float32), torch.as_tensor(data.labels)
    return TorchModel(
        fit_cross_entropy(module, x, y, epochs=epochs, lr=lr, batch_size=32, seed=seed),
        input_shape=model.input_shape,
        n_classes=model.n_classes,
        input_bounds=model.input_bounds,
        class_names=getattr(model, "class_names", None),
    )
