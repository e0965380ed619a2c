"""NNI's one-shot ENAS (weight sharing + RL controller) on the segmentation space.

A one-shot supernet shares weights across op and depth choices, not across widths or topologies,
so ENAS searches ``SegSpace(fixed=macro)``: the macro choices (levels, widths, skips, activation,
upsampling) are pinned, the cell ops and stage depths are searched.

NNI 3.0 with pytorch-lightning >= 2.1 misreads a plain ``(x, y)`` batch in
``EnasLightningModule.training_step`` as the legacy ``(batch, mode)`` pair. Our loaders therefore
yield ``((x, y), 0, tag)`` with ``tag`` 0 for train and 1 for validation batches: exactly the
``(batch, batch_idx, dataloader_idx)`` form that code expects (tested in tests/test_oneshot.py).
"""
from __future__ import annotations

import math

import torch
from nni.nas.evaluator.pytorch import DataLoader, Lightning, LightningModule, Trainer

from ..data import SegData
from ..training.losses import make_loss
from ..training.metrics import SegMetric
from ..training.precision import compute_path
from ..training.trainer import Normalizer, score_split


class _Split(torch.utils.data.Dataset):
    def __init__(self, images: torch.Tensor, masks: torch.Tensor):
        self.images, self.masks = images, masks

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        return self.images[i], self.masks[i]


class TaggedCollate:
    """Collate to ``((x, y), 0, tag)``: what NNI's ENAS training_step unpacks under PL >= 2.1."""

    def __init__(self, tag: int):
        self.tag = tag

    def __call__(self, items):
        x = torch.stack([a for a, _ in items])  # (B, C, H, W) uint8
        y = torch.stack([b for _, b in items])  # (B, H, W) uint8
        return (x, y), 0, self.tag


def untag(batch):
    """``((x, y), 0, tag)`` or ``(x, y)`` -> ``(x, y)``."""
    if len(batch) == 3 and isinstance(batch[0], (tuple, list)):
        return batch[0]
    return batch


class SegModule(LightningModule):
    """Segmentation training for NNI's Lightning evaluator; logs per-batch val Dice as ``default``.

    Counts the batches it saw per role (``seen``) so a test can check ENAS fed both loaders correctly.
    """

    def __init__(self, num_classes: int, ignore_index: int | None, background: int | None,
                 mean: list[float], std: list[float], lr: float = 3e-3, loss: str = "ce"):
        super().__init__()
        self.num_classes, self.ignore_index, self.background = num_classes, ignore_index, background
        self.lr = lr
        self.loss_fn = make_loss(loss, ignore_index if ignore_index is not None else -1)
        self.norm = Normalizer(mean, std)
        self.seen = {"train": 0, "val": 0}

    def forward(self, x):
        return self.model(self.norm(x))

    def training_step(self, batch, batch_idx):
        x, y = untag(batch)
        assert x.dim() == 4 and y.dim() == 3, f"batch misread: x {tuple(x.shape)}, y {tuple(y.shape)}"
        self.seen["train"] += 1
        loss = self.loss_fn(self(x), y.long())
        self.log("train_loss", loss)
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = untag(batch)
        assert x.dim() == 4 and y.dim() == 3, f"batch misread: x {tuple(x.shape)}, y {tuple(y.shape)}"
        self.seen["val"] += 1
        # per batch, not per split: ENAS takes each validation batch's ``default`` as its controller's reward,
        # in the mode its training step runs the supernet in
        metric = score_split(self.model, self.norm, x, y, SegMetric(self.num_classes, self.ignore_index, self.background),
                             compute_path(x.device, amp=False, channels_last=False), len(x), eval_mode=False)
        dice = metric.compute()["dice"]
        self.log("default", 0.0 if math.isnan(dice) else dice, prog_bar=True)

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=self.lr)


def lightning_evaluator(data: SegData, *, epochs: int, batch_size: int, lr: float, loss: str = "ce",
                        accelerator: str = "auto", max_seconds: float | None = None) -> Lightning:
    """NNI's Lightning evaluator of the supernet; ``max_seconds``: Lightning stops fitting after that long
    (checked between steps), whatever ``epochs`` says."""
    import datetime

    norm = Normalizer.from_images(data.train_images)
    module = SegModule(data.num_classes, data.ignore_index, data.background,
                       norm.mean.flatten().tolist(), norm.std.flatten().tolist(), lr=lr, loss=loss)
    train = DataLoader(_Split(data.train_images, data.train_masks), batch_size=batch_size, shuffle=True,
                       drop_last=True, collate_fn=TaggedCollate(0))
    val = DataLoader(_Split(data.val_images, data.val_masks), batch_size=batch_size, collate_fn=TaggedCollate(1))
    trainer = Trainer(max_epochs=epochs, accelerator=accelerator, logger=False, enable_checkpointing=False,
                      enable_progress_bar=False, enable_model_summary=False,
                      max_time=None if max_seconds is None else datetime.timedelta(seconds=max_seconds))
    return Lightning(module, trainer, train_dataloaders=train, val_dataloaders=val)
