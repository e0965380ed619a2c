import json
import random
from pathlib import Path

import pytest
import torch

from nni_seg.cost import count_macs, count_params
from nni_seg.space import (SegSpace, active_labels, build_model, decode_parameters, dumps_space,
                           legacy_search_space, search_space, seed_arch, validate_arch)

ROOT = Path(__file__).resolve().parents[1]


def random_arch(rng: random.Random) -> dict:
    return {label: rng.choice(list(m.values)) for label, m in search_space().items()}


def test_every_choice_is_single_categorical_with_readable_labels():
    space = search_space()
    assert "levels" in space and "enc1_op" in space and "dec1_skip" in space and "enc3_depth" in space
    assert set(space["enc1_op"].values) == {"conv3x3", "conv5x5", "sep3x3", "sep5x5", "dil3x3"}
    assert set(space["up"].values) == {"nearest", "bilinear", "deconv"}
    for d in legacy_search_space().values():
        assert d["_type"] == "choice"
    for d in legacy_search_space("layer_choice").values():
        assert d["_type"] == "layer_choice"


def test_seed_point_layer_shapes():
    """The seed's network: conv3x3-BN-ReLU 64/128/256, two pools, two upsamplings, no skips, 1x1 head."""
    model = build_model(seed_arch(), num_classes=11)
    convs = [(m.in_channels, m.out_channels, m.kernel_size) for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs == [(3, 64, (3, 3)), (64, 128, (3, 3)), (128, 256, (3, 3)),
                     (256, 128, (3, 3)), (128, 64, (3, 3)), (64, 11, (1, 1))]
    assert sum(isinstance(m, torch.nn.MaxPool2d) for m in model.modules()) == 1  # shared, applied twice
    assert model.n_levels == 3 and model.skips == [False, False]
    assert all(isinstance(m, torch.nn.ReLU) for m in model.modules() if isinstance(m, (torch.nn.ReLU, torch.nn.SiLU, torch.nn.GELU)))
    assert count_params(model) == 741003
    # 2.30 GMAC per 96x128 image, the figure measured for the seed net in ../shared/data/README.md
    assert count_macs(model, (1, 3, 96, 128)) / 1e9 == pytest.approx(2.30, abs=0.01)
    assert model(torch.zeros(2, 3, 32, 48)).shape == (2, 11, 32, 48)


def test_count_macs_hand_count():
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1, bias=False),
                              torch.nn.Conv2d(4, 4, 3, padding=1, groups=4),
                              torch.nn.ConvTranspose2d(4, 2, 2, stride=2))
    # 8*8*4 outputs x 3*9; 8*8*4 x 1*9; 8*8 inputs x 4 channels x 2*2*2
    assert count_macs(net, (1, 3, 8, 8)) == 256 * 27 + 256 * 9 + 64 * 4 * 8


@pytest.mark.parametrize("seed", range(6))
def test_random_samples_build_forward_and_every_param_gets_gradient(seed):
    arch = random_arch(random.Random(seed))
    # keep widths small for speed; the structure is what is random
    for i in range(1, 5):
        arch[f"enc{i}_width"] = search_space()[f"enc{i}_width"].values[0]
    model = build_model(arch, num_classes=5)
    x = torch.randn(2, 3, 24, 40)
    out = model(x)
    assert out.shape == (2, 5, 24, 40)
    out.square().mean().backward()
    dead = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not dead, f"parameters without gradient in {arch}: {dead}"


def test_levels_and_skips_change_topology():
    arch = dict(seed_arch(), levels=4, enc4_width=128, dec1_skip="concat", dec3_skip="concat")
    model = build_model(arch, num_classes=3)
    assert model.n_levels == 4 and model.skips == [True, False, True]
    assert model(torch.zeros(1, 3, 20, 28)).shape == (1, 3, 20, 28)  # odd sizes after pooling
    assert "enc4_op" in active_labels(arch) and "enc4_op" not in active_labels(seed_arch())


def test_validate_arch_errors_name_the_value():
    with pytest.raises(ValueError, match="unknown choice"):
        validate_arch(dict(seed_arch(), enc9_op="conv3x3"))
    with pytest.raises(ValueError, match="missing choice.*levels"):
        validate_arch({k: v for k, v in seed_arch().items() if k != "levels"})
    with pytest.raises(ValueError, match="enc1_op='conv7x7' is not one of"):
        validate_arch(dict(seed_arch(), enc1_op="conv7x7"))


def test_decode_parameters_formats():
    assert decode_parameters({"a": 1, "b": {"_value": "x", "_idx": 0}, "c": {"_name": "y"}}) == {"a": 1, "b": "x", "c": "y"}


def test_freeze_uses_space_instance():
    model = SegSpace(num_classes=2).freeze(seed_arch())
    assert model(torch.zeros(1, 3, 16, 16)).shape == (1, 2, 16, 16)


@pytest.mark.parametrize("kind,name", [("choice", "search_space.json"),
                                       ("layer_choice", "search_space_layer_choice.json")])
def test_committed_search_space_matches_code(kind, name):
    committed = (ROOT / "experiments" / name).read_text()
    assert committed == dumps_space(kind), (
        f"experiments/{name} drifted from the model space; regenerate: "
        f"python -m nni_seg space --kind {kind} --out experiments/{name}")
    assert json.loads(committed).keys() == search_space().keys()
