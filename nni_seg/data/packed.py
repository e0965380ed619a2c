"""One ``.npz`` per dataset (``python -m nni_seg pack-data``): compact, quick to load and to ship."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..files import atomic_path
from ..config.settings import DataSettings
from ..errors import DataError
from .cache import cache_dir, cached, file_digest
from .folders import _splits, check_mask_size
from .segdata import SPLITS, SegData, Want, _assemble, resize


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
