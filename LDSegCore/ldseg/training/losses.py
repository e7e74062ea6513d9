"""Training losses of LDSeg (paper eq. 13-18): cross-entropy + gamma * Dice
loss on the decoded segmentation, lambda * MSE on the predicted noise."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def energy_score(samples: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Energy score (beta = 1) of m >= 2 samples (m, B, ...) drawn for each
    of B targets (B, ...), averaged over B.

    A proper scoring rule (Gneiting & Raftery 2007): in expectation it is
    lowest only when the samples follow the target's conditional
    distribution, where a squared error is lowest at that distribution's mean
    (which is why an MSE-trained step from pure noise gives near-identical
    samples). Distances are over each whole latent, divided by the square root
    of its size so the term's scale does not grow with the grid.
    """
    m = samples.shape[0]
    if m < 2:
        raise ValueError("the energy score needs at least two samples per target")
    flat = samples.flatten(2).float()  # (m, B, D)
    y = target.flatten(1).float()

    def distance(d: torch.Tensor) -> torch.Tensor:  # smooth at 0, where two samples coincide
        return torch.sqrt((d * d).sum(dim=-1) + 1e-8)

    fit = distance(flat - y).mean(dim=0)  # (B,)
    pairs = [(i, j) for i in range(m) for j in range(i + 1, m)]
    spread = torch.stack([distance(flat[i] - flat[j]) for i, j in pairs]).mean(dim=0)
    return ((fit - 0.5 * spread) / flat.shape[-1] ** 0.5).mean()


def soft_dice_loss(logits: torch.Tensor, labels: torch.Tensor, eps: float = 1.0) -> torch.Tensor:
    """1 - mean soft Dice over classes present in the batch or predicted.

    Computed per class over the whole batch, so a class absent from one sample
    does not yield a 0/0 there.
    """
    num_classes = logits.shape[1]
    probs = logits.float().softmax(dim=1)
    onehot = F.one_hot(labels, num_classes).movedim(-1, 1).float()
    dims = (0,) + tuple(range(2, logits.dim()))
    inter = (probs * onehot).sum(dims)
    denom = probs.sum(dims) + onehot.sum(dims)
    dice = (2 * inter + eps) / (denom + eps)
    return 1 - dice.mean()


def segmentation_loss(
    logits: torch.Tensor, labels: torch.Tensor, gamma: float = 2.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """(cross-entropy, Dice loss); the caller weights Dice by gamma."""
    ce = F.cross_entropy(logits.float(), labels)
    return ce, soft_dice_loss(logits, labels)
