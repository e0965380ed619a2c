"""The trainer: knows nothing of NNI. Data live on the training device as uint8 tensors.

It runs bf16 autocast and channels-last where the device computes bf16 natively (CUDA; CPUs with
AMX-BF16 or AVX512-BF16: :mod:`nni_seg.training.precision`), fp32 NCHW elsewhere; on CUDA also ``cudnn.benchmark``
and device-side augmentation, with no host synchronisation inside an epoch.
"""
from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ..data import SegData
from ..errors import UserError
from .losses import make_loss
from .metrics import SegMetric
from .precision import ComputePath, compute_path
from ..config.schema import EpochResult, Scores
from ..config.settings import TrainSettings


class TrainingDiverged(FloatingPointError):
    """The loss became NaN or infinite."""


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"--device {name}: CUDA is not available on this machine")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise UserError(f"--device {name}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    return dev


@dataclass
class FitResult:
    """What :func:`fit` returns: scores of the last and of the best epoch (by val Dice), the history."""
    final: Scores
    best: Scores
    best_epoch: int
    history: list[EpochResult] = field(default_factory=list)
    train_seconds: float = 0.0
    images_per_second: float | None = None
    device: str = "cpu"
    path: ComputePath | None = None  # the arithmetic that ran

    @property
    def compute(self) -> str:
        """The path as records say it, e.g. ``cpu: bf16 autocast, channels-last (AMX-BF16)``."""
        return str(self.path) if self.path is not None else ""


class Normalizer(nn.Module):
    """uint8 (B, C, H, W) -> float, standardised with per-channel ``mean`` / ``std`` (in [0, 1] units)."""

    def __init__(self, mean: list[float] | torch.Tensor, std: list[float] | torch.Tensor):
        super().__init__()
        self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.as_tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    @classmethod
    def from_images(cls, images: torch.Tensor) -> "Normalizer":
        """Statistics of (up to 512 of) the training images (N, C, H, W) uint8."""
        x = images[: min(len(images), 512)].float() / 255
        return cls(x.mean((0, 2, 3)), x.std((0, 2, 3)).clamp_min(1e-3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x.float() / 255 - self.mean) / self.std


def augment(x: torch.Tensor, y: torch.Tensor, cfg: TrainSettings, gen: torch.Generator,
            rng: random.Random | None = None, ignore: int = -1) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample horizontal flip, then one random scale per batch with a random crop/pad back to size.

    x: (B, C, H, W) float, y: (B, H, W) long. Padded mask pixels get ``ignore``. Flips draw
    from ``gen`` (on x's device); scale and crop from the host RNG ``rng``, so nothing syncs.
    """
    rng = rng or random.Random(0)
    b, _, h, w = x.shape
    flip = torch.rand(b, 1, 1, device=x.device, generator=gen) < 0.5
    x = torch.where(flip.unsqueeze(1), x.flip(-1), x)
    y = torch.where(flip, y.flip(-1), y)
    if cfg.scale_max > cfg.scale_min:
        s = rng.uniform(cfg.scale_min, cfg.scale_max)
        sh, sw = max(1, round(h * s)), max(1, round(w * s))
        x = F.interpolate(x, size=(sh, sw), mode="bilinear", align_corners=False)
        y = F.interpolate(y[:, None].float(), size=(sh, sw), mode="nearest")[:, 0].long()
        if sh < h or sw < w:  # pad with ignore
            ph, pw = max(0, h - sh), max(0, w - sw)
            x = F.pad(x, (0, pw, 0, ph))
            y = F.pad(y, (0, pw, 0, ph), value=ignore)
        oy, ox = rng.randint(0, x.shape[-2] - h), rng.randint(0, x.shape[-1] - w)
        x, y = x[..., oy:oy + h, ox:ox + w], y[..., oy:oy + h, ox:ox + w]
    return x, y


@torch.no_grad()
def score_split(model: nn.Module, norm: Normalizer, images: torch.Tensor, masks: torch.Tensor | list[torch.Tensor],
                metric: SegMetric, path: ComputePath, batch: int, eval_mode: bool = True,
                on_batch: Callable[[int], None] | None = None) -> SegMetric:
    """The one scorer: the trainer's per-epoch evaluation, ``evaluate`` and the one-shot supernet's
    validation all add their split to ``metric``'s confusion matrix here (scores: ``.compute()``).

    images (N, C, H, W) uint8 at the network's input size, in batches of ``batch``. ``masks`` (N, H, W)
    at that size, or a list of per-image masks at their own (native) size: each image's logits are then
    upsampled (bilinear, in fp32) to its mask's size before the argmax, as published scores are computed.
    ``eval_mode``: score in eval mode (BatchNorm's running statistics); the model's mode is restored after.
    ``on_batch(n)`` after each batch of ``n`` images (progress bars).
    """
    was_training = model.training
    if eval_mode:
        model.eval()
    device = path.device
    try:
        for i in range(0, len(images), batch):
            x = path.input(norm(images[i:i + batch].to(device, non_blocking=True)))
            with path.autocast():
                logits = model(x).float()  # (B, C, h, w)
            if isinstance(masks, list):
                for j, m in enumerate(masks[i:i + batch]):
                    up = F.interpolate(logits[j:j + 1], size=tuple(m.shape), mode="bilinear", align_corners=False)
                    metric.update(up.argmax(1), m[None].to(device))
            else:
                metric.update(logits.argmax(1), masks[i:i + batch].to(device, non_blocking=True))
            if on_batch is not None:
                on_batch(len(x))
    finally:
        model.train(was_training)
    return metric


def split_metric(data: SegData) -> SegMetric:
    """An empty confusion matrix for ``data``'s classes, void label and background."""
    return SegMetric(data.num_classes, data.ignore_index, data.background)


def scores_of(metric: SegMetric) -> Scores:
    res = metric.compute()
    return Scores(dice=res["dice"], miou=res["miou"], pixel_acc=res["pixel_acc"],
                  dice_per_class=res["dice_per_class"], iou_per_class=res["iou_per_class"])


def fit(model: nn.Module, data: SegData, cfg: TrainSettings,
        on_epoch: Callable[[EpochResult, Scores], None] | None = None,
        on_checkpoint: Callable[[dict, bool], None] | None = None, resume: dict | None = None,
        on_step: Callable[[int, int], None] | None = None) -> FitResult:
    """Train ``model`` on ``data.train_*``, evaluate on ``data.val_*`` after every epoch.

    ``on_epoch(result, scores)`` is called after each evaluation (epochs count from 1); ``on_step(step,
    steps)`` after each training step (progress bars). ``on_checkpoint(state, is_best)`` gets, after each
    epoch, a plain dict of tensors and numbers (model, optimizer, scheduler, epoch, history, best);
    passing such a dict back as ``resume`` continues training after that epoch. Raises
    :class:`TrainingDiverged` on a NaN/inf loss.
    """
    from ..config._typed import to_json

    device = resolve_device(cfg.device)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    gen = torch.Generator(device=device).manual_seed(cfg.seed)
    rng = random.Random(cfg.seed)

    tx, ty = data.train_images.to(device), data.train_masks.to(device)
    vx, vy = data.val_images.to(device), data.val_masks.to(device)
    norm = Normalizer.from_images(tx).to(device)
    path = compute_path(device, cfg.amp, cfg.channels_last)
    model = path.model(model.to(device))
    train_model = torch.compile(model) if cfg.compile else model
    ignore = data.ignore_index if data.ignore_index is not None else -1  # also the padding label
    weights = None if cfg.class_weights == "none" else data.class_weights(cfg.class_weights).to(device)
    loss_fn = make_loss(cfg.loss, ignore, weights)

    n = len(tx)
    bs = min(cfg.batch_size, n)
    steps = n // bs  # drop the last partial batch (BatchNorm and compile prefer fixed shapes)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, one_cycle(cfg.epochs * steps))
    history: list[EpochResult] = []
    best: Scores | None = None
    final: Scores | None = None
    best_epoch, first = 0, 1
    if resume is not None:
        model.load_state_dict(resume["model"])
        opt.load_state_dict(resume["optimizer"])
        sched.load_state_dict(resume["scheduler"])
        history = [EpochResult(**h) for h in resume["history"]]
        best, best_epoch = Scores(**resume["best"]), int(resume["best_epoch"])
        first = int(resume["epoch"]) + 1
        final = best
    train_time, seen = 0.0, 0
    for epoch in range(first, cfg.epochs + 1):
        model.train()
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        perm = torch.randperm(n, device=device, generator=gen)
        loss_sum = torch.zeros((), device=device)
        for s in range(steps):
            idx = perm[s * bs:(s + 1) * bs]
            x, y = norm(tx[idx]), ty[idx].long()
            if cfg.augment:
                x, y = augment(x, y, cfg, gen, rng, ignore)
            x = path.input(x)
            with path.autocast():
                logits = train_model(x)
            loss = loss_fn(logits.float(), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            loss_sum += loss.detach()
            if on_step is not None:
                on_step(s + 1, steps)
        mean_loss = float(loss_sum) / max(1, steps)  # the one host sync of the epoch
        epoch_seconds = time.perf_counter() - t0
        train_time += epoch_seconds
        seen += steps * bs
        if not math.isfinite(mean_loss):
            raise TrainingDiverged(f"loss became {mean_loss} at epoch {epoch}")
        final = scores_of(score_split(model, norm, vx, vy, split_metric(data), path, cfg.eval_batch_size))
        result = EpochResult(epoch=epoch, loss=mean_loss, dice=final.dice, miou=final.miou,
                             pixel_acc=final.pixel_acc, seconds=round(epoch_seconds, 4),
                             images_per_second=round(steps * bs / epoch_seconds, 2))
        history.append(result)
        is_best = best is None or _better(final.dice, best.dice)
        if is_best:
            best, best_epoch = final, epoch
        if on_epoch is not None:
            on_epoch(result, final)
        if on_checkpoint is not None:
            on_checkpoint({"model": model.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                           "epoch": epoch, "history": to_json(history), "best": to_json(best),
                           "best_epoch": best_epoch}, is_best)
    return FitResult(final=final, best=best, best_epoch=best_epoch, history=history,
                     train_seconds=round(train_time, 3),
                     images_per_second=round(seen / train_time, 2) if train_time else None,
                     device=str(device) if device.type != "cuda" else f"cuda ({torch.cuda.get_device_name(device)})",
                     path=path)


def one_cycle(total_steps: int, warmup: float = 0.25, floor: float = 0.02) -> Callable[[int], float]:
    """LR multiplier: linear warm-up from ``floor`` over ``warmup`` of the steps, then cosine to ``floor``."""
    warm = max(1, round(total_steps * warmup))

    def f(step: int) -> float:
        if step < warm:
            return floor + (1 - floor) * step / warm
        t = min(1.0, (step - warm) / max(1, total_steps - warm))
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * t))
    return f


def _better(a: float, b: float) -> bool:
    return not math.isnan(a) and (math.isnan(b) or a > b)
