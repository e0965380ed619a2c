import json

import numpy as np
import pytest
import torch
from PIL import Image

from nni_seg.deploy import evaluate, export_onnx, load_checkpoint, main_evaluate, main_onnx, main_predict, main_retrain

TINY = ["--size", "24", "24", "--num-train", "16", "--num-val", "8", "--batch-size", "8", "--device", "cpu"]


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    out = tmp_path_factory.mktemp("ck") / "run"
    assert main_retrain(["seed", "--out", str(out), "--epochs", "2", *TINY]) == 0
    return out


def test_retrain_writes_plain_checkpoints_and_resumes(ckpt, capsys):
    meta = json.loads((ckpt / "meta.json").read_text())
    assert meta["summary"].startswith("levels=3") and meta["class_names"][0] == "background"
    last = torch.load(ckpt / "last.pt", weights_only=True)  # plain tensors and numbers only
    assert last["epoch"] == 2 and len(last["history"]) == 2
    assert main_retrain(["seed", "--out", str(ckpt), "--epochs", "3", "--resume", *TINY]) == 0
    out = capsys.readouterr().out
    assert "resuming after epoch 2" in out and "epoch 3/3" in out and "epoch 1/3" not in out
    assert torch.load(ckpt / "last.pt", weights_only=True)["epoch"] == 3


def test_evaluate_matches_the_best_epoch(ckpt, capsys):
    meta = json.loads((ckpt / "meta.json").read_text())
    res = evaluate(str(ckpt), None, "val", "cpu")
    assert res["dice"] == pytest.approx(meta["best"]["dice"], abs=1e-6)
    assert res["miou"] == pytest.approx(meta["best"]["miou"], abs=1e-6)
    assert main_evaluate([str(ckpt), "--device", "cpu"]) == 0
    assert "| **mean** |" in capsys.readouterr().out


def test_predict_writes_mask_and_overlay(ckpt, tmp_path):
    img = tmp_path / "a.png"
    Image.fromarray(np.zeros((30, 40, 3), np.uint8)).save(img)
    assert main_predict([str(ckpt), str(img), "--out", str(tmp_path / "p")]) == 0
    mask = Image.open(tmp_path / "p" / "a_mask.png")
    assert mask.size == (40, 30) and (tmp_path / "p" / "a_overlay.png").is_file()
    palette = {tuple(c) for c in json.loads((ckpt / "meta.json").read_text())["palette"]}
    assert {tuple(c) for c in np.array(mask.convert("RGB")).reshape(-1, 3).tolist()} <= palette


def test_bad_checkpoint_and_image_are_clear_errors(tmp_path, ckpt, capsys):
    with pytest.raises(FileNotFoundError, match="not a checkpoint folder"):
        load_checkpoint(tmp_path)
    (tmp_path / "bad.png").write_bytes(b"nope")
    assert main_predict([str(ckpt), str(tmp_path / "bad.png"), "--out", str(tmp_path / "p")]) == 2
    assert "cannot read image" in capsys.readouterr().err


def test_onnx_export_matches_pytorch(ckpt, tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    res = export_onnx(str(ckpt), tmp_path / "m.onnx")
    assert res["max_abs_diff"] < 1e-3 and res["argmax_agreement"] > 0.99 and res["bytes"] > 1000
    # the graph takes raw pixels and any batch / size that the pooling allows
    import onnxruntime as ort

    model, meta = load_checkpoint(ckpt)
    from nni_seg.train import Normalizer

    x = torch.randint(0, 256, (3, 3, 32, 48)).float()
    got = ort.InferenceSession(str(tmp_path / "m.onnx")).run(None, {"image": x.numpy()})[0]
    with torch.no_grad():
        ref = model(Normalizer(meta["mean"], meta["std"])(x)).numpy()
    assert got.shape == (3, 5, 32, 48) and np.abs(got - ref).max() < 1e-3
    assert main_onnx([str(ckpt), str(tmp_path / "n.onnx")]) == 0
    assert "max abs diff" in capsys.readouterr().out
    # a failed parity check leaves nothing behind
    assert main_onnx([str(ckpt), str(tmp_path / "o.onnx"), "--atol", "-1"]) == 2
    assert "parity check failed" in capsys.readouterr().err and not (tmp_path / "o.onnx").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".o.onnx")]
