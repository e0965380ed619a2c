"""The trainer: knows nothing of NNI. Data live on the training device as uint8 tensors.

On CUDA it uses bf16 autocast, channels_last, ``cudnn.benchmark`` and GPU-side augmentation,
with no host synchronisation inside an epoch; on CPU the same code path runs in fp32.
"""
from __future__ import annotations

import math
import random
import time
from dataclasses import asdict, dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from .data import SegData
from .losses import make_loss
from .metrics import SegMetric


@dataclass
class TrainConfig:
    epochs: int = 10
    batch_size: int = 16
    lr: float = 2e-3  # peak of the one-cycle schedule (AdamW)
    weight_decay: float = 1e-4
    loss: str = "ce"  # ce | ce+dice
    class_weights: str = "none"  # none | median_freq (from the training masks, SegData.class_weights)
    augment: bool = True  # random flip + random scale/crop, on the device
    scale_min: float = 0.75
    scale_max: float = 1.25
    amp: bool = True  # bf16 autocast (CUDA only)
    channels_last: bool = True  # (CUDA only)
    compile: bool = False  # torch.compile the model
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    threads: int = 0  # CPU threads for torch (0: leave torch's default)
    seed: int = 0
    eval_batch_size: int = 32


class TrainingDiverged(FloatingPointError):
    """The loss became NaN or infinite."""


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} requested but CUDA is not available")
    return dev


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


def augment(x: torch.Tensor, y: torch.Tensor, cfg: TrainConfig, gen: torch.Generator,
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
def evaluate(model: nn.Module, norm: Normalizer, images: torch.Tensor, masks: torch.Tensor, data: SegData,
             cfg: TrainConfig, device: torch.device, confusion: bool = False) -> dict:
    """Metrics over the whole split, from one confusion matrix accumulated on the device
    (returned as ``confusion``, (C_true, C_pred) nested lists, when asked)."""
    model.eval()
    metric = SegMetric(data.num_classes, data.ignore_index, data.background)
    use_amp = cfg.amp and device.type == "cuda"
    for i in range(0, len(images), cfg.eval_batch_size):
        x = norm(images[i:i + cfg.eval_batch_size].to(device, non_blocking=True))
        if cfg.channels_last and device.type == "cuda":
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
            logits = model(x)
        metric.update(logits.argmax(1), masks[i:i + cfg.eval_batch_size].to(device, non_blocking=True))
    model.train()
    res = metric.compute()
    if confusion:
        res["confusion"] = metric.confusion.cpu().tolist()
    return res


def fit(model: nn.Module, data: SegData, cfg: TrainConfig,
        on_epoch: Callable[[int, dict], None] | None = None,
        on_checkpoint: Callable[[dict, bool], None] | None = None, resume: dict | None = None) -> dict:
    """Train ``model`` on ``data.train_*``, evaluate on ``data.val_*`` after every epoch.

    ``on_epoch(epoch, metrics)`` is called after each evaluation (epoch counts from 1).
    ``on_checkpoint(state, is_best)`` gets, after each epoch, a plain dict of tensors and numbers
    (model, optimizer, scheduler, epoch, history, best); passing such a dict back as ``resume``
    continues training after that epoch.
    Returns ``{"final": metrics of the last epoch, "best": best-Dice metrics, "history": [...],
    "train_seconds", "images_per_second", "device"}``. Raises :class:`TrainingDiverged` on NaN/inf loss.
    """
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
    model = model.to(device)
    if cfg.channels_last and device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    train_model = torch.compile(model) if cfg.compile else model
    ignore = data.ignore_index if data.ignore_index is not None else -1  # also the padding label
    weights = None if cfg.class_weights == "none" else data.class_weights(cfg.class_weights).to(device)
    loss_fn = make_loss(cfg.loss, ignore, weights)
    use_amp = cfg.amp and device.type == "cuda"

    n = len(tx)
    bs = min(cfg.batch_size, n)
    steps = n // bs  # drop the last partial batch (BatchNorm and compile prefer fixed shapes)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, one_cycle(cfg.epochs * steps))
    history, best, first = [], None, 1
    if resume is not None:
        model.load_state_dict(resume["model"])
        opt.load_state_dict(resume["optimizer"])
        sched.load_state_dict(resume["scheduler"])
        history, best, first = list(resume["history"]), resume["best"], int(resume["epoch"]) + 1
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
            if cfg.channels_last and device.type == "cuda":
                x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
                logits = train_model(x)
            loss = loss_fn(logits.float(), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            loss_sum += loss.detach()
        mean_loss = float(loss_sum) / max(1, steps)  # the one host sync of the epoch
        epoch_seconds = time.perf_counter() - t0
        train_time += epoch_seconds
        seen += steps * bs
        if not math.isfinite(mean_loss):
            raise TrainingDiverged(f"loss became {mean_loss} at epoch {epoch}")
        metrics = evaluate(model, norm, vx, vy, data, cfg, device)
        metrics.update(epoch=epoch, loss=mean_loss, seconds=round(epoch_seconds, 4),
                       images_per_second=round(steps * bs / epoch_seconds, 2))
        history.append({k: metrics[k] for k in ("epoch", "loss", "dice", "miou", "pixel_acc", "seconds",
                                                "images_per_second")})
        is_best = best is None or _better(metrics["dice"], best["dice"])
        if is_best:
            best = metrics
        if on_epoch is not None:
            on_epoch(epoch, metrics)
        if on_checkpoint is not None:
            on_checkpoint({"model": model.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                           "epoch": epoch, "history": history, "best": best}, is_best)
    return {
        "final": metrics if history and first <= cfg.epochs else best,
        "best": best,
        "history": history,
        "train_seconds": round(train_time, 3),
        "images_per_second": round(seen / train_time, 2) if train_time else None,
        "device": str(device) if device.type != "cuda" else f"cuda ({torch.cuda.get_device_name(device)})",
        "config": asdict(cfg),
    }


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
