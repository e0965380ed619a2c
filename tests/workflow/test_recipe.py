import dataclasses
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


@pytest.mark.parametrize("searched,flag,names", [
    ({"lr": 3e-3, "loss": "ce"}, True, ["searched", "seed", "unet", "seed+recipe", "unet+recipe"]),
    ({"lr": 3e-3, "loss": "ce"}, False, ["searched", "seed", "unet"]),
    ({}, True, ["searched", "seed", "unet"]),  # the searched net trains with the flags: nothing to part
], ids=["searched settings differ", "--no-baselines-searched-recipe", "searched settings are the flags"])
def test_baselines_are_retrained_with_the_searched_settings_only_where_those_differ(searched, flag, names):
    from nni_seg.config.settings import RecipeSettings
    from nni_seg.space.arch import seed_arch, unet_arch
    from nni_seg.workflow.recipe import retrain_plan

    flags = TrainSettings(epochs=4, batch_size=8)
    own = dataclasses.replace(flags, **searched)
    plan = retrain_plan({"levels": 3}, RecipeSettings(baselines_searched_recipe=flag), flags, own)
    assert [name for name, _, _ in plan] == names
    trained_with = {name: (arch, cfg) for name, arch, cfg in plan}
    assert trained_with["searched"] == ({"levels": 3}, own) and trained_with["unet"] == (unet_arch(), flags)
    if "unet+recipe" in trained_with:
        assert trained_with["unet+recipe"] == (unet_arch(), own) and trained_with["seed+recipe"] == (seed_arch(), own)


def test_the_report_names_the_recipe_rows_and_the_highest_mean_as_picked_on_the_scored_split():
    s = RecipeResult(experiment_id="x", search_config="s.yml", train=TrainSettings(), split="val",
                     networks=[_net("searched", 0, 0.5, 0.6, [0.4, None]), _net("unet", 0, 0.45, 0.55, [0.3, None]),
                               _net("unet+recipe", 0, 0.58, 0.66, [0.5, None])], class_names=["a", "b"])
    md = markdown(s)
    assert "| unet+recipe | 1 | 58.0 | 66.0 |" in md and "`<baseline>+recipe`: that baseline trained with" in md
    assert "Highest mean val mIoU: **unet+recipe** (58.0, 10 MMACs)" in md and "optimistic" in md
    assert "+recipe`" not in markdown(dataclasses.replace(s, networks=s.networks[:2]))


def test_an_earlier_recipes_recipe_rows_are_refused_without_force_and_removed_with_it(tmp_path):
    from nni_seg.config.settings import RecipeSettings
    from nni_seg.errors import UserError
    from nni_seg.workflow.recipe import check_out

    (tmp_path / "unet+recipe" / "run0").mkdir(parents=True)
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(UserError, match=r"holds an earlier recipe's results \(unet\+recipe\)"):
        check_out(RecipeSettings(out=str(tmp_path)))
    assert (tmp_path / "unet+recipe" / "run0").is_dir()
    check_out(RecipeSettings(out=str(tmp_path), force=True))
    assert not (tmp_path / "unet+recipe").exists() and (tmp_path / "notes.txt").read_text() == "mine"


def test_recipe_results_written_before_networks_recorded_their_settings_still_load(tmp_path):
    from nni_seg.config import schema

    old = {"format_version": 1, "networks": [{"network": "unet", "run": 0, "summary": "levels=4"}]}
    (tmp_path / "results.json").write_text(json.dumps(old))
    res = schema.load(RecipeResult, tmp_path / "results.json")
    assert res.networks[0].train is None and res.networks[0].network == "unet"


@pytest.mark.slow
def test_recipe_end_to_end_on_tiny_data(tmp_path):
    config = write_config(tmp_path, trials=3, concurrency=2, space="search_space_joint.json")
    out = tmp_path / "out"
    args = ["recipe", "--search-config", str(config), "--port", str(free_port()), "--size", "16", "16",
            "--num-train", "16", "--num-val", "8", "--epochs", "2", "--batch-size", "8", "--device", "cpu",
            "--baselines", "seed,unet", "--repeats", "2", "--confirm", "2", "--out", str(out)]
    proc = run_cli(args, tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    res = json.loads((out / "results.json").read_text())
    # a joint search: each baseline trained with the flags, then with the searched net's settings
    assert [(n["network"], n["run"]) for n in res["networks"]] == [
        (name, run) for name in ("searched", "seed", "unet", "seed+recipe", "unet+recipe") for run in (0, 1)]
    assert set(res["seconds"]) >= {"search", "retrain_searched", "retrain_seed", "retrain_unet", "retrain_unet+recipe",
                                   "eval_searched", "total"}
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
    def trained_with(name):
        return json.loads((out / name / "run0" / "meta.json").read_text())["train"]

    flags = trained_with("seed")
    assert trained_with("unet") == flags and flags["batch_size"] == 8 and flags["epochs"] == 2
    assert trained_with("unet+recipe") == trained_with("seed+recipe") == meta["train"] != flags
    assert res["tuned_train"] == meta["train"] and res["searched_recipe"] == top["recipe"]
    assert [n["train"] for n in res["networks"] if n["run"] == 0] == [meta["train"], flags, flags, meta["train"],
                                                                      meta["train"]]
    for f in ("report.md", "confusion_searched.png", "confusion_unet.png", "search/dice_vs_trial.png",
              "search/dice_vs_mmacs.png", "search/best_arch.png", "arch_unet.png", "predictions_val.png",
              "searched/run1/best.pt"):
        assert (out / f).is_file(), f
    report = (out / "report.md").read_text()
    assert "| unet | 2 |" in report and "| unet+recipe | 2 |" in report and "Highest mean val mIoU" in report
    assert "predictions_val.png" in report and "chosen by the mean" in report
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


def test_tune_first_refuses_a_joint_search_whose_recipe_labels_would_replace_the_tuned_settings(tmp_path):
    from nni_seg.cli import main

    code = main(["recipe", "--search-config", str(ROOT / "experiments/camvid/joint_lr_cpu.yml"), "--tune-first",
                 str(ROOT / "experiments/camvid/tune_cpu.yml"), "--out", str(tmp_path / "r")])
    assert code == 2 and not (tmp_path / "r").exists()


def test_tune_first_names_the_recipe_labels_of_a_joint_search():
    from nni_seg.errors import ConfigError
    from nni_seg.workflow.recipe import check_tune_first

    with pytest.raises(ConfigError, match=r"recipe labels \(train_batch_size, .*arch_ladder_cpu.yml"):
        check_tune_first(str(ROOT / "experiments/camvid/joint_lr_cpu.yml"))
    check_tune_first(str(ROOT / "experiments/camvid/arch_ladder_cpu.yml"))  # architecture only: fine


def test_a_trial_given_the_recipes_flags_trains_with_the_recipe_whatever_its_config_says(tmp_path):
    from nni_seg.experiment.trial import parse_settings
    from nni_seg.workflow.recipe import RECIPE_FIELDS, trial_flags

    recipe = TrainSettings(batch_size=4, lr=2.2e-3, weight_decay=1.1e-5, loss="ce+dice", class_weights="median_freq",
                           augment=False, scale_min=1.0, scale_max=1.0)
    (tmp_path / "trial.yml").write_text("train: {epochs: 3, lr: 0.1, batch_size: 16, augment: true}\n")
    _, s = parse_settings(["--config", str(tmp_path / "trial.yml"), *trial_flags(recipe)])
    assert {k: getattr(s["train"], k) for k in RECIPE_FIELDS} == {k: getattr(recipe, k) for k in RECIPE_FIELDS}
    assert s["train"].epochs == 3  # the schedule's length stays the search's


@pytest.mark.slow
def test_tune_first_tunes_the_unet_then_every_search_trial_trains_with_its_settings(tmp_path):
    import yaml

    tune = tmp_path / "tune.yml"
    tune.write_text(yaml.safe_dump({
        "tune": {"trials": 2, "concurrency": 2, "trial_epochs": 1, "tuner": "Random", "tuner_seed": 3},
        "data": {"dataset": "digits", "size": [16, 16], "num_train": 16, "num_val": 8},
        "train": {"epochs": 2, "batch_size": 8, "device": "cpu", "threads": 1}}))
    config = write_config(tmp_path, trials=2, concurrency=2)
    out = tmp_path / "out"
    proc = run_cli(["recipe", "--search-config", str(config), "--tune-first", str(tune), "--port", str(free_port()),
                    "--size", "16", "16", "--num-train", "16", "--num-val", "8", "--epochs", "2", "--batch-size", "8",
                    "--device", "cpu", "--baselines", "unet", "--out", str(out)], tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    tuned = json.loads((out / "tune_first" / "tune_result.json").read_text())["tuned"]
    res = json.loads((out / "results.json").read_text())
    assert res["tuned_first"] == tuned and "tune_first" in res["seconds"]
    search = [json.loads(p.read_text()) for p in (tmp_path / "exps").rglob("nni_seg_record.json")]
    assert len(search) == 2 and all({k: r["train"][k] for k in tuned} == tuned for r in search)
    assert all(r["train"]["epochs"] == 2 for r in search)  # the search's own schedule
    assert [n["network"] for n in res["networks"]] == ["searched", "unet", "unet+recipe"]
    meta = {n["network"]: n["train"] for n in res["networks"]}
    assert {k: meta["searched"][k] for k in tuned} == tuned and meta["unet+recipe"] == meta["searched"]
    assert "tuned before the search (see tune_first/)" in (out / "report.md").read_text()
    assert yaml.safe_load(config.read_text())["trialCommand"] in yaml.safe_load(
        (out / "search_config.yml").read_text())["trialCommand"]  # the config given is left as it was


def test_a_baseline_row_that_repeats_the_searched_nets_own_training_is_not_retrained():
    from nni_seg.config.settings import RecipeSettings
    from nni_seg.space.arch import unet_arch
    from nni_seg.workflow.recipe import retrain_plan, same_as_searched

    flags = TrainSettings(epochs=4, batch_size=8)
    own = dataclasses.replace(flags, lr=1e-3)
    plan = retrain_plan(unet_arch(), RecipeSettings(), flags, own)  # the search returned the U-Net
    assert same_as_searched(plan) == ["unet+recipe"]
    assert same_as_searched(retrain_plan(unet_arch(), RecipeSettings(), flags, flags)) == ["unet"]
    assert same_as_searched(retrain_plan({**unet_arch(), "act": "gelu"}, RecipeSettings(), flags, own)) == []
    s = RecipeResult(train=flags, same_as_searched=["unet+recipe"],
                     networks=[_net("searched", 0, 0.5, 0.6, [0.4, None]), _net("unet", 0, 0.45, 0.55, [0.3, None])],
                     class_names=["a", "b"])
    assert "Not retrained: unet+recipe, the same network" in markdown(s)
