"""Training losses of LDSeg (paper eq. 13-18): cross-entropy + gamma * Dice
loss on the decoded segmentation, lambda * MSE on the predicted noise."""

from __future__ import annotations

import torch
import torch.nn.functional as F


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
