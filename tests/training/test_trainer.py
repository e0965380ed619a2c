import math

import pytest
import torch

from nni_seg.data import load_dataset
from nni_seg.training.losses import make_loss, soft_dice_loss
from nni_seg.space.net import SegNet
from nni_seg.config.settings import DataSettings as DataConfig
from nni_seg.config.settings import TrainSettings as TrainConfig
from nni_seg.training.trainer import TrainingDiverged, augment, fit


@pytest.fixture(scope="module")
def tiny_data():
    return load_dataset(DataConfig(size=(24, 24), num_train=16, num_val=8))


def test_two_steps_lower_the_loss(tiny_arch, tiny_data):
    torch.manual_seed(0)
    model = SegNet(tiny_arch, tiny_data.num_classes)
    x = tiny_data.train_images[:8].float() / 255
    y = tiny_data.train_masks[:8].long()
    loss_fn = make_loss("ce")
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(3):
        loss = loss_fn(model(x), y)
        losses.append(loss.item())
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert losses[2] < losses[0]


def test_fit_reports_each_epoch(tiny_arch, tiny_data):
    seen = []
    out = fit(SegNet(tiny_arch, tiny_data.num_classes), tiny_data,
              TrainConfig(epochs=2, batch_size=8, device="cpu"), on_epoch=lambda r, s: seen.append((r.epoch, s.dice)))
    assert [e for e, _ in seen] == [1, 2]
    assert 0 <= out.final.dice <= 1 and len(out.history) == 2
    assert out.history[1].loss < out.history[0].loss * 1.5
    assert out.device == "cpu" and out.images_per_second > 0
    assert out.best.dice == max(s for _, s in seen) and out.history[out.best_epoch - 1].dice == out.best.dice


def test_fit_with_void_label_and_scale_augmentation(tiny_arch):
    """Padding from a zoom-out must carry the dataset's ignore label (CamVid: 11), not an invalid class."""
    from nni_seg.data import SegData

    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (8, 3, 16, 16), generator=g, dtype=torch.uint8)
    y = torch.randint(0, 12, (8, 16, 16), generator=g, dtype=torch.uint8)
    data = SegData("void", x, y, x[:4], y[:4], [f"c{i}" for i in range(11)], ignore_index=11)
    out = fit(SegNet(tiny_arch, 11), data, TrainConfig(epochs=1, batch_size=4, device="cpu",
                                                          scale_min=0.5, scale_max=0.7))
    assert math.isfinite(out.history[0].loss)


def test_nan_loss_raises(tiny_arch, tiny_data):
    model = SegNet(tiny_arch, tiny_data.num_classes)
    model.head.register_forward_hook(lambda m, i, o: o * float("nan"))  # a diverged network's logits
    with pytest.raises(TrainingDiverged, match="loss became nan at epoch 1"):
        fit(model, tiny_data, TrainConfig(epochs=1, batch_size=8, device="cpu"))


def test_augment_keeps_image_and_mask_aligned():
    gen = torch.Generator().manual_seed(0)
    x = torch.arange(16.0).view(1, 1, 4, 4).repeat(4, 1, 1, 1)
    y = torch.arange(16).view(1, 4, 4).repeat(4, 1, 1)
    for _ in range(10):
        ax, ay = augment(x, y, TrainConfig(scale_min=1.0, scale_max=1.0), gen)
        assert torch.equal(ax[:, 0].long(), ay)
    ax, ay = augment(x, y, TrainConfig(scale_min=0.5, scale_max=0.6), gen)
    assert ax.shape == x.shape and ay.shape == y.shape and (ay == -1).any()  # padded with ignore


def test_soft_dice_loss_perfect_and_ignored():
    target = torch.tensor([[[0, 1], [1, 255]]])
    logits = torch.nn.functional.one_hot(torch.tensor([[[0, 1], [1, 0]]]), 2).permute(0, 3, 1, 2).float() * 50
    assert soft_dice_loss(logits, target, ignore_index=255).item() == pytest.approx(0, abs=1e-4)
    assert make_loss("ce+dice", ignore_index=255)(logits, target).item() < 1e-3
    with pytest.raises(KeyError, match="valid: ce, ce\\+dice"):
        make_loss("focal")


class _ModeSpy(torch.nn.Module):
    """A 1x1 conv that remembers the mode of each forward pass."""

    def __init__(self, classes: int):
        super().__init__()
        self.conv, self.modes = torch.nn.Conv2d(3, classes, 1), []

    def forward(self, x):
        self.modes.append(self.training)
        return self.conv(x)


@pytest.mark.parametrize("eval_mode", [True, False])
def test_the_scorer_runs_in_the_mode_asked_and_gives_the_model_its_mode_back(tiny_data, eval_mode):
    from nni_seg.training.precision import compute_path
    from nni_seg.training.trainer import Normalizer, score_split, split_metric

    model = _ModeSpy(tiny_data.num_classes).train()
    score_split(model, Normalizer.from_images(tiny_data.val_images), tiny_data.val_images, tiny_data.val_masks,
                split_metric(tiny_data), compute_path(torch.device("cpu"), False, False), batch=3, eval_mode=eval_mode)
    assert model.modes == [not eval_mode] * 3 and model.training


def test_the_scorer_counts_per_image_masks_at_the_input_size_as_the_batched_masks(tiny_data):
    from nni_seg.training.precision import compute_path
    from nni_seg.training.trainer import Normalizer, score_split, split_metric

    torch.manual_seed(0)
    model, norm = _ModeSpy(tiny_data.num_classes), Normalizer.from_images(tiny_data.val_images)
    path = compute_path(torch.device("cpu"), False, False)
    batched = score_split(model, norm, tiny_data.val_images, tiny_data.val_masks, split_metric(tiny_data), path, 4)
    listed = score_split(model, norm, tiny_data.val_images, list(tiny_data.val_masks), split_metric(tiny_data), path, 4)
    assert torch.equal(batched.confusion, listed.confusion) and int(batched.confusion.sum()) == 8 * 24 * 24
