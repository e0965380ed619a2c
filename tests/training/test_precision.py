"""The compute path: bf16 autocast + channels-last where the device has native bf16, fp32 NCHW elsewhere."""
import pytest
import torch

from nni_seg.training.precision import compute_path, cpu_bf16_unit

CPU = torch.device("cpu")


@pytest.mark.parametrize("isa", ["AVX2", "AVX512_CORE", "avx512_core_vnni"])
def test_a_cpu_capped_below_bf16_runs_the_fp32_nchw_path_whatever_is_asked(monkeypatch, isa):
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", isa)
    assert cpu_bf16_unit() is None
    path = compute_path(CPU, amp=True, channels_last=True)
    assert (path.amp, path.channels_last) == (False, False)
    assert str(path) == "cpu: fp32, NCHW (this CPU has no native bf16)"


def test_native_bf16_is_the_default_and_the_flags_turn_each_part_off(monkeypatch):
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    unit = cpu_bf16_unit()
    if unit is None:
        pytest.skip("this CPU has no native bf16")
    assert (compute_path(CPU).amp, compute_path(CPU).channels_last) == (True, True)
    assert str(compute_path(CPU)) == f"cpu: bf16 autocast, channels-last ({unit})"
    off = compute_path(CPU, amp=False, channels_last=False)
    assert (off.amp, off.channels_last) == (False, False) and "--no-amp --no-channels-last" in str(off)


def test_the_bf16_path_computes_convolutions_in_bf16_and_returns_what_the_model_gives():
    from nni_seg.space.arch import seed_arch
    from nni_seg.space.net import SegNet

    if cpu_bf16_unit() is None:
        pytest.skip("this CPU has no native bf16")
    path = compute_path(CPU)
    model = path.model(SegNet(dict(seed_arch(), enc1_width=16, enc2_width=32, enc3_width=64), 3))
    seen = []
    model.encoder[0].register_forward_hook(lambda m, i, o: seen.append((o.dtype, o.is_contiguous(
        memory_format=torch.channels_last))))
    with path.autocast():
        out = model(path.input(torch.randn(2, 3, 16, 16)))
    assert seen == [(torch.bfloat16, True)] and out.shape == (2, 3, 16, 16)
    assert next(model.parameters()).dtype == torch.float32  # weights stay fp32 (and so does AdamW's state)


def test_large_depthwise_convs_run_in_fp32_under_cpu_autocast_and_keep_conv2d_weights():
    """oneDNN's bf16 channels-last depthwise 5x5 is 2-3x slower than fp32: that conv stays fp32 on the fast path;
    a 3x3 one, and every conv on the plain path, are untouched."""
    from nni_seg.space.blocks import ConvBNAct, DepthwiseConv2d

    sep5 = ConvBNAct(8, 16, 5, separable=True)
    assert isinstance(sep5.dw, DepthwiseConv2d) and set(sep5.state_dict()) >= {"dw.weight", "pw.weight"}
    x = torch.randn(2, 8, 12, 12)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert sep5.dw(x).dtype == torch.float32
        with torch.no_grad():
            assert sep5.dw(x).dtype == torch.bfloat16  # inference: its bf16 forward is not slow
        assert ConvBNAct(8, 16, 3, separable=True).dw(x).dtype == torch.bfloat16
        assert sep5.pw(sep5.dw(x)).dtype == torch.bfloat16  # the pointwise conv after it is bf16 again
    plain = torch.nn.Conv2d(8, 8, 5, padding=2, groups=8, bias=False)
    plain.load_state_dict(sep5.dw.state_dict())
    assert torch.equal(sep5.dw(x), plain(x))  # outside autocast: exactly nn.Conv2d
