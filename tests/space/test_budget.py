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


def test_a_floor_keeps_out_the_networks_under_its_share_of_the_limit():
    size = [48, 64]
    small = dict(unet_arch(), levels=3, enc1_width=16)
    floored = Budget(size, max_mmacs_of="unet", min_share=0.5)
    assert floored.floor == round(0.5 * floored.limit, 3)
    assert floored.mmacs(small) < floored.floor and not floored.allows(small)
    assert Budget(size, max_mmacs_of="unet").allows(small)  # without the floor it is within the budget
    assert floored.allows(unet_arch())  # the reference itself sits at the limit, above the floor


@pytest.mark.parametrize("args,says", [({"size": [4, 4], "max_mmacs": 1}, "budget.size"), ({"size": [48, 64]}, "give"),
                                       ({"size": [48, 64], "max_mmacs_of": "vgg"}, "unknown network"),
                                       ({"size": [48, 64], "max_mmacs": 9, "min_share": 0}, "min_share"),
                                       ({"size": [48, 64], "max_mmacs": 9, "min_share": 1.5}, "min_share"),
                                       ({"size": [48, 64], "max_mmacs": 9, "min_share": True}, "min_share"),
                                       ({"size": [48, 64], "max_mmacs": 9, "min_share": "half"}, "min_share")])
def test_a_bad_tuner_budget_is_one_line(args, says):
    with pytest.raises(ValueError, match=says):
        Budget(**args)
