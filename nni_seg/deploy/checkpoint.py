"""Checkpoints: ``retrain`` an architecture into a folder (``meta.json`` + ``best.pt`` + ``last.pt``), and load one."""
from __future__ import annotations

import dataclasses
import pickle
import zipfile
from pathlib import Path
from typing import Callable

import torch

from ..config import schema
from ..space.arch import arch_summary
from ..data import SegData, load_dataset
from ..errors import RecordError, UserError
from ..files import atomic_path
from ..space.net import SegNet
from ..progress import Progress
from ..config.schema import META_NAME, CheckpointMeta, Scores
from ..config.settings import DataSettings, TrainSettings
from ..training.precision import compute_path
from ..training.trainer import Normalizer, resolve_device

CHECKPOINT_FILES = (META_NAME, "best.pt", "last.pt")


def atomic_torch_save(obj, path: Path) -> None:
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def _torch_load(path: Path) -> dict:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise RecordError(f"{path}: not found") from None
    except (RuntimeError, EOFError, OSError, zipfile.BadZipFile, pickle.UnpicklingError, ValueError) as e:
        raise RecordError(f"{path}: not a readable checkpoint (truncated or foreign?): "
                          f"{' '.join(str(e).split())[:200]}") from None
    if not isinstance(state, dict):
        raise RecordError(f"{path}: not a checkpoint (a {type(state).__name__}, not a state dict)")
    return state


def load_checkpoint(ckpt: str | Path, which: str = "best") -> tuple[SegNet, CheckpointMeta]:
    """(model on CPU in eval mode, meta) from a checkpoint folder; anything unreadable is one line."""
    ckpt = Path(ckpt)
    if not ckpt.is_dir():
        raise UserError(f"checkpoint folder not found: {ckpt}" if not ckpt.exists()
                        else f"{ckpt} is a file; give the checkpoint folder written by retrain")
    meta_path, weights = ckpt / META_NAME, ckpt / f"{which}.pt"
    if not meta_path.is_file() or not weights.is_file():
        raise UserError(f"not a checkpoint folder (needs {META_NAME} and {which}.pt): {ckpt}")
    meta = schema.load(CheckpointMeta, meta_path)
    from ..space.arch import validate_arch

    arch = validate_arch(meta.arch, source=f"{meta_path}: arch", fill_legacy=True)
    model = SegNet(arch, len(meta.class_names), meta.in_channels)
    state = _torch_load(weights)
    try:
        model.load_state_dict(state["model"] if "model" in state else state)
    except (RuntimeError, KeyError, TypeError) as e:
        raise RecordError(f"{weights}: weights do not fit the architecture in {meta_path}: "
                          f"{' '.join(str(e).split())[:200]}") from None
    return model.eval(), meta


def check_classes(meta: CheckpointMeta, data: SegData, where: str) -> None:
    """A checkpoint is only scored or run on data with its classes (count and names) and channels."""
    if meta.class_names != data.class_names:
        raise UserError(f"{where} was trained on {len(meta.class_names)} classes ({', '.join(meta.class_names[:6])}"
                        f"{', ...' if len(meta.class_names) > 6 else ''}); dataset {data.name} has "
                        f"{data.num_classes} ({', '.join(data.class_names[:6])}{', ...' if data.num_classes > 6 else ''})")
    if meta.in_channels != data.in_channels:
        raise UserError(f"{where} takes {meta.in_channels}-channel images; dataset {data.name} has {data.in_channels}")


def _meta_for(arch: dict, data: SegData, data_cfg: DataSettings, train_cfg: TrainSettings, model: SegNet) -> CheckpointMeta:
    from ..space.cost import count_macs, count_params

    norm = Normalizer.from_images(data.train_images)
    return CheckpointMeta(arch=arch, summary=arch_summary(arch), class_names=data.class_names,
                          in_channels=data.in_channels, ignore_index=data.ignore_index, background=data.background,
                          palette=data.colours(), dataset=data.name, size=data.size,
                          mean=norm.mean.flatten().tolist(), std=norm.std.flatten().tolist(),
                          params=count_params(model), mmacs=round(count_macs(model, (1, data.in_channels, *data.size)) / 1e6, 3),
                          data=data_cfg, train=train_cfg)


def _check_resume(out: Path, meta: CheckpointMeta) -> None:
    """``--resume`` continues only the same training: same architecture, dataset and classes."""
    old = schema.load(CheckpointMeta, out / META_NAME)
    for what, a, b in (("architecture", old.summary, meta.summary), ("dataset", old.dataset, meta.dataset),
                       ("classes", old.class_names, meta.class_names), ("image size", old.size, meta.size)):
        if a != b:
            raise UserError(f"--resume: {out} holds a checkpoint of another {what} ({a} vs {b}); "
                            f"use another --out")


@dataclasses.dataclass
class Retrained:
    """A finished retrain: the best epoch's meta (what ``meta.json`` says), every epoch's result, and the
    network with the best epoch's weights (what ``best.pt`` holds), so a caller scores it without reading
    back the files it just wrote."""
    meta: CheckpointMeta
    history: list[schema.EpochResult]
    model: SegNet


def retrain(arch: dict, data_cfg: DataSettings, train_cfg: TrainSettings, out: Path, *, resume: bool = False,
            force: bool = False, data: SegData | None = None, progress: bool = False,
            log: Callable[[str], None] | None = None) -> Retrained:
    """Train ``arch`` on ``data_cfg``'s data (``data``: already loaded from it) with checkpoints in ``out``.

    An existing checkpoint in ``out`` is continued with ``resume`` (same architecture, dataset and
    classes only), replaced with ``force``, and otherwise refused. ``progress``: a bar on stderr;
    ``log``: where the lines about resuming and the arithmetic go (nowhere by default).
    """
    log = log or (lambda _: None)
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file; give a folder for the checkpoint")
    present = [f for f in CHECKPOINT_FILES if (out / f).exists()]
    if resume and force:
        raise UserError("--resume and --force contradict each other: continue, or start over")
    if present and not resume and not force:
        raise UserError(f"{out} already holds a checkpoint ({', '.join(present)}); --resume continues it, "
                        f"--force replaces it, or choose another --out")
    data = data if data is not None else load_dataset(data_cfg)
    torch.manual_seed(train_cfg.seed)  # the initial weights are the seed's too
    model = SegNet(arch, data.num_classes, data.in_channels)
    path = compute_path(resolve_device(train_cfg.device), train_cfg.amp, train_cfg.channels_last)
    meta = dataclasses.replace(_meta_for(arch, data, data_cfg, train_cfg, model), compute=str(path))
    state = None
    if resume and (out / "last.pt").is_file():
        _check_resume(out, meta)
        state = _torch_load(out / "last.pt")
        done = int(state.get("epoch", 0))
        if done >= train_cfg.epochs:
            raise UserError(f"--resume: {out} has trained {done} epochs already; --epochs {train_cfg.epochs} leaves "
                            f"none to train (give more epochs, or --force to start over)")
        log(f"resuming after epoch {done} from {out / 'last.pt'}")
    elif resume:
        log(f"--resume: no last.pt in {out}; starting from scratch")
    out.mkdir(parents=True, exist_ok=True)

    from ..training.trainer import fit

    bar = Progress(train_cfg.epochs, f"retrain {out.name}", "epoch") if progress else None
    best_weights: dict[str, torch.Tensor] | None = None

    def on_epoch(result, scores: Scores) -> None:
        if bar:
            bar.update()
            bar.note(f"epoch {result.epoch}: loss {result.loss:.4f} val dice {scores.dice:.4f} miou {scores.miou:.4f}")

    def on_checkpoint(st: dict, is_best: bool) -> None:
        nonlocal best_weights
        atomic_torch_save(st, out / "last.pt")
        if is_best:
            atomic_torch_save({"model": st["model"]}, out / "best.pt")
            best_weights = {k: v.detach().clone() for k, v in st["model"].items()}  # the live tensors train on
            best = st["history"][-1]
            schema.save(dataclasses.replace(meta, epoch=st["epoch"], best=schema.EpochResult(**best),
                                            best_scores=Scores(**st["best"])), out / META_NAME)

    log(f"training on {path}")
    if bar and state is not None:
        bar.update(int(state.get("epoch", 0)))
    try:
        result = fit(model, data, train_cfg, on_epoch=on_epoch, on_checkpoint=on_checkpoint, resume=state)
    finally:
        if bar:
            bar.close()
    # a resumed training whose new epochs did not beat the best keeps the best from before
    model.load_state_dict(best_weights if best_weights is not None else _torch_load(out / "best.pt")["model"])
    return Retrained(schema.load(CheckpointMeta, out / META_NAME), result.history, model.eval())
