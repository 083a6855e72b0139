"""FGSM (Goodfellow et al. 2015): one signed-gradient step of size epsilon."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from bastion.attacks.evasion._common import (
    AttackResult,
    BoundsArg,
    Box,
    LogitsFn,
    Norm,
    check_epsilon,
    check_norm,
    finish,
    inputs_and_labels,
    misclassified,
    normalize,
    project,
    require_differentiable,
    resolve_box,
)
from bastion.core.model import Model


def fgsm_tensor(
    logits: LogitsFn, x: torch.Tensor, y: torch.Tensor, eps: float, norm: Norm, box: Box
) -> torch.Tensor:
    """The one-step adversarial batch (FGM for L2)."""
    x_req = x.clone().requires_grad_(True)
    loss = F.cross_entropy(logits(x_req), y, reduction="sum")
    (grad,) = torch.autograd.grad(loss, x_req)
    return project(x + eps * normalize(grad, norm), x, eps, norm, box).detach()


def fgsm(
    model: Model,
    x: np.ndarray,
    y: np.ndarray,
    *,
    epsilon: float,
    norm: str = "linf",
    bounds: BoundsArg = None,
) -> AttackResult:
    """Fast gradient sign method; `success` marks inputs the model now misclassifies."""
    logits = require_differentiable(model, "FGSM")
    kind = check_norm(norm)
    xt, yt = inputs_and_labels(model, x, y)
    box = resolve_box(model, xt, bounds)
    eps = check_epsilon(epsilon, box, xt, kind)
    x_adv = fgsm_tensor(logits, xt, yt, eps, kind, box)
    return finish("fgsm", kind, eps, xt, x_adv, misclassified(logits, x_adv, yt), 2)
