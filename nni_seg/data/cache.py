"""Decoded data kept between processes: the trials of one experiment decode or generate their data once."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..files import atomic_path
from .segdata import SPLITS, SegData


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
