"""The embedded digit-scenes dataset: generated, no download."""
from __future__ import annotations


import numpy as np
import torch
import torch.nn.functional as F

from ..config.settings import DataSettings
from ..errors import DataError
from .cache import cache_dir, cached
from .segdata import SegData, Want


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


DIGITS_MIN_SIZE = 10  # the smallest glyph region is 8-10 px


def load_digits_scenes(cfg: DataSettings, want: Want) -> SegData:
    size = cfg.size or (48, 48)
    if min(size) < DIGITS_MIN_SIZE:
        raise DataError(f"--size {size[0]} {size[1]}: digit scenes need at least {DIGITS_MIN_SIZE}x{DIGITS_MIN_SIZE}")
    if want.test:
        raise DataError("dataset digits has no test split (its val scenes use held-out glyphs)")
    n_train, n_val = cfg.num_train or 256, cfg.num_val or 64

    def make() -> SegData:
        tx, ty = digit_scenes(n_train, size, cfg.data_seed, "train")
        vx, vy = digit_scenes(n_val, size, cfg.data_seed, "val")
        return SegData("digits", tx, ty, vx, vy, ["background", *TEXTURES], ignore_index=None, background=0,
                       palette=[(0, 0, 0), (230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200)],
                       info={"generator": "digit_scenes", "seed": cfg.data_seed})

    data = cached({"digits": [n_train, n_val, list(size), cfg.data_seed]}, cache_dir(), make)
    if want.native:
        data.native = {"val": list(data.val_masks)}
    return data
