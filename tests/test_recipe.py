import json

import pytest

from nni_seg.recipe import confusion_png, markdown

from .nni_helpers import free_port, run_cli, write_config


def test_confusion_png_rows_normalised(tmp_path):
    p = confusion_png([[5, 5, 0], [0, 10, 0], [0, 0, 0]], ["a", "b", "c"], tmp_path / "c.png", "t")
    assert p.read_bytes()[:4] == b"\x89PNG"


def test_markdown_tables():
    net = {"network": "searched", "summary": "levels=3", "params": 1234, "mflops": 10.5, "val_miou": 0.5,
           "val_dice": 0.6, "iou_per_class": [0.4, None], "best_epoch": 3}
    s = {"experiment_id": "x", "device": "cpu", "search_config": "s.yml", "search_trials": 4, "search_succeeded": 3,
         "train": {"epochs": 4, "batch_size": 8, "loss": "ce", "class_weights": "none"},
         "data": {"dataset": "digits", "size": None}, "seconds": {"search": 1.0, "total": 2.0},
         "networks": [net], "class_names": ["a", "b"]}
    md = markdown(s)
    assert "| searched | 50.0 | 60.0 | 1,234 | 10 | 3 |" in md and "| b | - |" in md and "| search | 1.0 |" in md


@pytest.mark.slow
def test_recipe_end_to_end_on_tiny_data(tmp_path):
    config = write_config(tmp_path, trials=3, concurrency=2)
    out = tmp_path / "out"
    proc = run_cli(["recipe", "--search-config", str(config), "--port", str(free_port()), "--size", "16", "16",
                    "--num-train", "16", "--num-val", "8", "--epochs", "2", "--batch-size", "8", "--device", "cpu",
                    "--out", str(out)], tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    res = json.loads((out / "results.json").read_text())
    assert [n["network"] for n in res["networks"]] == ["searched", "seed"]
    assert set(res["seconds"]) >= {"search", "retrain_searched", "retrain_seed", "eval_searched", "total"}
    top = json.loads((out / "top_arch.json").read_text())
    meta = json.loads((out / "searched" / "meta.json").read_text())
    assert meta["arch"] == top["arch"] and meta["train"]["epochs"] == 2
    assert json.loads((out / "seed" / "meta.json").read_text())["train"] == meta["train"]  # same schedule
    for f in ("report.md", "confusion_searched.png", "confusion_seed.png", "search/dice_vs_trial.png",
              "search/dice_vs_flops.png", "searched/best.pt"):
        assert (out / f).is_file(), f
    assert f"{100 * res['networks'][0]['val_miou']:.1f}" in (out / "report.md").read_text()


def test_recipe_missing_search_config_is_one_line(tmp_path):
    proc = run_cli(["recipe", "--search-config", str(tmp_path / "nope.yml")], tmp_path)
    assert proc.returncode == 2 and "search config not found" in proc.stderr
