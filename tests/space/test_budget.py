"""One budget check: the tuner's view before proposing and the trial's before training agree."""
import pytest

from nni_seg.config.settings import BudgetSettings
from nni_seg.space.arch import seed_arch, unet_arch
from nni_seg.space.budget import Budget, limit_mmacs, over_budget, reference_mmacs
from nni_seg.space.cost import count_macs
from nni_seg.space.net import SegNet


def test_the_unet_is_within_its_own_budget_on_both_sides():
    size = (48, 64)
    counted = round(count_macs(SegNet(unet_arch(), 11, 3), (1, 3, *size)) / 1e6, 3)  # what the trial records
    assert round(reference_mmacs("unet", 11, 3, size), 3) == counted
    assert Budget(list(size), max_mmacs_of="unet").allows(unet_arch())
    assert over_budget(counted, 1, BudgetSettings(max_mmacs_of="unet"), 11, 3, size) == []


def test_a_costlier_network_is_over_on_both_sides():
    size = (48, 64)
    limit = limit_mmacs(None, "unet", 11, 3, size)
    big = dict(seed_arch(), enc1_width=64, enc1_depth=3, enc2_depth=3)
    mmacs = count_macs(SegNet(big, 11, 3), (1, 3, *size)) / 1e6
    assert mmacs > limit and not Budget(list(size), max_mmacs_of="unet").allows(big)
    assert over_budget(mmacs, 1, BudgetSettings(max_mmacs_of="unet"), 11, 3, size)[0].endswith("(unet's)")
    assert over_budget(1.0, 10, BudgetSettings(max_params=5), 11, 3, size) == ["10 params > 5"]


@pytest.mark.parametrize("args,says", [({"size": [4, 4], "max_mmacs": 1}, "budget.size"), ({"size": [48, 64]}, "give"),
                                       ({"size": [48, 64], "max_mmacs_of": "vgg"}, "unknown network")])
def test_a_bad_tuner_budget_is_one_line(args, says):
    with pytest.raises(ValueError, match=says):
        Budget(**args)
