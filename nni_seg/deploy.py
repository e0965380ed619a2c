"""The winner, end to end: ``retrain`` an architecture with checkpoints, then ``evaluate``, ``predict``
and ``export_onnx`` with a checkpoint. Library functions; the commands are in :mod:`nni_seg.cli`.

A checkpoint folder holds ``meta.json`` (:class:`~nni_seg.schema.CheckpointMeta`: architecture, classes,
normalisation, settings, best scores) and plain state dicts: ``best.pt`` (weights with the best val
Dice) and ``last.pt`` (weights, optimizer, scheduler and history of the last epoch, for ``resume``),
loaded with ``torch.load(weights_only=True)``: no arbitrary object is ever unpickled. None of this
needs NNI.
"""
from __future__ import annotations

import dataclasses
import pickle
import zipfile
from pathlib import Path

import torch
import torch.nn.functional as F

from . import schema
from .arch import arch_summary
from .data import SegData, default_palette, load_dataset, read_image
from .errors import DataError, RecordError, UserError
from .files import atomic_path, atomic_write_bytes, check_output
from .metrics import SegMetric
from .net import SegNet
from .progress import Progress
from .schema import META_NAME, CheckpointMeta, Scores
from .settings import DataSettings, TrainSettings
from .precision import ComputePath, compute_path
from .train import Normalizer, resolve_device, scores_of

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
    from .arch import validate_arch

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
    from .cost import count_macs, count_params

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


def retrain(arch: dict, data_cfg: DataSettings, train_cfg: TrainSettings, out: Path, *, resume: bool = False,
            force: bool = False, data: SegData | None = None, progress: bool = True) -> tuple[CheckpointMeta, list]:
    """Train ``arch`` on ``data_cfg``'s data (``data``: already loaded from it) with checkpoints in ``out``.

    An existing checkpoint in ``out`` is continued with ``resume`` (same architecture, dataset and
    classes only), replaced with ``force``, and otherwise refused. Returns (best checkpoint's meta, history).
    """
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
        print(f"resuming after epoch {done} from {out / 'last.pt'}", flush=True)
    elif resume:
        print(f"--resume: no last.pt in {out}; starting from scratch", flush=True)
    out.mkdir(parents=True, exist_ok=True)

    from .train import fit

    steps_done = [0]
    bar = Progress(train_cfg.epochs, f"retrain {out.name}", "epoch") if progress else None

    def on_epoch(result, scores: Scores) -> None:
        if bar:
            bar.update()
            bar.note(f"epoch {result.epoch}: loss {result.loss:.4f} val dice {scores.dice:.4f} miou {scores.miou:.4f}")

    def on_checkpoint(st: dict, is_best: bool) -> None:
        atomic_torch_save(st, out / "last.pt")
        if is_best:
            atomic_torch_save({"model": st["model"]}, out / "best.pt")
            best = st["history"][-1]
            schema.save(dataclasses.replace(meta, epoch=st["epoch"], best=schema.EpochResult(**best),
                                            best_scores=Scores(**st["best"])), out / META_NAME)

    print(f"training on {path}", flush=True)
    if bar and state is not None:
        bar.update(int(state.get("epoch", 0)))
    try:
        result = fit(model, data, train_cfg, on_epoch=on_epoch, on_checkpoint=on_checkpoint, resume=state,
                     on_step=lambda s, n: steps_done.__setitem__(0, steps_done[0] + 1))
    finally:
        if bar:
            bar.close()
    return schema.load(CheckpointMeta, out / META_NAME), result.history


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


@torch.no_grad()
def _score(model: SegNet, norm: Normalizer, images: torch.Tensor, masks: torch.Tensor | list[torch.Tensor],
           data: SegData, path: ComputePath, batch: int, bar: Progress | None) -> SegMetric:
    """One confusion matrix over a split. With ``masks`` a list (native resolution), each image's logits
    are upsampled (bilinear, in fp32) to its mask's size before the argmax, as published scores are computed."""
    device = path.device
    metric = SegMetric(data.num_classes, data.ignore_index, data.background)
    model = path.model(model.to(device).eval())
    for i in range(0, len(images), batch):
        with path.autocast():
            logits = model(path.input(norm(images[i:i + batch].to(device))))  # (B, C, h, w)
        logits = logits.float()
        if isinstance(masks, list):
            for j, m in enumerate(masks[i:i + batch]):
                up = F.interpolate(logits[j:j + 1], size=tuple(m.shape), mode="bilinear", align_corners=False)
                metric.update(up.argmax(1), m[None].to(device))
        else:
            metric.update(logits.argmax(1), masks[i:i + batch].to(device))
        if bar:
            bar.update(min(batch, len(images) - i))
    return metric


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
    check_classes(meta, data, str(ckpt))
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
        metric = _score(model, Normalizer(meta.mean, meta.std).to(dev), images, masks, data, path,
                        meta.train.eval_batch_size, bar)
    finally:
        if bar:
            bar.close()
    return EvalReport(scores=scores_of(metric), class_names=meta.class_names, split=split, images=len(images),
                      resolution=resolution, dataset=data.name, compute=str(path),
                      confusion=metric.confusion.cpu().tolist() if confusion else None)


def _output_names(images: list[str]) -> list[str]:
    """An output stem per input that no other input shares: the file stem, prefixed by its folder's name
    (and then a counter) where stems collide, so no prediction overwrites another."""
    stems = [Path(p).stem for p in images]
    out, seen = [], set()
    for p, stem in zip(images, stems):
        name = stem if stems.count(stem) == 1 else f"{Path(p).parent.name}_{stem}"
        base, k = name, 2
        while name in seen:
            name, k = f"{base}-{k}", k + 1
        seen.add(name)
        out.append(name)
    return out


def _find_mask(masks_dir: Path, stem: str) -> Path:
    for suffix in (".png", ".bmp", ".tif", ".tiff"):
        if (masks_dir / f"{stem}{suffix}").is_file():
            return masks_dir / f"{stem}{suffix}"
    raise DataError(f"no mask for image {stem!r} in {masks_dir} (looked for {stem}.png, .bmp, .tif)")


def _png(arr) -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "PNG")
    return buf.getvalue()


@torch.no_grad()
def predict(ckpt: str | Path, images: list[str], out: Path, masks_dir: str | Path | None = None,
            force: bool = False) -> list[Path]:
    """Colour masks and overlays for ``images``; with ``masks_dir`` (ground-truth masks named like the
    images) also ``<name>_compare.png``: image | ground truth | prediction side by side. Existing outputs
    are refused unless ``force``."""
    import numpy as np

    model, meta = load_checkpoint(ckpt)
    norm = Normalizer(meta.mean, meta.std)
    arith = compute_path(torch.device("cpu"), meta.train.amp, meta.train.channels_last)
    model = arith.model(model)
    palette = np.array(meta.palette or default_palette(len(meta.class_names)), dtype=np.uint8)
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file; give a folder")
    names = _output_names(images)
    kinds = ("mask", "overlay") + (("compare",) if masks_dir else ())
    targets = [out / f"{n}_{k}.png" for n in names for k in kinds]
    for t in targets:
        check_output(t, force=force, what="prediction")
    if masks_dir is not None and not Path(masks_dir).is_dir():
        raise UserError(f"--masks {masks_dir} is not a folder")
    written = []
    for path, name in zip(images, names):
        rgb = read_image(Path(path), "RGB" if meta.in_channels == 3 else "L")
        truth = read_image(_find_mask(Path(masks_dir), Path(path).stem), "mask") if masks_dir else None
        x = torch.from_numpy(rgb).reshape(rgb.shape[0], rgb.shape[1], -1).permute(2, 0, 1)[None].float()
        h, w = x.shape[-2:]
        xs = F.interpolate(x, size=tuple(meta.size), mode="bilinear", align_corners=False)
        with arith.autocast():
            logits = model(arith.input(norm(xs)))
        pred = F.interpolate(logits.float(), size=(h, w), mode="bilinear", align_corners=False).argmax(1)[0].numpy()
        colour = palette[pred]
        base = rgb if rgb.ndim == 3 else np.stack([rgb] * 3, -1)
        files = {"mask": colour, "overlay": (0.5 * base + 0.5 * colour).astype(np.uint8)}
        if truth is not None:
            if truth.shape != pred.shape:
                raise DataError(f"mask for {path} is {truth.shape[1]}x{truth.shape[0]}, the image {w}x{h}")
            gt = np.where(truth[..., None] < len(palette), palette[np.clip(truth, 0, len(palette) - 1)], 0)
            gap = np.full((h, 4, 3), 255, np.uint8)
            files["compare"] = np.concatenate([base, gap, gt.astype(np.uint8), gap, colour], 1)
        for kind, arr in files.items():
            written.append(atomic_write_bytes(out / f"{name}_{kind}.png", _png(arr)))
    return written


def export_onnx(ckpt: str | Path, out: Path, opset: int = 17, atol: float = 1e-3, force: bool = False) -> dict:
    """Export a checkpoint to ONNX and check it against PyTorch with onnxruntime.

    The graph includes the normaliser: input ``image`` (N, C, H, W) float32 pixel values in [0, 255]
    (batch, height and width dynamic), output ``logits`` (N, classes, H, W). Parity: max abs difference
    of the logits on random images at the trained size, batch 2, and at two other sizes (odd ones too: the
    graph must really be dynamic); above ``atol`` anywhere raises and leaves no ONNX file behind.
    """
    import warnings

    import numpy as np

    try:
        import onnxruntime as ort
    except ImportError:
        raise UserError("onnx export needs onnx and onnxruntime: pip install -r requirements-deploy.txt") from None
    out = check_output(out, force=force, what="ONNX file")
    model, meta = load_checkpoint(ckpt)
    net = torch.nn.Sequential(Normalizer(meta.mean, meta.std), model).eval()
    x = torch.randint(0, 256, (2, meta.in_channels, *meta.size), generator=torch.Generator().manual_seed(0)).float()
    with atomic_path(out) as tmp:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the TorchScript exporter: stable for plain CNNs
            torch.onnx.export(net, (x,), tmp, dynamo=False, opset_version=opset, input_names=["image"],
                              output_names=["logits"], dynamic_axes={"image": {0: "batch", 2: "height", 3: "width"},
                                                                     "logits": {0: "batch", 2: "height", 3: "width"}})
        sess = ort.InferenceSession(tmp, providers=["CPUExecutionProvider"])
        h, w = meta.size
        low = 2 ** (model.n_levels - 1)
        sizes = [(h, w), (max(low, h // 2 + 1), max(low, w // 2 + 3)), (h + low + 1, w + 1)]
        diffs, agree = [], 1.0
        for i, (sh, sw) in enumerate(sizes):
            xi = x if i == 0 else torch.randint(0, 256, (1, meta.in_channels, sh, sw),
                                                generator=torch.Generator().manual_seed(i)).float()
            with torch.no_grad():
                ref = net(xi).numpy()
            try:
                got = sess.run(["logits"], {"image": xi.numpy()})[0]
            except Exception as e:  # onnxruntime's own errors: a graph fixed to the traced size
                raise UserError(f"ONNX export of {ckpt} is not dynamic: onnxruntime fails at {sh}x{sw} "
                                f"({' '.join(str(e).split())[:160]}); nothing written") from None
            if got.shape != ref.shape:
                raise UserError(f"ONNX export of {ckpt} is not dynamic: {sh}x{sw} gives logits {got.shape[2]}x"
                                f"{got.shape[3]}, PyTorch {ref.shape[2]}x{ref.shape[3]}; nothing written")
            diffs.append(float(np.abs(got - ref).max()))
            if i == 0:
                agree = float((got.argmax(1) == ref.argmax(1)).mean())
            if not diffs[-1] <= atol:
                raise UserError(f"ONNX parity check failed for {ckpt} at {sh}x{sw}: max abs diff {diffs[-1]:.3g} > "
                                f"{atol}; nothing written")
    return {"path": str(out), "max_abs_diff": max(diffs), "argmax_agreement": agree, "opset": opset,
            "input_shape": list(x.shape), "checked_sizes": [list(s) for s in sizes], "bytes": out.stat().st_size}


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
