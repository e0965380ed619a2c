"""nni_seg: neural architecture search for semantic segmentation on Microsoft NNI 3.0.

The front door. Importing the package is cheap (no torch, no NNI); each name loads its module on first use::

    from nni_seg import SegNet, load_arch, unet_arch
    net = SegNet(unet_arch(), num_classes=11)          # a plain torch.nn.Module
    winner = SegNet(load_arch("top_arch.json"), 11)    # the export of a search
    logits = net(images)                               # (B, 11, H, W)
"""
from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# public name -> the module that owns it
_OWNERS = {
    "SegNet": "space.net", "CHOICES": "space.arch", "RECIPE_CHOICES": "space.arch", "seed_arch": "space.arch",
    "unet_arch": "space.arch", "load_arch": "space.arch", "load_recipe": "space.arch", "validate_arch": "space.arch",
    "arch_summary": "space.arch", "count_macs": "space.cost", "draw": "space.draw",
    "SegData": "data", "load_dataset": "data",
    "DataSettings": "config.settings", "TrainSettings": "config.settings",
    "fit": "training.trainer", "compute_path": "training.precision",
    "retrain": "deploy", "evaluate": "deploy", "predict": "deploy", "export_onnx": "deploy", "load_checkpoint": "deploy",
    "run_experiment": "workflow.run", "top_architecture": "workflow.export", "run_tune": "workflow.tune",
    "run_recipe": "workflow.recipe",
}
__all__ = ["__version__", *_OWNERS]


def __getattr__(name: str) -> Any:
    if name not in _OWNERS:
        raise AttributeError(f"module 'nni_seg' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_OWNERS[name]}", __name__), name)
    globals()[name] = value  # later lookups skip this hook
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
