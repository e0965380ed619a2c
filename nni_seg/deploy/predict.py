"""Masks, overlays and comparisons for images, from a checkpoint."""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from ..data import colourize, default_palette, read_image
from ..errors import DataError, UserError
from ..files import atomic_write_bytes, check_output
from ..training.precision import compute_path
from ..training.trainer import Normalizer

from .checkpoint import load_checkpoint


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
    palette = meta.palette or default_palette(len(meta.class_names))
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
        colour = colourize(pred, palette)
        base = rgb if rgb.ndim == 3 else np.stack([rgb] * 3, -1)
        files = {"mask": colour, "overlay": (0.5 * base + 0.5 * colour).astype(np.uint8)}
        if truth is not None:
            if truth.shape != pred.shape:
                raise DataError(f"mask for {path} is {truth.shape[1]}x{truth.shape[0]}, the image {w}x{h}")
            gap = np.full((h, 4, 3), 255, np.uint8)
            files["compare"] = np.concatenate([base, gap, colourize(truth, palette), gap, colour], 1)
        for kind, arr in files.items():
            written.append(atomic_write_bytes(out / f"{name}_{kind}.png", _png(arr)))
    return written
