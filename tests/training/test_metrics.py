import math

import pytest
import torch

from nni_seg.training.metrics import SegMetric, dice_per_class, get_stats, iou_per_class, nanmean


def test_get_stats_hand_computed():
    pred = torch.tensor([[[0, 1], [1, 1]]])
    target = torch.tensor([[[0, 1], [0, 2]]])
    tp, fp, fn = get_stats(pred, target, 3)
    assert tp.tolist() == [[1, 1, 0]]
    assert fp.tolist() == [[0, 2, 0]]
    assert fn.tolist() == [[1, 0, 1]]
    assert tp.shape == (1, 3)


def test_get_stats_ignore_index_counts_nowhere():
    pred = torch.tensor([[[0, 1], [1, 1]]])
    target = torch.tensor([[[0, 1], [0, 255]]])
    tp, fp, fn = get_stats(pred, target, 3, ignore_index=255)
    assert tp.tolist() == [[1, 1, 0]] and fp.tolist() == [[0, 1, 0]] and fn.tolist() == [[1, 0, 0]]


def test_dice_and_iou_values_and_empty_class():
    tp, fp, fn = torch.tensor([1, 1, 0, 0]), torch.tensor([0, 2, 0, 3]), torch.tensor([1, 0, 0, 0])
    dice = dice_per_class(tp, fp, fn)
    assert dice[0] == pytest.approx(2 / 3) and dice[1] == pytest.approx(0.5)
    assert math.isnan(dice[2])  # absent from prediction and truth: undefined
    assert dice[3] == 0  # predicted only: a miss
    iou = iou_per_class(tp, fp, fn)
    assert iou[0] == pytest.approx(0.5) and iou[1] == pytest.approx(1 / 3)
    assert nanmean(dice) == pytest.approx((2 / 3 + 0.5 + 0) / 3)
    assert nanmean(dice, exclude=0) == pytest.approx(0.25)


def test_accumulator_sums_stats_not_batch_means():
    """Dice over the whole set differs from the mean of per-batch Dice on purpose."""
    m = SegMetric(2, background=None)
    # batch 1: class 1 perfect on 1 pixel; batch 2: class 1 has 1 TP, 3 FN
    m.update(torch.tensor([[[1, 0, 0, 0]]]), torch.tensor([[[1, 0, 0, 0]]]))
    m.update(torch.tensor([[[1, 0, 0, 0]]]), torch.tensor([[[1, 1, 1, 1]]]))
    out = m.compute()
    # class 1: tp=2, fp=0, fn=3 -> 4/7; class 0: tp=3, fp=3, fn=0 -> 6/9
    assert out["dice_per_class"][1] == pytest.approx(4 / 7, abs=1e-6)
    assert out["dice_per_class"][0] == pytest.approx(6 / 9, abs=1e-6)
    assert out["dice"] == pytest.approx((4 / 7 + 6 / 9) / 2)
    per_batch_mean = (1.0 + 2 / 5) / 2
    assert abs(out["dice_per_class"][1] - per_batch_mean) > 0.1


def test_accumulator_background_void_and_logits():
    m = SegMetric(3, ignore_index=9, background=0)
    logits = torch.zeros(1, 3, 1, 4)
    logits[0, [0, 1, 2, 2], 0, [0, 1, 2, 3]] = 5.0  # argmax -> [0, 1, 2, 2]
    m.update(logits, torch.tensor([[[0, 1, 1, 9]]]))
    out = m.compute()
    assert out["dice_per_class"] == [1.0, pytest.approx(2 / 3, abs=1e-6), 0.0]
    assert out["dice"] == pytest.approx((2 / 3 + 0) / 2)  # background excluded
    assert out["pixel_acc"] == pytest.approx(2 / 3)


def test_accumulator_matches_get_stats():
    g = torch.Generator().manual_seed(0)
    pred, target = torch.randint(0, 4, (3, 8, 8), generator=g), torch.randint(0, 5, (3, 8, 8), generator=g)
    m = SegMetric(4, ignore_index=4)
    m.update(pred, target)
    tp, fp, fn = get_stats(pred, target, 4, ignore_index=4)
    mtp, mfp, mfn = m.stats()
    assert tp.sum(0).tolist() == mtp.long().tolist()
    assert fp.sum(0).tolist() == mfp.long().tolist() and fn.sum(0).tolist() == mfn.long().tolist()


def test_compute_before_update_raises():
    with pytest.raises(RuntimeError):
        SegMetric(2).compute()
