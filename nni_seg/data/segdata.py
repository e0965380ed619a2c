"""A dataset in memory (:class:`SegData`), what a loader is asked for (:class:`Want`), and held-out selection."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import DataError


SPLITS = ("train", "val", "test")


@dataclass
class SegData:
    """A dataset in memory. Images (N, C, H, W) uint8 at the working size, masks (N, H, W) uint8 class
    indices at the same size; ``native`` holds, per split asked for, the masks at the resolution the
    source stores them (a list: sizes may differ), for scores comparable with published ones."""
    name: str
    train_images: torch.Tensor
    train_masks: torch.Tensor
    val_images: torch.Tensor
    val_masks: torch.Tensor
    class_names: list[str]
    ignore_index: int | None = None
    background: int | None = None  # left out of the mean Dice
    palette: list[tuple[int, int, int]] | None = None  # RGB per class, for predicted masks
    info: dict = field(default_factory=dict)
    test_images: torch.Tensor | None = None
    test_masks: torch.Tensor | None = None
    native: dict[str, list[torch.Tensor]] = field(default_factory=dict)
    names: dict[str, list[str]] = field(default_factory=dict)  # per split, each image's name (file stem)

    def __post_init__(self) -> None:
        """Every loader's data, however it was read (folders, a packed file, the cache, generated), is checked
        here, once: shapes, non-empty train and val splits, label values within the classes."""
        where = self.info.get("packed") or self.info.get("root") or self.name
        c, ignore = len(self.class_names), self.ignore_index
        for split in SPLITS:
            x, y = getattr(self, f"{split}_images"), getattr(self, f"{split}_masks")
            if x is None and split == "test":
                continue
            if x is None or y is None or len(x) == 0:
                raise DataError(f"{where}: the {split} split is empty")
            if x.ndim != 4 or y.ndim != 3 or x.dtype != torch.uint8 or y.dtype != torch.uint8:
                raise DataError(f"{where}: {split} images must be (N, C, H, W) uint8 and masks (N, H, W) uint8, got "
                                f"{tuple(x.shape)} {x.dtype} and {tuple(y.shape)} {y.dtype}")
            if len(x) != len(y) or x.shape[-2:] != y.shape[-2:]:
                raise DataError(f"{where}: {split} has {len(x)} images of {x.shape[-2]}x{x.shape[-1]} but {len(y)} "
                                f"masks of {y.shape[-2]}x{y.shape[-1]}")
            if split in self.names and len(self.names[split]) != len(x):
                raise DataError(f"{where}: {split} has {len(x)} images but {len(self.names[split])} names")
            for masks in [y, *self.native.get(split, [])]:
                if int(masks.max()) < c:  # one cheap pass on every load (trials read the cache): all in range
                    continue
                values = torch.unique(masks)
                bad = values[(values >= c) & (values != (ignore if ignore is not None else -1))]
                if bad.numel():
                    raise DataError(f"{where}: {split} masks have label value(s) {bad.tolist()[:5]} outside classes "
                                    f"0..{c - 1}" + (f" and ignore {ignore}" if ignore is not None else ""))

    def split(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        """(images, masks) of ``train``, ``val`` or ``test``."""
        if name not in SPLITS:
            raise DataError(f"unknown split {name!r}; valid: {', '.join(SPLITS)}")
        images, masks = getattr(self, f"{name}_images"), getattr(self, f"{name}_masks")
        if images is None:
            raise DataError(f"dataset {self.name} has no labelled {name} split here")
        return images, masks

    def colours(self) -> list[tuple[int, int, int]]:
        """One RGB colour per class: the dataset's palette, else a generated one."""
        return [tuple(c) for c in self.palette] if self.palette else default_palette(self.num_classes)

    def class_weights(self, kind: str = "median_freq") -> torch.Tensor:
        """(C,) float loss weights from the training masks' pixel counts (ignore value left out).

        ``median_freq``: median(freq) / freq_c (Eigen & Fergus); a class absent from the training
        masks gets weight 0. ``none``: all ones.
        """
        c = self.num_classes
        if kind == "none":
            return torch.ones(c)
        if kind != "median_freq":
            raise DataError(f"unknown class weighting {kind!r}; valid: median_freq, none")
        y = self.train_masks.reshape(-1).long()
        counts = torch.bincount(y[y < c], minlength=c).float()
        freq = counts / counts.sum().clamp_min(1)
        present = counts > 0
        w = torch.zeros(c)
        w[present] = freq[present].median() / freq[present]
        return w

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def in_channels(self) -> int:
        return self.train_images.shape[1]

    @property
    def size(self) -> tuple[int, int]:
        return tuple(self.train_images.shape[-2:])


@dataclass(frozen=True)
class Want:
    """What a loader is asked for beyond train and val: the test split (True: required, None: if the
    dataset has one, False: not), the masks at their native resolution, and a progress callback
    (``progress(n)`` after each n images read from files)."""
    test: bool | None = False
    native: bool = False
    progress: Callable[[int], None] | None = None


def colourize(mask, palette) -> np.ndarray:
    """(H, W) class indices -> (H, W, 3) uint8 colours of ``palette``; an index outside it (void) is black.
    The one colouring of masks: predictions, ground truth, the recipe's grid."""
    pal, m = np.asarray(palette, dtype=np.uint8), np.asarray(mask)
    return np.where((m < len(pal))[..., None], pal[np.clip(m, 0, len(pal) - 1)], 0).astype(np.uint8)


def default_palette(n: int) -> list[tuple[int, int, int]]:
    """``n`` distinct colours: the PASCAL VOC bit-interleaving scheme (class 0 is black)."""
    out = []
    for i in range(n):
        r = g = b = 0
        c = i
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        out.append((r, g, b))
    return out


def resize(x: torch.Tensor, y: torch.Tensor, size: tuple[int, int] | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Images (N, C, H, W) uint8 bilinear, masks (N, H, W) uint8 nearest, to ``size`` (None: unchanged)."""
    if size is None or tuple(y.shape[-2:]) == tuple(size):
        return x, y
    x = F.interpolate(x.float(), size=size, mode="bilinear", align_corners=False).round().clamp(0, 255).byte()
    y = F.interpolate(y[:, None].float(), size=size, mode="nearest")[:, 0].byte()
    return x, y


def _stems(pairs: dict[str, list[tuple[Path, Path]]]) -> dict[str, list[str]]:
    """Each split's image names: the images' file stems (``0001TP_006690``)."""
    return {split: [img.stem for img, _ in ps] for split, ps in pairs.items()}


def _assemble(name: str, loaded: dict[str, tuple], class_names: list[str], names: dict[str, list[str]] | None = None,
              **kw) -> SegData:
    """SegData from ``{split: (images, masks, native masks or None)}``; ``names``: per split, the images'
    names (for :func:`hold_out`)."""
    native = {split: v[2] for split, v in loaded.items() if v[2] is not None}
    test = loaded.get("test", (None, None, None))
    return SegData(name, *loaded["train"][:2], *loaded["val"][:2], class_names, test_images=test[0],
                   test_masks=test[1], native=native, names=dict(names or {}), **kw)


def hold_out(data: SegData, spec: str) -> SegData:
    """``data`` whose training images named by ``spec`` become the split trials select on (its ``val``),
    and are no longer trained on: a drive of CamVid (``0006R0``), a patient, a site. ``spec``: name
    prefixes, comma-separated, or ``@file`` listing one name or prefix per line. The dataset's own val
    split is set aside (trials never see it); its test split stays."""
    prefixes = _holdout_prefixes(spec)
    names = data.names.get("train")
    if not names:
        where = data.info.get("packed")
        raise DataError(f"holdout {spec!r}: dataset {data.name} has no image names" + (
            f" ({where} was packed before names were kept: pack it again with python -m nni_seg pack-data)"
            if where else ""))
    keep = torch.tensor([n.startswith(prefixes) for n in names])
    if not keep.any():
        raise DataError(f"holdout {spec!r} matches no training image (names look like {names[0]!r})")
    if keep.all():
        raise DataError(f"holdout {spec!r} matches every training image: nothing would be left to train on")
    idx, rest = keep.nonzero()[:, 0], (~keep).nonzero()[:, 0]
    picked = [names[i] for i in idx.tolist()]
    groups = sorted({p for p in prefixes if any(n.startswith(p) for n in picked)})
    info = {**data.info, "selection": f"held-out training images {','.join(groups)} ({len(idx)} of {len(names)})"}
    return dataclasses.replace(
        data, train_images=data.train_images[rest], train_masks=data.train_masks[rest],
        val_images=data.train_images[idx], val_masks=data.train_masks[idx], info=info,
        native={k: v for k, v in data.native.items() if k == "test"},
        names={**data.names, "train": [names[i] for i in rest.tolist()], "val": picked})


def _holdout_prefixes(spec: str) -> tuple[str, ...]:
    if spec.startswith("@"):
        path = Path(spec[1:]).expanduser()
        try:
            items = [line.strip() for line in path.read_text().splitlines()]
        except (OSError, UnicodeDecodeError) as e:
            raise DataError(f"holdout list {path} cannot be read: {e}") from None
    else:
        items = [p.strip() for p in spec.split(",")]
    items = [i for i in items if i and not i.startswith("#")]
    if not items:
        raise DataError(f"holdout {spec!r}: no names or prefixes given")
    return tuple(items)
