import json
import time

import numpy as np
import pytest
from PIL import Image

from nni_seg.workflow.recipe import confusion_png, markdown
from nni_seg.config.schema import NetworkResult, RecipeResult, Scores
from nni_seg.config.settings import DataSettings, TrainSettings

from ..nni_helpers import ROOT, free_port, run_cli, write_config


def test_confusion_png_is_row_normalised(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    seen = {}
    original = plt.Axes.imshow

    def spy(self, data, *a, **kw):
        seen["data"] = np.asarray(data)
        return original(self, data, *a, **kw)

    plt.Axes.imshow = spy
    try:
        p = confusion_png([[5, 5, 0], [0, 10, 0], [0, 0, 0]], ["a", "b", "c"], tmp_path / "c.png", "t")
    finally:
        plt.Axes.imshow = original
    assert p.read_bytes()[:4] == b"\x89PNG"
    assert np.allclose(seen["data"], [[0.5, 0.5, 0], [0, 1, 0], [0, 0, 0]])  # each true class sums to 1 (or 0)
    img = np.asarray(Image.open(p).convert("L"))
    assert img.min() < 100  # a dark cell where a whole row went to one class


def _net(name, run, miou, dice, iou):
    return NetworkResult(network=name, run=run, summary="levels=3", params=1234, mmacs=10.5,
                         val=Scores(dice=dice, miou=miou, pixel_acc=0.9, dice_per_class=[0.5, None], iou_per_class=iou),
                         best_epoch=3)


def test_markdown_tables_show_mean_and_spread_with_split_and_resolution():
    s = RecipeResult(experiment_id="x", device="cpu", search_config="s.yml", search_trials=4, search_succeeded=3,
                     train=TrainSettings(epochs=4, batch_size=8), data=DataSettings(), split="val",
                     resolution="native labels (360x480)", seconds={"search": 1.0, "total": 2.0},
                     networks=[_net("searched", 0, 0.5, 0.6, [0.4, None]), _net("searched", 1, 0.54, 0.62, [0.6, None]),
                               _net("unet", 0, 0.45, 0.55, [0.3, None])], class_names=["a", "b"])
    md = markdown(s)
    assert "| searched | 2 | 52.0 (50.0-54.0) | 61.0 (60.0-62.0) | 1,234 | 10 | 3, 3 |" in md
    assert "| unet | 1 | 45.0 | 55.0 |" in md and "| a | 50.0 | 30.0 |" in md and "| b | - | - |" in md
    assert "**val** split, scored at native labels (360x480)" in md and "| search | 1.0 |" in md


@pytest.mark.slow
def test_recipe_end_to_end_on_tiny_data(tmp_path):
    config = write_config(tmp_path, trials=3, concurrency=2)
    out = tmp_path / "out"
    args = ["recipe", "--search-config", str(config), "--port", str(free_port()), "--size", "16", "16",
            "--num-train", "16", "--num-val", "8", "--epochs", "2", "--batch-size", "8", "--device", "cpu",
            "--baselines", "seed,unet", "--repeats", "2", "--confirm", "2", "--out", str(out)]
    proc = run_cli(args, tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    res = json.loads((out / "results.json").read_text())
    assert [(n["network"], n["run"]) for n in res["networks"]] == [("searched", 0), ("searched", 1), ("seed", 0),
                                                                    ("seed", 1), ("unet", 0), ("unet", 1)]
    assert set(res["seconds"]) >= {"search", "retrain_searched", "retrain_seed", "retrain_unet", "eval_searched", "total"}
    assert res["split"] == "val" and res["resolution"].startswith("native labels (16x16)")
    top = json.loads((out / "top_arch.json").read_text())
    # --confirm 2: the top two trials trained once more at the search's settings, the best mean retrained
    cands = top["confirmation"]["candidates"]
    assert 1 <= len(cands) <= 2 and all(len(c["scores"]) == 2 for c in cands) and "confirm" in res["seconds"]
    assert max(c["mean"] for c in cands) == next(c["mean"] for c in cands if c["trial_id"] == top["trial_id"])
    assert res["winner_chosen_by"] == top["note"] and "chosen by the mean default of 2 trainings" in top["note"]
    meta = json.loads((out / "searched" / "run0" / "meta.json").read_text())
    assert meta["arch"] == top["arch"] and meta["train"]["epochs"] == 2 and meta["train"]["seed"] == 0
    assert json.loads((out / "searched" / "run1" / "meta.json").read_text())["train"]["seed"] == 1
    seed_train = json.loads((out / "seed" / "run0" / "meta.json").read_text())["train"]
    assert seed_train == meta["train"]  # the same schedule for every network
    for f in ("report.md", "confusion_searched.png", "confusion_unet.png", "search/dice_vs_trial.png",
              "search/dice_vs_mmacs.png", "search/best_arch.png", "arch_unet.png", "predictions_val.png",
              "searched/run1/best.pt"):
        assert (out / f).is_file(), f
    report = (out / "report.md").read_text()
    assert "| unet | 2 |" in report and "predictions_val.png" in report and "chosen by the mean" in report
    # an earlier recipe's results are not replaced without --force
    again = run_cli(args, tmp_path)
    assert again.returncode == 2 and "holds an earlier recipe's results" in again.stderr


def test_recipe_bad_inputs_are_one_line(tmp_path):
    proc = run_cli(["recipe", "--search-config", str(tmp_path / "nope.yml")], tmp_path)
    assert proc.returncode == 2 and "config not found" in proc.stderr and proc.stderr.count("\n") == 1
    proc = run_cli(["recipe", "--baselines", "seed,resnet"], tmp_path)
    assert proc.returncode == 2 and "--baselines: unknown network(s) resnet; valid: seed, unet" in proc.stderr


@pytest.mark.parametrize("flags,msg", [
    (["--tune-config", "{t}/missing.yml"], "config not found: {t}/missing.yml"),
    (["--dataset", "folder", "--data-root", "{t}/nodata"], "data root not found: {t}/nodata"),
], ids=["tune config", "data root"])
def test_recipe_checks_its_later_phases_inputs_before_the_search(tmp_path, flags, msg):
    from nni_seg.cli import main

    args = [f.replace("{t}", str(tmp_path)) for f in flags]
    t0 = time.time()
    code = main(["recipe", "--search-config", str(ROOT / "config.yml"), "--out", str(tmp_path / "r"), *args])
    assert code == 2 and time.time() - t0 < 60  # no search ran
    assert not (tmp_path / "r").exists()
