"""Segmentation metrics: pure functions on per-class statistics plus one accumulator.

Conventions
-----------
* ``pred`` and ``target`` are integer class maps of shape (N, H, W); ``target == ignore_index``
  pixels are void and count nowhere.
* Statistics ``tp, fp, fn`` have shape (N, C) per image or (C,) summed over a dataset.
* A class absent from both prediction and truth has no defined Dice/IoU: its score is NaN and it is
  left out of every mean. A class predicted but absent from the truth scores 0.
"""
from __future__ import annotations

import math

import torch


def get_stats(pred: torch.Tensor, target: torch.Tensor, num_classes: int,
              ignore_index: int | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-image, per-class true positives, false positives and false negatives.

    Args:
        pred: (N, H, W) predicted class indices.
        target: (N, H, W) true class indices; ``ignore_index`` marks void pixels.
    Returns:
        ``tp, fp, fn``, each (N, C) int64.
    """
    if pred.shape != target.shape:
        raise ValueError(f"pred {tuple(pred.shape)} and target {tuple(target.shape)} differ in shape")
    n = pred.shape[0]
    pred, target = pred.reshape(n, -1).long(), target.reshape(n, -1).long()
    valid = (target >= 0) & (target < num_classes)
    if ignore_index is not None:
        valid &= target != ignore_index
    offs = torch.arange(n, device=pred.device).unsqueeze(1) * num_classes
    count = lambda idx: torch.bincount(idx, minlength=n * num_classes).view(n, num_classes)  # noqa: E731
    hit = valid & (pred == target)
    tp = count((pred + offs)[hit])
    fp = count((pred + offs)[valid]) - tp  # predicted c where truth was another valid class
    fn = count((target + offs)[valid]) - tp
    return tp, fp, fn


def dice_per_class(tp: torch.Tensor, fp: torch.Tensor, fn: torch.Tensor) -> torch.Tensor:
    """2TP / (2TP + FP + FN) elementwise; NaN where the class is absent from pred and truth."""
    tp, fp, fn = tp.double(), fp.double(), fn.double()
    denom = 2 * tp + fp + fn
    return torch.where(denom > 0, 2 * tp / denom.clamp_min(1), torch.full_like(denom, math.nan))


def iou_per_class(tp: torch.Tensor, fp: torch.Tensor, fn: torch.Tensor) -> torch.Tensor:
    """TP / (TP + FP + FN) elementwise; NaN where the class is absent from pred and truth."""
    tp, fp, fn = tp.double(), fp.double(), fn.double()
    denom = tp + fp + fn
    return torch.where(denom > 0, tp / denom.clamp_min(1), torch.full_like(denom, math.nan))


def nanmean(scores: torch.Tensor, exclude: int | None = None) -> float:
    """Mean of the defined (non-NaN) scores of shape (C,), optionally leaving out class ``exclude``."""
    keep = torch.ones_like(scores, dtype=torch.bool)
    if exclude is not None:
        keep[exclude] = False
    vals = scores[keep & ~torch.isnan(scores)]
    return float(vals.mean()) if vals.numel() else math.nan


class SegMetric:
    """Accumulates a (C, C) confusion matrix over a whole split; scores are computed once at the end.

    ``update(pred, target)`` takes (N, H, W) class maps (or (N, C, H, W) logits for ``pred``) and
    never synchronises with the device; ``compute()`` returns a dict of Python numbers.

    Args:
        num_classes: C.
        ignore_index: void label in ``target`` (never counted).
        background: class left out of the mean Dice ("foreground Dice"), or None to count all.
    """

    def __init__(self, num_classes: int, ignore_index: int | None = None, background: int | None = None):
        self.num_classes, self.ignore_index, self.background = num_classes, ignore_index, background
        self.confusion: torch.Tensor | None = None  # (C_true, C_pred)

    def reset(self) -> None:
        self.confusion = None

    @torch.no_grad()
    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        if pred.dim() == target.dim() + 1:
            pred = pred.argmax(1)
        c = self.num_classes
        target = target.reshape(-1).long()
        pred = pred.reshape(-1).long()
        valid = (target >= 0) & (target < c)
        if self.ignore_index is not None:
            valid &= target != self.ignore_index
        cm = torch.bincount(target[valid] * c + pred[valid], minlength=c * c).view(c, c)
        self.confusion = cm if self.confusion is None else self.confusion + cm

    def stats(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Summed ``tp, fp, fn``, each (C,)."""
        if self.confusion is None:
            raise RuntimeError("SegMetric.compute() called before any update()")
        cm = self.confusion.double().cpu()
        tp = cm.diag()
        return tp, cm.sum(0) - tp, cm.sum(1) - tp

    def compute(self) -> dict:
        """``dice`` (mean foreground Dice), ``miou``, ``pixel_acc``, per-class lists (NaN -> None)."""
        tp, fp, fn = self.stats()
        dice, iou = dice_per_class(tp, fp, fn), iou_per_class(tp, fp, fn)
        total = float(self.confusion.sum())
        return {
            "dice": nanmean(dice, exclude=self.background),
            "miou": nanmean(iou),
            "pixel_acc": float(tp.sum()) / total if total else math.nan,
            "dice_per_class": _listify(dice),
            "iou_per_class": _listify(iou),
        }


def _listify(t: torch.Tensor) -> list:
    return [None if math.isnan(v) else round(v, 6) for v in t.tolist()]
