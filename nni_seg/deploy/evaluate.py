"""Scores of a checkpoint on a split, at the labels' native resolution or the training size."""
from __future__ import annotations

import dataclasses
from pathlib import Path

from ..data import SegData, load_dataset
from ..errors import UserError
from ..progress import Progress
from ..space.net import SegNet
from ..config.schema import CheckpointMeta, Scores
from ..training.precision import compute_path
from ..training.trainer import Normalizer, resolve_device, score_split, scores_of, split_metric

from .checkpoint import check_classes, load_checkpoint


@dataclasses.dataclass
class EvalReport:
    """Scores of a checkpoint on one split, and at which resolution they were computed."""
    scores: Scores
    class_names: list[str]
    split: str
    images: int
    resolution: str  # e.g. "native labels (360x480)" or "96x128 (the training size)"
    dataset: str
    compute: str = ""  # the arithmetic of the forward passes (precision.ComputePath)
    confusion: list[list[int]] | None = None


def evaluate(ckpt: str | Path, data_overrides: dict | None = None, split: str = "val", device: str = "auto",
             native: bool = True, confusion: bool = False, data: SegData | None = None,
             progress: bool = False) -> EvalReport:
    """Scores of a checkpoint on ``split`` (train, val or test) of the data it was trained on
    (``data_overrides`` change it, ``data``: that data already loaded with ``native``). ``native``
    scores at the labels' stored resolution (logits upsampled to the mask size before the argmax: how
    papers report), else at the network's input size. ``confusion`` adds the (C_true, C_pred) matrix."""
    model, meta = load_checkpoint(ckpt)
    if data is None:
        try:
            cfg = dataclasses.replace(meta.data, **(data_overrides or {}))
        except Exception as e:  # a FieldError names the setting
            raise UserError(f"{e}") from None
        data = load_dataset(cfg, test=True if split == "test" else False, native=native)
    return evaluate_model(model, meta, data, split, device, native, confusion, progress, where=str(ckpt))


def evaluate_model(model: SegNet, meta: CheckpointMeta, data: SegData, split: str = "val", device: str = "auto",
                   native: bool = True, confusion: bool = False, progress: bool = False,
                   where: str = "the network") -> EvalReport:
    """:func:`evaluate` of a network in memory (``retrain``'s :class:`~nni_seg.deploy.checkpoint.Retrained`)
    with its ``meta``, on ``data`` loaded with ``native``; ``where`` names it in errors."""
    check_classes(meta, data, where)
    images, masks = data.split(split)
    if native and split != "train":
        if split not in data.native:
            raise UserError(f"native-resolution masks of {split} were not loaded (load_dataset(..., native=True))")
        masks = data.native[split]
        sizes = sorted({tuple(m.shape) for m in masks})
        resolution = f"native labels ({'x'.join(map(str, sizes[0]))}{' and others' if len(sizes) > 1 else ''})"
    else:
        resolution = f"{images.shape[-2]}x{images.shape[-1]} (the network's input size)"
    dev = resolve_device(device)
    path = compute_path(dev, meta.train.amp, meta.train.channels_last)
    bar = Progress(len(images), f"evaluate {split}", "img") if progress else None
    try:
        model = path.model(model.to(dev))
        metric = score_split(model, Normalizer(meta.mean, meta.std).to(dev), images, masks, split_metric(data), path,
                             meta.train.eval_batch_size, on_batch=bar.update if bar else None)
    finally:
        if bar:
            bar.close()
    return EvalReport(scores=scores_of(metric), class_names=meta.class_names, split=split, images=len(images),
                      resolution=resolution, dataset=data.name, compute=str(path),
                      confusion=metric.confusion.cpu().tolist() if confusion else None)


def table(report: EvalReport) -> str:
    """Markdown: Dice and IoU per class, the means, and which split and resolution they are from."""
    s = report.scores
    fmt = lambda v: "-" if v is None else f"{v:.4f}"  # noqa: E731
    lines = [f"{report.dataset} {report.split} ({report.images} images), scored at {report.resolution}"
             + (f", {report.compute}" if report.compute else "") + ":", "",
             "| class | Dice | IoU |", "|---|---|---|"]
    for name, d, i in zip(report.class_names, s.dice_per_class, s.iou_per_class):
        lines.append(f"| {name} | {fmt(d)} | {fmt(i)} |")
    lines.append(f"| **mean** | **{s.dice:.4f}** (foreground) | **{s.miou:.4f}** |")
    return "\n".join(lines)
