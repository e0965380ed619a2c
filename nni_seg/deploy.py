"""The winner, end to end: ``retrain`` an exported architecture with checkpoints, ``evaluate`` and
``predict`` with a checkpoint.

A checkpoint folder holds ``meta.json`` (architecture, classes, normalisation, settings, metrics) and
plain state dicts: ``best.pt`` (weights with the best val Dice) and ``last.pt`` (weights, optimizer,
scheduler and history of the last epoch, for ``--resume``). They are loaded with
``torch.load(weights_only=True)``: no arbitrary object is ever unpickled.
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path

import torch

from .config import add_dataclass_args, from_args, from_dict
from .data import DataConfig, SegData, default_palette, read_image
from .records import atomic_path, atomic_write_json
from .train import TrainConfig


def atomic_torch_save(obj, path: Path) -> None:
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def load_checkpoint(ckpt: str | Path, which: str = "best"):
    """(model on CPU in eval mode, meta dict) from a checkpoint folder."""
    from .space import build_model

    ckpt = Path(ckpt)
    meta_path, weights = ckpt / "meta.json", ckpt / f"{which}.pt"
    if not meta_path.is_file() or not weights.is_file():
        raise FileNotFoundError(f"not a checkpoint folder (needs meta.json and {which}.pt): {ckpt}")
    meta = json.loads(meta_path.read_text())
    model = build_model(meta["arch"], len(meta["class_names"]), meta["in_channels"])
    state = torch.load(weights, map_location="cpu", weights_only=True)
    model.load_state_dict(state["model"] if "model" in state else state)
    return model.eval(), meta


def retrain(arch_file: str, data_cfg: DataConfig, train_cfg: TrainConfig, out: Path, resume: bool = False,
            data: SegData | None = None) -> dict:
    """Train ``arch_file`` on ``data_cfg``'s data (``data``: already loaded from it) with checkpoints in ``out``."""
    from .cost import count_macs, count_params
    from .data import load_dataset
    from .space import arch_summary, build_model
    from .train import Normalizer, fit
    from .trial import load_arch_file

    arch = load_arch_file(arch_file)
    data = data if data is not None else load_dataset(data_cfg)
    model = build_model(arch, data.num_classes, data.in_channels)
    out.mkdir(parents=True, exist_ok=True)
    norm = Normalizer.from_images(data.train_images)
    meta = {"arch": arch, "summary": arch_summary(arch), "class_names": data.class_names,
            "in_channels": data.in_channels, "ignore_index": data.ignore_index, "background": data.background,
            "palette": [list(c) for c in data.colours()], "size": list(data.size),
            "mean": norm.mean.flatten().tolist(), "std": norm.std.flatten().tolist(), "params": count_params(model), "mflops": round(count_macs(model, (1, data.in_channels, *data.size)) / 1e6, 3),
            "data": asdict(data_cfg), "train": asdict(train_cfg)}
    state = None
    if resume and (out / "last.pt").is_file():
        state = torch.load(out / "last.pt", map_location="cpu", weights_only=True)
        print(f"resuming after epoch {state['epoch']} from {out / 'last.pt'}", flush=True)

    def on_epoch(epoch: int, m: dict) -> None:
        bar = "#" * round(30 * epoch / train_cfg.epochs)
        print(f"[{bar:<30}] epoch {epoch}/{train_cfg.epochs} loss {m['loss']:.4f} val dice {m['dice']:.4f} "
              f"miou {m['miou']:.4f}", flush=True)

    def on_checkpoint(st: dict, is_best: bool) -> None:
        atomic_torch_save(st, out / "last.pt")
        if is_best:
            atomic_torch_save({"model": st["model"]}, out / "best.pt")
            atomic_write_json(out / "meta.json", {**meta, "epoch": st["epoch"], "best": st["best"]})

    result = fit(model, data, train_cfg, on_epoch=on_epoch, on_checkpoint=on_checkpoint, resume=state)
    return {**meta, "best": result["best"], "history": result["history"]}


def evaluate(ckpt: str, data_overrides: dict | None = None, split: str = "val", device: str = "auto",
             confusion: bool = False, data: SegData | None = None) -> dict:
    """Metrics of a checkpoint on a split of the data it was trained on (``data_overrides`` change it;
    ``data``: that data, already loaded); ``confusion`` adds the (C_true, C_pred) pixel-count matrix as
    nested lists."""
    from . import train
    from .data import load_dataset

    if split not in ("train", "val"):
        raise ValueError(f"unknown split {split!r}; valid: train, val")
    model, meta = load_checkpoint(ckpt)
    if data is None:
        data = load_dataset(from_dict(DataConfig, {**meta["data"], **(data_overrides or {})}, source=f"{ckpt}/meta.json"))
    images, masks = (data.train_images, data.train_masks) if split == "train" else (data.val_images, data.val_masks)
    dev = train.resolve_device(device)
    norm = train.Normalizer(meta["mean"], meta["std"]).to(dev)
    res = train.evaluate(model.to(dev), norm, images, masks, data, TrainConfig(device=device), dev, confusion)
    return {**res, "class_names": meta["class_names"], "split": split, "images": len(images)}


@torch.no_grad()
def predict(ckpt: str, images: list[str], out: Path) -> list[Path]:
    import numpy as np
    import torch.nn.functional as F
    from PIL import Image

    from .train import Normalizer

    model, meta = load_checkpoint(ckpt)
    norm = Normalizer(meta["mean"], meta["std"])
    palette = np.array(meta.get("palette") or default_palette(len(meta["class_names"])), dtype=np.uint8)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for path in images:
        rgb = read_image(Path(path), "RGB" if meta["in_channels"] == 3 else "L")
        x = torch.from_numpy(rgb).reshape(rgb.shape[0], rgb.shape[1], -1).permute(2, 0, 1)[None].float()
        h, w = x.shape[-2:]
        xs = F.interpolate(x, size=tuple(meta["size"]), mode="bilinear", align_corners=False)
        logits = model(norm(xs))
        pred = F.interpolate(logits, size=(h, w), mode="bilinear", align_corners=False).argmax(1)[0].numpy()
        colour = palette[pred]
        base = rgb if rgb.ndim == 3 else np.stack([rgb] * 3, -1)
        overlay = (0.5 * base + 0.5 * colour).astype(np.uint8)
        stem = Path(path).stem
        for name, arr in ((f"{stem}_mask.png", colour), (f"{stem}_overlay.png", overlay)):
            Image.fromarray(arr).save(out / name)
            written.append(out / name)
    return written


def export_onnx(ckpt: str, out: Path, opset: int = 17, atol: float = 1e-3) -> dict:
    """Export a checkpoint to ONNX and check it against PyTorch with onnxruntime.

    The ONNX graph includes the normaliser: input ``image`` (N, C, H, W) float32 pixel values in
    [0, 255] (batch, height and width dynamic; H and W divisible by 2**levels), output ``logits``
    (N, classes, H, W). Parity: max abs difference of the logits on random images at the trained
    size, batch 2; above ``atol`` raises and leaves no ONNX file behind.
    """
    import warnings

    import numpy as np

    from .train import Normalizer

    try:
        import onnxruntime as ort
    except ImportError:
        raise ValueError("onnx export needs onnx and onnxruntime: pip install -r requirements-deploy.txt") from None
    model, meta = load_checkpoint(ckpt)
    net = torch.nn.Sequential(Normalizer(meta["mean"], meta["std"]), model).eval()
    x = torch.randint(0, 256, (2, meta["in_channels"], *meta["size"]), generator=torch.Generator().manual_seed(0)).float()
    with atomic_path(out) as tmp:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # the TorchScript exporter: stable for plain CNNs
            torch.onnx.export(net, (x,), tmp, dynamo=False, opset_version=opset, input_names=["image"],
                              output_names=["logits"], dynamic_axes={"image": {0: "batch", 2: "height", 3: "width"},
                                                                     "logits": {0: "batch", 2: "height", 3: "width"}})
        sess = ort.InferenceSession(tmp, providers=["CPUExecutionProvider"])
        with torch.no_grad():
            ref = net(x).numpy()
        got = sess.run(["logits"], {"image": x.numpy()})[0]
        diff = float(np.abs(got - ref).max())
        agree = float((got.argmax(1) == ref.argmax(1)).mean())
        if not diff <= atol:
            raise ValueError(f"ONNX parity check failed for {ckpt}: max abs diff {diff:.3g} > {atol}")
    return {"path": str(out), "max_abs_diff": diff, "argmax_agreement": agree, "opset": opset,
            "input_shape": list(x.shape), "bytes": out.stat().st_size}


def _table(res: dict) -> str:
    lines = ["| class | Dice | IoU |", "|---|---|---|"]
    for name, d, i in zip(res["class_names"], res["dice_per_class"], res["iou_per_class"]):
        fmt = lambda v: "-" if v is None else f"{v:.4f}"  # noqa: E731
        lines.append(f"| {name} | {fmt(d)} | {fmt(i)} |")
    lines.append(f"| **mean** | **{res['dice']:.4f}** (foreground) | **{res['miou']:.4f}** |")
    return "\n".join(lines)


def main_retrain(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m nni_seg retrain", description="Full training of an exported architecture.")
    ap.add_argument("arch", help="exported top_arch.json, a plain architecture JSON, or 'seed'")
    ap.add_argument("--out", default="checkpoints/retrain", help="checkpoint folder (default %(default)s)")
    ap.add_argument("--resume", action="store_true", help="continue from <out>/last.pt")
    add_dataclass_args(ap, DataConfig, "data")
    add_dataclass_args(ap, TrainConfig, "training")
    args = ap.parse_args(argv)
    try:
        res = retrain(args.arch, from_args(DataConfig, args), from_args(TrainConfig, args), Path(args.out), args.resume)
    except (ValueError, FileNotFoundError, KeyError) as e:
        print(f"error: {e.args[0] if e.args else e}", file=sys.stderr)
        return 2
    b = res["best"]
    print(f"best val dice {b['dice']:.4f} miou {b['miou']:.4f} at epoch {b['epoch']}; checkpoint: {args.out}")
    return 0


def main_evaluate(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m nni_seg evaluate", description="Per-class Dice/IoU of a checkpoint.")
    ap.add_argument("ckpt", help="checkpoint folder written by retrain")
    ap.add_argument("--split", default="val")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--json", help="also write the metrics as JSON")
    add_dataclass_args(ap, DataConfig, "data (default: what the checkpoint was trained on)")
    args = ap.parse_args(argv)
    given = {k: getattr(args, k) for k in DataConfig.__dataclass_fields__ if getattr(args, k, None) is not None}
    try:
        res = evaluate(args.ckpt, given, args.split, args.device)
    except (ValueError, FileNotFoundError, KeyError) as e:
        print(f"error: {e.args[0] if e.args else e}", file=sys.stderr)
        return 2
    print(_table(res))
    if args.json:
        atomic_write_json(args.json, res)
    return 0


def main_predict(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m nni_seg predict", description="Colour masks and overlays for images.")
    ap.add_argument("ckpt")
    ap.add_argument("images", nargs="+")
    ap.add_argument("--out", default="predictions")
    args = ap.parse_args(argv)
    try:
        written = predict(args.ckpt, args.images, Path(args.out))
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e.args[0] if e.args else e}", file=sys.stderr)
        return 2
    print(f"written {len(written)} files to {args.out}")
    return 0


def main_onnx(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m nni_seg onnx",
                                 description="Export a checkpoint to ONNX, with a parity check against PyTorch.")
    ap.add_argument("ckpt", help="checkpoint folder written by retrain")
    ap.add_argument("out", help="ONNX file to write")
    ap.add_argument("--opset", type=int, default=17)
    ap.add_argument("--atol", type=float, default=1e-3, help="max abs logit difference allowed (default %(default)s)")
    args = ap.parse_args(argv)
    try:
        res = export_onnx(args.ckpt, Path(args.out), args.opset, args.atol)
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e.args[0] if e.args else e}", file=sys.stderr)
        return 2
    print(f"written: {res['path']} ({res['bytes']} bytes, opset {res['opset']}); parity on {res['input_shape']}: "
          f"max abs diff {res['max_abs_diff']:.2e}, argmax agreement {res['argmax_agreement']:.4f}")
    return 0
