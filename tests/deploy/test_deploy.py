import json
import os
import stat

import numpy as np
import pytest
import torch
from PIL import Image

from nni_seg.cli import main
from nni_seg.deploy import evaluate, export_onnx, load_checkpoint
from nni_seg.errors import RecordError, UserError

TINY = ["--size", "24", "24", "--num-train", "16", "--num-val", "8", "--batch-size", "8", "--device", "cpu"]


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    out = tmp_path_factory.mktemp("ck") / "run"
    assert main(["retrain", "seed", "--out", str(out), "--epochs", "2", *TINY]) == 0
    return out


def test_retrain_writes_plain_checkpoints_and_resumes(ckpt, capsys):
    meta = json.loads((ckpt / "meta.json").read_text())
    assert meta["summary"].startswith("levels=3") and meta["class_names"][0] == "background"
    assert meta["format_version"] == 1 and meta["mmacs"] > 0 and "mflops" not in meta
    last = torch.load(ckpt / "last.pt", weights_only=True)  # plain tensors and numbers only
    assert last["epoch"] == 2 and len(last["history"]) == 2
    assert main(["retrain", "seed", "--out", str(ckpt), "--epochs", "3", "--resume", *TINY]) == 0
    captured = capsys.readouterr()
    assert "resuming after epoch 2" in captured.out and "3/3" in captured.err and "epoch 1:" not in captured.err
    assert torch.load(ckpt / "last.pt", weights_only=True)["epoch"] == 3
    mode = stat.S_IMODE(os.stat(ckpt / "meta.json").st_mode)
    assert mode == 0o666 & ~_umask()  # the user's umask, not a temp file's 0600
    assert not [p for p in ckpt.iterdir() if p.name.startswith(".")]  # no temp files left


def _umask():
    m = os.umask(0)
    os.umask(m)
    return m


def test_retrain_never_replaces_a_checkpoint_silently(ckpt, tmp_path, capsys):
    before = (ckpt / "best.pt").read_bytes()
    assert main(["retrain", "seed", "--out", str(ckpt), "--epochs", "1", *TINY]) == 2
    assert "already holds a checkpoint" in capsys.readouterr().err and (ckpt / "best.pt").read_bytes() == before
    assert main(["retrain", "unet", "--out", str(ckpt), "--epochs", "4", "--resume", *TINY]) == 2
    assert "another architecture" in capsys.readouterr().err and (ckpt / "best.pt").read_bytes() == before
    copy = tmp_path / "copy"
    copy.mkdir()
    for f in ckpt.iterdir():
        (copy / f.name).write_bytes(f.read_bytes())
    assert main(["retrain", "seed", "--out", str(copy), "--epochs", "1", "--force", *TINY]) == 0
    assert json.loads((copy / "meta.json").read_text())["train"]["epochs"] == 1


def test_evaluate_matches_the_best_epoch_and_names_split_and_resolution(ckpt, capsys):
    meta = json.loads((ckpt / "meta.json").read_text())
    rep = evaluate(str(ckpt), None, "val", "cpu", native=False)
    assert rep.scores.dice == pytest.approx(meta["best_scores"]["dice"], abs=1e-6)
    assert rep.scores.miou == pytest.approx(meta["best_scores"]["miou"], abs=1e-6)
    assert rep.resolution.startswith("24x24")
    assert main(["evaluate", str(ckpt), "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "| **mean** |" in out and "digits val (8 images), scored at native labels (24x24)" in out


def test_native_resolution_scores_upsample_logits_to_the_masks(tmp_path):
    """Native scoring must compare against the stored masks, not masks resized to the network's size."""
    from nni_seg.data import pack_dataset
    from nni_seg.data import SegData

    g = torch.Generator().manual_seed(0)
    big = torch.zeros(4, 48, 48, dtype=torch.uint8)
    big[:, :, 1::2] = 1  # one-pixel stripes: gone when resized to 12x12, there at 48x48
    x = torch.randint(0, 256, (4, 3, 48, 48), generator=g, dtype=torch.uint8)
    p = pack_dataset(SegData("stripes", x, big, x, big, ["a", "b"]), tmp_path / "s.npz", "png")
    assert main(["retrain", "seed", "--out", str(tmp_path / "ck"), "--epochs", "1", "--dataset", "packed",
                 "--data-root", str(p), "--size", "12", "12", "--batch-size", "4", "--device", "cpu"]) == 0
    native = evaluate(tmp_path / "ck", native=True, device="cpu")
    small = evaluate(tmp_path / "ck", native=False, device="cpu")
    assert native.resolution.startswith("native labels (48x48)") and small.resolution.startswith("12x12")
    assert native.scores.pixel_acc != pytest.approx(small.scores.pixel_acc)


def test_evaluate_refuses_another_datasets_classes(ckpt, tmp_path, capsys):
    from ..data.test_data import _camvid_tree

    _camvid_tree(tmp_path / "cv")
    assert main(["evaluate", str(ckpt), "--dataset", "camvid", "--data-root", str(tmp_path / "cv")]) == 2
    err = capsys.readouterr().err
    assert "was trained on 5 classes (background" in err and "camvid has 11" in err and err.count("\n") == 1


def test_predict_writes_mask_overlay_and_comparison_without_collisions(ckpt, tmp_path):
    for folder in ("x", "y"):
        (tmp_path / folder).mkdir()
        Image.fromarray(np.zeros((30, 40, 3), np.uint8)).save(tmp_path / folder / "a.png")
    (tmp_path / "m").mkdir()
    Image.fromarray(np.ones((30, 40), np.uint8)).save(tmp_path / "m" / "a.png")
    args = [str(tmp_path / "x" / "a.png"), str(tmp_path / "y" / "a.png"), "--out", str(tmp_path / "p")]
    assert main(["predict", str(ckpt), *args, "--masks", str(tmp_path / "m")]) == 0
    names = sorted(p.name for p in (tmp_path / "p").iterdir())
    assert names == ["x_a_compare.png", "x_a_mask.png", "x_a_overlay.png", "y_a_compare.png", "y_a_mask.png",
                     "y_a_overlay.png"]  # same file name in two folders: both kept
    mask = Image.open(tmp_path / "p" / "x_a_mask.png")
    assert mask.size == (40, 30)
    assert Image.open(tmp_path / "p" / "x_a_compare.png").size == (3 * 40 + 8, 30)  # image | truth | prediction
    palette = {tuple(c) for c in json.loads((ckpt / "meta.json").read_text())["palette"]}
    assert {tuple(c) for c in np.array(mask.convert("RGB")).reshape(-1, 3).tolist()} <= palette
    assert main(["predict", str(ckpt), *args]) == 2  # existing predictions are not replaced silently
    assert main(["predict", str(ckpt), *args, "--force"]) == 0


def test_bad_checkpoint_and_image_are_clear_errors(tmp_path, ckpt, capsys):
    with pytest.raises(UserError, match="not a checkpoint folder"):
        load_checkpoint(tmp_path)
    (tmp_path / "bad.png").write_bytes(b"nope")
    assert main(["predict", str(ckpt), str(tmp_path / "bad.png"), "--out", str(tmp_path / "p")]) == 2
    assert "cannot read image" in capsys.readouterr().err
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "meta.json").write_bytes((ckpt / "meta.json").read_bytes())
    (broken / "best.pt").write_bytes((ckpt / "best.pt").read_bytes()[:300])
    with pytest.raises(RecordError, match="best.pt: not a readable checkpoint"):
        load_checkpoint(broken)
    (broken / "meta.json").write_text('{"arch": {}, "class_names": "x"')
    with pytest.raises(RecordError, match="meta.json: not valid JSON"):
        load_checkpoint(broken)


def test_onnx_export_matches_pytorch(ckpt, tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    res = export_onnx(str(ckpt), tmp_path / "m.onnx")
    assert res.max_abs_diff < 1e-3 and res.argmax_agreement > 0.99 and res.bytes > 1000
    import onnxruntime as ort

    from nni_seg.training.trainer import Normalizer

    model, meta = load_checkpoint(ckpt)
    x = torch.randint(0, 256, (3, 3, 32, 48)).float()  # another batch and size than exported with
    got = ort.InferenceSession(str(tmp_path / "m.onnx")).run(None, {"image": x.numpy()})[0]
    with torch.no_grad():
        ref = model(Normalizer(meta.mean, meta.std)(x)).numpy()
    assert got.shape == (3, 5, 32, 48) and np.abs(got - ref).max() < 1e-3
    assert main(["onnx", str(ckpt), str(tmp_path / "n.onnx")]) == 0
    assert "max abs diff" in capsys.readouterr().out
    assert main(["onnx", str(ckpt), str(tmp_path / "n.onnx")]) == 2  # exists: not replaced
    assert main(["onnx", str(ckpt), str(tmp_path / "o.onnx"), "--atol", "1e-30"]) == 2
    assert "parity check failed" in capsys.readouterr().err and not (tmp_path / "o.onnx").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".o.onnx")]


@pytest.mark.parametrize("change", [{"context": "aspp"}, {"context": "ppm"}, {"up": "deconv"}],
                         ids=["aspp", "ppm", "deconv"])
def test_onnx_exports_context_blocks_and_deconvolutions_at_any_size(tmp_path, change):
    pytest.importorskip("onnxruntime")
    import onnxruntime as ort

    from nni_seg.space.arch import unet_arch

    arch = dict(unet_arch(), enc1_width=16, enc2_width=32, enc3_width=64, enc4_width=128,
                dec_op2="identity", dec_join="parallel_sum", down3="conv", **change)
    (tmp_path / "a.json").write_text(json.dumps(arch))
    assert main(["retrain", str(tmp_path / "a.json"), "--out", str(tmp_path / "ck"), "--epochs", "1", *TINY]) == 0
    export_onnx(tmp_path / "ck", tmp_path / "m.onnx")
    model, meta = load_checkpoint(tmp_path / "ck")
    from nni_seg.training.trainer import Normalizer

    for h, w in ((40, 56), (33, 35)):  # 33x35: pooling floors, the decoder's sizes are odd
        x = torch.randint(0, 256, (1, 3, h, w)).float()
        got = ort.InferenceSession(str(tmp_path / "m.onnx")).run(None, {"image": x.numpy()})[0]
        with torch.no_grad():
            ref = model(Normalizer(meta.mean, meta.std)(x)).numpy()
        assert got.shape == ref.shape == (1, 5, h, w) and np.abs(got - ref).max() < 1e-3
