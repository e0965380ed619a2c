import json
import random
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from nni_seg.space.arch import (CHOICES, LEGACY_DEFAULTS, MACRO_LABELS, NAMED_ARCHS, RECIPE_CHOICES,
                                UNET_MACRO_LABELS, ArchError, active_labels, canonical, check_search_space,
                                decode_parameters, dumps_space, legacy_search_space, seed_arch, split_joint, unet_arch,
                                validate_arch)
from nni_seg.space.cost import count_macs, count_params
from nni_seg.space.net import SegNet

ROOT = Path(__file__).resolve().parents[2]


def random_arch(rng: random.Random, small: bool = True) -> dict:
    arch = {label: rng.choice(values) for label, values in CHOICES.items()}
    if small:  # keep widths small for speed; the structure is what is random
        for i in range(1, 5):
            arch[f"enc{i}_width"] = CHOICES[f"enc{i}_width"][0]
    return arch


def test_vocabulary_is_single_categoricals_with_readable_labels():
    assert {"levels", "act", "up", "context", "enc_op2", "enc_join", "dec_op2", "dec_join", "down2", "enc1_op",
            "enc4_width", "enc3_depth", "dec1_skip"} <= set(CHOICES)
    assert set(CHOICES["enc_op2"]) == {"none", "conv3x3", "conv5x5", "sep3x3", "sep5x5", "dil3x3", "maxpool3x3",
                                       "avgpool3x3", "identity"}
    assert CHOICES["enc_join"] == ("serial", "parallel_sum", "parallel_concat")
    assert CHOICES["down3"] == ("maxpool", "avgpool", "conv") and CHOICES["context"] == ("none", "aspp", "ppm")
    for d in legacy_search_space().values():
        assert d["_type"] == "choice"
    for d in legacy_search_space("layer_choice").values():
        assert d["_type"] == "layer_choice"


def test_seed_point_layer_shapes_are_unchanged():
    """The seed's network: conv3x3-BN-ReLU 64/128/256, two pools, two upsamplings, no skips, 1x1 head."""
    model = SegNet(seed_arch(), num_classes=11)
    convs = [(m.in_channels, m.out_channels, m.kernel_size) for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs == [(3, 64, (3, 3)), (64, 128, (3, 3)), (128, 256, (3, 3)),
                     (256, 128, (3, 3)), (128, 64, (3, 3)), (64, 11, (1, 1))]
    assert model.n_levels == 3 and model.skips == [False, False]
    assert count_params(model) == 741003
    # 2.30 GMAC per 96x128 image, the figure measured for the seed net in ../shared/data/README.md
    assert count_macs(model, (1, 3, 96, 128)) / 1e9 == pytest.approx(2.30, abs=0.01)
    assert model(torch.zeros(2, 3, 32, 48)).shape == (2, 11, 32, 48)


def test_unet_is_the_textbook_one():
    """4 levels, two conv3x3-BN-ReLU per level on both sides, 32/64/128/256, max-pools, bilinear, concat skips."""
    model = SegNet(unet_arch(), num_classes=11)
    convs = [(m.in_channels, m.out_channels) for m in model.modules()
             if isinstance(m, torch.nn.Conv2d) and m.kernel_size == (3, 3)]
    assert convs == [(3, 32), (32, 32), (32, 64), (64, 64), (64, 128), (128, 128), (128, 256), (256, 256),
                     (256 + 128, 128), (128, 128), (128 + 64, 64), (64, 64), (64 + 32, 32), (32, 32)]
    assert model.skips == [True, True, True] and all(u.mode == "bilinear" for u in model.ups)
    assert sum(isinstance(m, torch.nn.MaxPool2d) for m in model.downs) == 3
    # hand count at 96x128: the encoder's and decoder's 3x3 convs plus the 1x1 head
    px = [96 * 128 // 4 ** i for i in range(4)]
    enc = sum(p * (a * b * 9) for p, (a, b) in zip([px[0], px[0], px[1], px[1], px[2], px[2], px[3], px[3]], convs[:8]))
    dec = sum(p * (a * b * 9) for p, (a, b) in zip([px[2], px[2], px[1], px[1], px[0], px[0]], convs[8:]))
    assert count_macs(model, (1, 3, 96, 128)) == enc + dec + px[0] * 32 * 11


def test_count_macs_hand_count():
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1, bias=False),
                              torch.nn.Conv2d(4, 4, 3, padding=1, groups=4),
                              torch.nn.ConvTranspose2d(4, 2, 2, stride=2))
    # 8*8*4 outputs x 3*9; 8*8*4 x 1*9; 8*8 inputs x 4 channels x 2*2*2
    assert count_macs(net, (1, 3, 8, 8)) == 256 * 27 + 256 * 9 + 64 * 4 * 8


@pytest.mark.parametrize("seed", range(10))
def test_random_samples_build_forward_and_every_param_gets_gradient(seed):
    arch = random_arch(random.Random(seed))
    model = SegNet(arch, num_classes=5)
    out = model(torch.randn(2, 3, 24, 40))
    assert out.shape == (2, 5, 24, 40)
    out.square().mean().backward()
    dead = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not dead, f"parameters without gradient in {arch}: {dead}"


@pytest.mark.parametrize("op2", CHOICES["enc_op2"])
@pytest.mark.parametrize("join", CHOICES["enc_join"])
def test_every_cell_shape_builds_and_changes_the_network_as_labelled(op2, join):
    arch = dict(seed_arch(), enc1_width=16, enc2_width=32, enc3_width=64, enc_op2=op2, enc_join=join,
                dec_op2=op2, dec_join=join, context="aspp", down2="conv", down3="avgpool")
    model = SegNet(arch, num_classes=3)
    assert model(torch.randn(2, 3, 20, 28)).shape == (2, 3, 20, 28)  # odd sizes after pooling
    cell = model.encoder[1][0]
    if op2 == "none":
        assert cell.__class__.__name__ == "ConvBNAct"  # the seed's single-op cell
    else:
        assert cell.join == join and (cell.fuse is not None) == (join == "parallel_concat")


def test_context_blocks_and_downsampling():
    base = dict(seed_arch(), enc1_width=16, enc2_width=32, enc3_width=64)
    plain = SegNet(base, 3)
    assert not hasattr(plain, "context")
    aspp = SegNet(dict(base, context="aspp"), 3)
    ppm = SegNet(dict(base, context="ppm"), 3)
    assert type(aspp.context).__name__ == "ASPP" and len(aspp.context.branches) == 4  # 1x1 + 3 dilated
    assert [m.dilation for m in aspp.context.modules() if isinstance(m, torch.nn.Conv2d) and m.kernel_size == (3, 3)] \
        == [(2, 2), (4, 4), (6, 6)]
    assert type(ppm.context).__name__ == "PyramidPooling"
    for m in (aspp, ppm):
        assert m(torch.randn(2, 3, 16, 24)).shape == (2, 3, 16, 24)
        assert count_macs(m, (1, 3, 96, 128)) > count_macs(plain, (1, 3, 96, 128))
    strided = SegNet(dict(base, down2="conv"), 3)
    assert isinstance(strided.downs[0].conv, torch.nn.Conv2d) and strided.downs[0].conv.stride == (2, 2)


def test_levels_and_skips_change_topology():
    arch = dict(seed_arch(), levels=4, enc4_width=128, dec1_skip="concat", dec3_skip="concat")
    model = SegNet(arch, num_classes=3)
    assert model.n_levels == 4 and model.skips == [True, False, True]
    assert model(torch.zeros(1, 3, 20, 28)).shape == (1, 3, 20, 28)
    assert "enc4_op" in active_labels(arch) and "enc4_op" not in active_labels(seed_arch())
    assert "enc_join" not in active_labels(seed_arch())  # no second node: the join does nothing
    assert canonical(dict(seed_arch(), enc4_op="sep5x5", enc_join="parallel_sum")) == canonical(seed_arch())


def test_validate_arch_errors_name_the_value_and_the_type():
    with pytest.raises(ArchError, match="unknown choice"):
        validate_arch(dict(seed_arch(), enc9_op="conv3x3"))
    with pytest.raises(ArchError, match="missing choice.*levels"):
        validate_arch({k: v for k, v in seed_arch().items() if k != "levels"})
    with pytest.raises(ArchError, match="enc1_op='conv7x7' is not one of"):
        validate_arch(dict(seed_arch(), enc1_op="conv7x7"))
    with pytest.raises(ArchError, match="enc1_depth=True is not one of"):
        validate_arch(dict(seed_arch(), enc1_depth=True))  # true == 1 in Python, not in an architecture
    with pytest.raises(ArchError, match="enc1_width=64.0 is not one of"):
        validate_arch(dict(seed_arch(), enc1_width=64.0))
    with pytest.raises(ArchError, match="expected a JSON object"):
        validate_arch([1, 2])


def test_old_exports_build_the_same_network(tmp_path):
    """A top_arch.json of the first model space (no cell, downsampling or context labels) builds exactly
    today's network for it: same modules, same weights' names and shapes, same outputs."""
    old_labels = [label for label in CHOICES if label not in LEGACY_DEFAULTS]
    old = {label: seed_arch()[label] for label in old_labels}
    old.update(levels=4, enc4_width=128, dec2_skip="concat", up="deconv", enc2_op="sep5x5", enc2_depth=2)
    with pytest.raises(ArchError, match="missing choice"):
        validate_arch(old)
    path = tmp_path / "top_arch.json"
    path.write_text(json.dumps({"experiment_id": "old", "arch": old, "metrics": {"dice": 0.5, "mflops": 12.0}}))
    from nni_seg.space.arch import load_arch

    arch = load_arch(str(path))
    assert {k: arch[k] for k in LEGACY_DEFAULTS} == LEGACY_DEFAULTS
    torch.manual_seed(0)
    new = SegNet(arch, 4)
    keys = list(new.state_dict())
    assert keys[0] == "encoder.0.0.conv.weight" and "encoder.1.1.dw.weight" in keys and "ups.0.deconv.weight" in keys
    assert not any(k.startswith(("context", "downs")) for k in keys)  # max-pools have no weights


def test_decode_parameters_formats():
    assert decode_parameters({"a": 1, "b": {"_value": "x", "_idx": 0}, "c": {"_name": "y"}}) == {"a": 1, "b": "x", "c": "y"}


@pytest.mark.parametrize("kind,vocabulary,name", [("choice", "full", "search_space.json"),
                                                  ("layer_choice", "full", "search_space_layer_choice.json"),
                                                  ("choice", "single_op", "search_space_single_op.json"),
                                                  ("choice", "joint", "search_space_joint.json"),
                                                  ("choice", "unet_joint", "search_space_unet_joint.json")])
def test_committed_search_space_matches_code(kind, vocabulary, name):
    committed = (ROOT / "experiments" / name).read_text()
    assert committed == dumps_space(kind, vocabulary), (
        f"experiments/{name} drifted from the model space; regenerate: "
        f"python -m nni_seg space --kind {kind} --vocabulary {vocabulary} --out experiments/{name}")
    labels = [label for label in CHOICES if vocabulary != "single_op" or label not in LEGACY_DEFAULTS]
    joint = vocabulary in ("joint", "unet_joint")
    assert list(json.loads(committed)) == labels + (list(RECIPE_CHOICES) if joint else [])


def test_the_unet_joint_vocabulary_pins_only_the_unets_levels_and_skips():
    """Every trial of it has four levels and a skip at each; everything else is searched as in the joint space,
    and the U-Net itself (with any recipe) is one of its points."""
    space, joint = legacy_search_space(vocabulary="unet_joint"), legacy_search_space(vocabulary="joint")
    pinned = {label for label, spec in space.items() if spec != joint[label]}
    assert pinned == set(UNET_MACRO_LABELS) == {"levels", "dec1_skip", "dec2_skip", "dec3_skip"}
    assert {label: space[label]["_value"] for label in pinned} == {label: [unet_arch()[label]] for label in pinned}
    check_search_space(space, "unet_joint")
    last = {label: spec["_value"][-1] for label, spec in space.items()}
    arch, _ = split_joint(last)
    assert validate_arch(arch)["levels"] == 4 and all(arch[f"dec{i}_skip"] == "concat" for i in (1, 2, 3))


def test_the_single_op_vocabulary_is_the_first_space_and_its_trials_build():
    """Its parameters lack the labels added since; the trial fills them so that each cell is one op."""
    space = legacy_search_space(vocabulary="single_op")
    assert set(space) == set(CHOICES) - set(LEGACY_DEFAULTS)
    params = {label: d["_value"][-1] for label, d in space.items()}
    arch = validate_arch(decode_parameters(params), fill_legacy=True)
    assert {k: arch[k] for k in LEGACY_DEFAULTS} == LEGACY_DEFAULTS
    with pytest.raises(ValueError, match="unknown vocabulary 'tiny'; valid: full, single_op, joint, unet_joint"):
        legacy_search_space(vocabulary="tiny")


def test_nni_space_registers_exactly_the_vocabulary():
    from nni_seg.space.nni_space import search_space

    space = search_space()
    assert set(space) == set(CHOICES)
    for label, mutable in space.items():
        assert list(mutable.values) == list(CHOICES[label]), label


@pytest.mark.parametrize("seed", range(4))
def test_nni_frozen_sample_and_segnet_have_the_same_modules(seed):
    """NNI's own freezing of SegSpace (LayerChoice / Repeat resolved) and the plain SegNet agree on every
    weight's name and shape, and compute the same function from the same weights."""
    from nni_seg.space.nni_space import SegSpace

    arch = random_arch(random.Random(100 + seed))
    frozen = SegSpace(num_classes=4).nni_freeze(arch)
    plain = SegNet(arch, 4)
    assert {k: v.shape for k, v in frozen.state_dict().items()} == {k: v.shape for k, v in plain.state_dict().items()}
    plain.load_state_dict(frozen.state_dict())
    x = torch.randn(2, 3, 16, 24)
    assert torch.allclose(frozen.eval()(x), plain.eval()(x), atol=1e-5)
    assert isinstance(SegSpace(num_classes=4).freeze(arch), SegNet)


def test_fixed_macro_choices_are_checked():
    from nni_seg.space.nni_space import SegSpace

    with pytest.raises(ValueError, match="cannot fix enc1_op"):
        SegSpace(3, fixed={"enc1_op": "conv3x3"})
    with pytest.raises(ValueError, match="fixed context='x'"):
        SegSpace(3, fixed={"context": "x"})
    assert "context" in MACRO_LABELS and "enc_op2" in MACRO_LABELS and "enc1_depth" not in MACRO_LABELS


def test_builder_imports_no_nni():
    """retrain / evaluate / predict / onnx work without NNI: the network builder does not import it."""
    code = ("import sys; from nni_seg.space.net import SegNet; from nni_seg.space.arch import unet_arch; "
            "import nni_seg.deploy, nni_seg.experiment.trial; SegNet(unet_arch(), 3); "
            "print(sorted(m for m in sys.modules if m == 'nni' or m.startswith(('nni.', 'pytorch_lightning'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "[]"


def test_named_architectures():
    assert set(NAMED_ARCHS) == {"seed", "unet"}
    assert validate_arch(unet_arch()) == unet_arch()


def test_the_front_door_builds_networks_without_importing_nni():
    code = ("import sys, nni_seg; assert 'torch' not in sys.modules; "
            "from nni_seg import SegNet, load_arch, unet_arch, load_dataset; "
            "net = SegNet(load_arch('unet'), 3); assert net.arch == unet_arch(); "
            "assert sorted(nni_seg.__all__) == sorted(dir(nni_seg)); "
            "print(sorted(m for m in sys.modules if m == 'nni' or m.startswith(('nni.', 'pytorch_lightning'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0 and out.stdout.strip() == "[]", out.stderr[-1000:]
    import nni_seg

    for name in nni_seg.__all__:  # every public name resolves
        assert getattr(nni_seg, name) is not None
