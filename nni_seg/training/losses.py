"""Losses on logits (B, C, H, W) and targets (B, H, W) with an ignore index."""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from ..space.blocks import lookup


def soft_dice_loss(logits: torch.Tensor, target: torch.Tensor, ignore_index: int | None = None,
                   eps: float = 1.0) -> torch.Tensor:
    """1 - mean soft Dice over the classes present in the batch (softmax probabilities, void masked)."""
    c = logits.shape[1]
    prob = logits.float().softmax(1)  # (B, C, H, W)
    valid = torch.ones_like(target, dtype=torch.bool) if ignore_index is None else target != ignore_index
    onehot = F.one_hot(torch.where(valid, target, 0).long(), c).permute(0, 3, 1, 2).float()
    mask = valid.unsqueeze(1).float()
    inter = (prob * onehot * mask).sum((0, 2, 3))
    denom = ((prob + onehot) * mask).sum((0, 2, 3))
    present = onehot.mul(mask).sum((0, 2, 3)) > 0
    dice = (2 * inter + eps) / (denom + eps)
    return 1 - dice[present].mean() if present.any() else logits.sum() * 0


def make_loss(name: str, ignore_index: int | None = None,
              class_weights: torch.Tensor | None = None) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """``ce`` (cross-entropy) or ``ce+dice`` (cross-entropy + soft Dice)."""
    ii = -100 if ignore_index is None else ignore_index

    def ce(logits, target):
        return F.cross_entropy(logits, target.long(), weight=class_weights, ignore_index=ii)

    def ce_dice(logits, target):
        return ce(logits, target) + soft_dice_loss(logits, target, ignore_index)

    return lookup({"ce": ce, "ce+dice": ce_dice}, name, "loss")
