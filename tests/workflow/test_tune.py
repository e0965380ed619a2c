import json

import pytest
import yaml

from nni_seg.config import schema
from nni_seg.errors import ConfigError, RecordError
from nni_seg.config.schema import TopArch
from nni_seg.config.settings import TrainSettings
from nni_seg.workflow.tune import TUNE_SPACE, load_tune_config, tuned_settings

from ..nni_helpers import free_port, run_cli


def test_defaults_and_space_checks(tmp_path):
    tune, data, train, space = load_tune_config(None)
    assert tune.trials == 12 and space == TUNE_SPACE and "epochs" not in space  # epochs: not tuned by default
    p = tmp_path / "t.yml"
    p.write_text("space: {lr: {_type: loguniform, _value: [0.001, 0.01]}}\ntune: {trials: 3}\n")
    tune, _, _, space = load_tune_config(p)
    assert tune.trials == 3 and list(space) == ["lr"]
    p.write_text("space: {lr: 0.1}\n")
    with pytest.raises(ConfigError, match="space.lr: expected {_type: ..., _value: \\[...\\]}"):
        load_tune_config(p)


@pytest.mark.parametrize("name", ["tune_cpu.yml", "tune_first_cpu.yml"])
def test_the_shipped_camvid_tunes_load_and_select_on_a_held_out_drive_with_the_retrains_loss(name):
    from ..nni_helpers import ROOT

    tune, data, train, space = load_tune_config(ROOT / "experiments" / "camvid" / name)
    assert data.holdout == "0006R0" and tune.trials == 15 and tune.trial_epochs == 6
    assert train.loss == "ce+dice" and train.class_weights == "median_freq" and "class_weights" not in space
    assert set(space) <= set(TUNE_SPACE) and ("loss" in space) == (name == "tune_cpu.yml")


def test_every_tuned_combination_is_a_valid_training():
    """scale_min <= 1 <= scale_max for every value in the space: no tuner draw can be refused."""
    for lo in TUNE_SPACE["scale_min"]["_value"]:
        for hi in TUNE_SPACE["scale_max"]["_value"]:
            TrainSettings(scale_min=lo, scale_max=hi)


def test_tuned_settings_keep_the_base_epochs():
    top = TopArch(train=TrainSettings(epochs=2, lr=0.004, loss="ce+dice", batch_size=4))
    tuned, final = tuned_settings(top, TrainSettings(epochs=12), {"lr": {}, "loss": {}, "batch_size": {}})
    assert tuned == {"lr": 0.004, "loss": "ce+dice", "batch_size": 4}
    assert final.epochs == 12 and final.lr == 0.004


@pytest.mark.slow
def test_tune_runs_an_hpo_experiment_and_exports_a_training_config(tmp_path):
    cfg = tmp_path / "tune.yml"
    cfg.write_text(yaml.safe_dump({
        "tune": {"trials": 3, "concurrency": 2, "trial_epochs": 1, "tuner": "Random"},
        "data": {"dataset": "digits", "size": [16, 16], "num_train": 16, "num_val": 8},
        "train": {"epochs": 5, "batch_size": 8, "device": "cpu", "threads": 1}}))
    out = tmp_path / "tune"
    proc = run_cli(["tune", "unet", "--config", str(cfg), "--out", str(out), "--port", str(free_port())], tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "tuned: lr=" in proc.stdout
    tuned = yaml.safe_load((out / "tuned_train.yml").read_text())["train"]
    assert tuned["epochs"] == 5  # the retrain's epochs, not the tune trials' 1
    result = json.loads((out / "tune_result.json").read_text())
    assert result["format_version"] == schema.FORMAT_VERSION
    assert schema.load(schema.TuneResult, out / "tune_result.json").tuned == result["tuned"]
    assert set(result["tuned"]) == set(TUNE_SPACE) and result["tuned"]["lr"] == tuned["lr"]
    records = [json.loads(p.read_text()) for p in out.rglob("nni_seg_record.json")]
    assert len(records) == 3 and len({r["train"]["lr"] for r in records}) == 3  # the tuner's settings, trained
    base = [r for r in records if r["train"]["lr"] == 2e-3 and r["train"]["batch_size"] == 8
            and r["train"]["loss"] == "ce" and r["train"]["scale_min"] == 0.75]
    assert len(base) == 1 and result["base_score"] == base[0]["metrics"]["dice"]  # the base settings ran first
    assert result["score"] >= result["base_score"]
    assert all(r["train"]["epochs"] == 1 and r["summary"].startswith("levels=4") for r in records)
    retrain = run_cli(["retrain", "unet", "--config", str(out / "tuned_train.yml"), "--epochs", "1", "--size", "16",
                       "16", "--num-train", "16", "--num-val", "8", "--out", str(tmp_path / "ck")], tmp_path)
    assert retrain.returncode == 0, retrain.stderr
    meta = json.loads((tmp_path / "ck" / "meta.json").read_text())
    assert meta["train"]["lr"] == tuned["lr"] and meta["train"]["loss"] == tuned["loss"]


def test_the_base_settings_start_the_tune_and_must_lie_in_its_space():
    from nni_seg.workflow.tune import start_point
    from nni_seg.experiment.tuners import StartedTuner

    base = TrainSettings()
    point = start_point(base, TUNE_SPACE)
    assert point == {k: getattr(base, k) for k in TUNE_SPACE}
    assert start_point(TrainSettings(lr=0.5), TUNE_SPACE) is None  # outside the lr range: no start point
    assert start_point(TrainSettings(batch_size=32), TUNE_SPACE) is None
    tuner = StartedTuner("TPE", {"seed": 0}, [point])
    tuner.update_search_space(TUNE_SPACE)
    assert tuner.generate_parameters(0) == point
    tuner.receive_trial_result(0, point, 0.5)
    nxt = tuner.generate_parameters(1)
    assert set(nxt) == set(TUNE_SPACE) and nxt != point
    with pytest.raises(ValueError, match="batch_size=32 is not one of"):
        StartedTuner("TPE", {}, [dict(point, batch_size=32)]).update_search_space(TUNE_SPACE)
    with pytest.raises(ValueError, match="lacks lr"):
        StartedTuner("TPE", {}, [{k: v for k, v in point.items() if k != "lr"}]).update_search_space(TUNE_SPACE)


def test_a_tpe_tune_uses_its_model_within_its_trials(tmp_path):
    """NNI's TPE samples its first 20 trials at random: a 16-trial tune must start modelling earlier."""
    from nni_seg.config.settings import DataSettings, TuneSettings
    from nni_seg.workflow.tune import start_point, write_experiment

    cfg = yaml.safe_load(write_experiment({"levels": 3}, TuneSettings(trials=16), DataSettings(), TrainSettings(),
                                          TUNE_SPACE, tmp_path, tmp_path,
                                          start_point(TrainSettings(), TUNE_SPACE)).read_text())
    args = cfg["tuner"]["classArgs"]
    assert args["tuner"] == "TPE" and args["tuner_args"]["tpe_args"]["n_startup_jobs"] == 5
    assert args["start_with"] == [{k: getattr(TrainSettings(), k) for k in TUNE_SPACE}]


def test_tune_result_is_a_versioned_record(tmp_path):
    result = schema.TuneResult(experiment_id="abc", trial_id="t1", score=0.5, base_score=0.4,
                               tuned={"lr": 0.004, "loss": "ce+dice"}, train=TrainSettings(lr=0.004, loss="ce+dice"),
                               config=str(tmp_path / "tuned_train.yml"))
    path = schema.save(result, tmp_path / schema.TUNE_RESULT_NAME)
    back = schema.load(schema.TuneResult, path)
    assert back == result and back.overrides() == {"lr": 0.004, "loss": "ce+dice"}
    obj = json.loads(path.read_text())
    obj.pop("format_version")  # written before the record had a version: still loads
    path.write_text(json.dumps(obj))
    assert schema.load(schema.TuneResult, path).train.lr == 0.004
    path.write_text(json.dumps(obj | {"score": "high"}))
    with pytest.raises(RecordError, match="tune_result.json: score"):
        schema.load(schema.TuneResult, path)


def test_a_checkpoint_brings_its_data_to_the_tune_and_the_yaml_and_flags_change_it(tmp_path):
    from nni_seg.config.settings import DataSettings
    from nni_seg.workflow.tune import tune_data_for

    ckpt = DataSettings(dataset="packed", data_root="/data/camvid.npz", size=(96, 128))
    cfg = tmp_path / "tune.yml"
    cfg.write_text("data: {size: [48, 64]}\n")
    yaml_data = DataSettings(size=(48, 64))  # what load_sections made of the YAML: digits elsewhere
    got = tune_data_for(cfg, yaml_data, {"num_train": 10}, ckpt)
    assert (got.dataset, got.data_root, got.size, got.num_train) == ("packed", "/data/camvid.npz", (48, 64), 10)
    assert tune_data_for(None, DataSettings(), {}, ckpt) == ckpt
