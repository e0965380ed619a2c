"""The joint search: recipe labels beside the architecture's, the fidelity ladder, held-out selection, and the
export that carries the recipe and the rung it was chosen at."""
import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from nni_seg.space.arch import (RECIPE_CHOICES, RECIPE_DEFAULTS, ArchError, check_search_space, is_one_of,
                          legacy_search_space, load_recipe, recipe_labels, recipe_settings, seed_arch, unet_arch)
from nni_seg.errors import DataError, UserError
from nni_seg.experiment.ladder import Ladder, parse_rungs, plan_cost, plan_trials
from nni_seg.config.settings import DataSettings, TrainSettings

from ..fake_experiment import write_record
from ..nni_helpers import ROOT, create_then_stop, experiment_id, free_port, nnictl, records_of, run_cli

RUNGS = [{"trials": 4, "epochs": 1, "size": [32, 32]}, {"keep": 2, "epochs": 2, "size": [64, 64], "repeats": 2}]
BUDGET = {"max_mmacs_of": "unet", "size": [32, 32], "num_classes": 5}


# ------------------------------------------------------------------ recipe labels
def test_recipe_labels_map_to_training_settings_and_back():
    s = recipe_settings(RECIPE_DEFAULTS)
    assert s == {"lr": 4.7e-3, "weight_decay": 5e-5, "batch_size": 4, "scale_min": 1.0, "scale_max": 1.0,
                 "loss": "ce+dice", "class_weights": "median_freq"}
    assert recipe_labels(TrainSettings(**s)) == RECIPE_DEFAULTS
    assert all(is_one_of(v, RECIPE_CHOICES[k]) for k, v in RECIPE_DEFAULTS.items())


@pytest.mark.parametrize("labels,says", [({"train_lr": 0.5}, "train_lr=0.5 is not one of"),
                                         ({"train_batch_size": 4.0}, "train_batch_size=4.0"),
                                         ({"train_epochs": 3}, "unknown recipe label train_epochs")])
def test_a_bad_recipe_label_is_one_line_naming_it(labels, says):
    with pytest.raises(ArchError, match=says):
        recipe_settings(labels, "x")


def test_the_joint_space_is_the_model_space_plus_the_recipe_and_passes_the_trial_check():
    space = legacy_search_space("choice", "joint")
    assert list(space)[-len(RECIPE_CHOICES):] == list(RECIPE_CHOICES)
    check_search_space(space)
    with pytest.raises(ArchError, match="train_lr: 0.3 is not one of"):
        check_search_space({**space, "train_lr": {"_type": "choice", "_value": [0.3]}})


def test_an_export_with_a_recipe_gives_retrain_its_settings_and_an_old_one_gives_none(tmp_path):
    new, old = tmp_path / "new.json", tmp_path / "old.json"
    new.write_text(json.dumps({"arch": seed_arch(), "recipe": {"train_lr": 1e-3, "train_scale": "0.5-1.5"}}))
    old.write_text(json.dumps({"arch": seed_arch()}))
    assert load_recipe(str(new)) == {"lr": 1e-3, "scale_min": 0.5, "scale_max": 1.5}
    assert load_recipe(str(old)) == {} and load_recipe("unet") == {}
    new.write_text(json.dumps({"arch": seed_arch(), "recipe": {"train_lr": 7}}))
    with pytest.raises(ArchError, match="new.json: recipe: train_lr=7"):
        load_recipe(str(new))


# ------------------------------------------------------------------ the ladder
@pytest.mark.parametrize("rungs,says", [
    ([], "non-empty list"),
    ([{"keep": 2, "epochs": 1}], "rung 0 gives trials"),
    ([{"trials": 4, "epochs": 1}, {"trials": 2, "epochs": 1, "repeats": 2}], "later rungs keep"),
    ([{"trials": 4, "epochs": 0}], r"rungs\[0\].epochs: an integer >= 1"),
    ([{"trials": 4, "epochs": 1, "size": [4, 4]}], r"rungs\[0\].size"),
    ([{"trials": 4, "epochs": 1}, {"keep": 5, "epochs": 1, "repeats": 2}], "keep: 5 > the 4 candidates"),
    ([{"trials": 4, "epochs": 1}, {"keep": 2, "epochs": 1}], "top rung chooses by a mean"),
    ([{"trials": 4, "epochs": 1, "seeds": 2}], "unknown key"),
])
def test_a_bad_ladder_is_one_line_naming_the_rung(rungs, says):
    with pytest.raises(ValueError, match=says):
        parse_rungs(rungs)


def test_the_plan_counts_trials_and_compute_at_rung_0s_pixels():
    rungs = parse_rungs(RUNGS)
    assert plan_trials(rungs) == 4 + 2 * 2
    assert plan_cost(rungs) == {"trials": 8, "trial_epochs": 4 + 8, "base_epochs": 4 + 2 * 2 * 2 * 4.0}


def _ladder(rungs=RUNGS) -> Ladder:
    lad = Ladder(rungs, tuner="Random", tuner_args={"seed": 0}, budget=BUDGET)
    lad.update_search_space(legacy_search_space("choice", "joint"))
    return lad


def test_a_ladder_started_from_the_unet_serves_it_first_with_the_recipe_defaults_despite_an_exclude():
    from nni_seg.space.arch import decode_parameters, split_joint

    lad = Ladder(RUNGS, tuner="Random", tuner_args={"seed": 0}, start_with=["unet"], budget=BUDGET,
                 exclude={"train_class_weights": ["none"]})
    lad.update_search_space(legacy_search_space("choice", "joint"))
    first = {k: v for k, v in lad.propose(0).items() if k != "LADDER"}
    arch, recipe = split_joint(first)
    assert decode_parameters(arch) == unet_arch() and recipe == RECIPE_DEFAULTS
    assert all(lad.propose(pid)["train_class_weights"] != "none" for pid in range(1, 4))


def test_a_known_network_whose_default_recipe_is_excluded_is_one_line():
    lad = Ladder(RUNGS, tuner="Random", start_with=["unet"], budget=BUDGET,
                 exclude={"train_class_weights": ["median_freq"]})
    with pytest.raises(ValueError, match="start_with: a network with train_class_weights='median_freq'"):
        lad.update_search_space(legacy_search_space("choice", "joint"))


def test_a_known_network_can_enter_under_several_recipes_the_rest_of_each_at_the_defaults():
    from nni_seg.space.arch import decode_parameters, split_joint

    lad = Ladder(RUNGS, tuner="Random", tuner_args={"seed": 0}, budget=BUDGET,
                 start_with=[{"network": "unet", "train_lr": 1e-3}, {**seed_arch(), "train_lr": 2e-3,
                                                                      "train_loss": "ce"}, "unet"])
    lad.update_search_space(legacy_search_space("choice", "joint"))
    served = [split_joint({k: v for k, v in lad.propose(pid).items() if k != "LADDER"}) for pid in range(3)]
    assert [decode_parameters(a) for a, _ in served] == [unet_arch(), seed_arch(), unet_arch()]
    assert [r for _, r in served] == [{**RECIPE_DEFAULTS, "train_lr": 1e-3},
                                      {**RECIPE_DEFAULTS, "train_lr": 2e-3, "train_loss": "ce"}, RECIPE_DEFAULTS]


@pytest.mark.parametrize("start_with,space,says", [
    ([{"network": "unet", "train_lr": 0.3}], "joint", "train_lr=0.3 is not one of"),
    ([{"network": "vgg"}], "joint", "unknown network 'vgg'"),
    ([{"network": "unet", "levels": 3}], "joint", "give network 'unet' or an architecture's labels, not both"),
    ([5], "joint", "a network name or a dict, got 5"),
    ([{"network": "unet", "train_lr": 1e-3}], "full", "train_lr given, but the search space has no recipe label"),
    ([{"network": "unet", "train_class_weights": "none"}], "joint",
     "a network with train_class_weights='none', which exclude leaves out"),
])
def test_a_bad_known_point_is_one_line_naming_it(start_with, space, says):
    with pytest.raises(ValueError, match=says):
        lad = Ladder(RUNGS, tuner="Random", start_with=start_with, budget=BUDGET,
                     exclude={"train_class_weights": ["none"]} if space == "joint" else None)
        lad.update_search_space(legacy_search_space("choice", space))


def test_the_ladder_waits_for_a_rung_then_promotes_the_best_means_with_repeats():
    lad = _ladder()
    served = {pid: lad.propose(pid) for pid in range(4)}
    assert [p["LADDER"]["rung"] for p in served.values()] == [0] * 4
    assert lad.propose(4) is None  # rung 0 still running: nothing to hand out
    for pid, score in zip(range(4), [0.2, 0.9, 0.5, 0.7]):
        lad.result(pid, score)
        lad.end(pid)
    nxt = [lad.propose(pid) for pid in range(4, 8)]
    assert [(p["LADDER"]["candidate"], p["LADDER"]["repeat"]) for p in nxt] == [(1, 0), (1, 1), (3, 0), (3, 1)]
    assert all(p["LADDER"]["size"] == [64, 64] and p["LADDER"]["epochs"] == 2 for p in nxt)
    assert {k: v for k, v in nxt[0].items() if k != "LADDER"} == {k: v for k, v in served[1].items() if k != "LADDER"}
    assert lad.propose(8) is None and not lad.done
    for pid, score in zip(range(4, 8), [0.5, 0.5, 0.6, 0.6]):  # the rung-0 best is not the top rung's best
        lad.result(pid, score)
        lad.end(pid)
    assert lad.done and lad.ranking(1) == [(3, 0.6), (1, 0.5)] and lad.propose(9) is None


def test_a_failed_trial_is_not_promoted():
    lad = _ladder()
    for pid in range(4):
        lad.propose(pid)
    for pid in range(4):
        if pid != 1:
            lad.result(pid, 0.1 * pid)
        lad.end(pid, success=pid != 1)  # candidate 1 failed: no score
    assert {lad.propose(pid)["LADDER"]["candidate"] for pid in range(4, 8)} == {3, 2}


def test_a_resumed_ladder_reruns_only_what_had_not_finished():
    first = _ladder()
    params = {pid: first.propose(pid) for pid in range(4)}
    for pid, score in zip(range(4), [0.2, 0.9, 0.5, 0.7]):
        first.result(pid, score)
        first.end(pid)
    promoted = first.propose(4)  # candidate 1, repeat 0: finished before the stop
    data = [{"parameter": p, "value": {"default": s}} for p, s in zip(params.values(), [0.2, 0.9, 0.5, 0.7])]
    data.append({"parameter": promoted, "value": 0.8})
    again = _ladder()
    again.import_data(data)
    left = [again.propose(pid)["LADDER"] for pid in range(10, 13)]
    assert [(x["candidate"], x["repeat"]) for x in left] == [(1, 1), (3, 0), (3, 1)]
    assert again.propose(13) is None


def test_a_resumed_ladder_whose_unfinished_screen_trial_left_no_data_draws_a_new_one_and_moves_on():
    first = _ladder()
    params = {pid: first.propose(pid) for pid in range(4)}
    data = [{"parameter": params[pid], "value": 0.1 * (pid + 1)} for pid in (0, 1, 3)]  # candidate 2 never finished
    again = _ladder()
    again.import_data(data)
    redraw = again.propose(10)
    assert redraw["LADDER"]["rung"] == 0 and redraw["LADDER"]["candidate"] == 4
    again.result(10, 0.9)
    again.end(10)
    promoted = [again.propose(pid)["LADDER"] for pid in range(11, 15)]
    assert [(x["rung"], x["candidate"]) for x in promoted] == [(1, 4), (1, 4), (1, 3), (1, 3)]


def test_a_resumed_ladder_adopts_the_trial_nni_reruns_and_draws_nothing_twice():
    """NNI reruns a trial that was running at the stop with its old parameters (ADD_CUSTOMIZED_TRIAL_JOB):
    the ladder counts it where its LADDER says and does not draw a replacement; its seeded tuner, which
    replays its first draws after a resume, never screens a candidate twice."""
    first = _ladder()
    params = {pid: first.propose(pid) for pid in range(3)}
    data = [{"parameter": params[pid], "value": 0.1 * (pid + 1)} for pid in (0, 1)]
    again = _ladder()
    again.import_data(data)
    again.adopt(2, params[2])  # running at the stop: NNI runs it again
    fresh = again.propose(10)["LADDER"]
    assert (fresh["rung"], fresh["candidate"]) == (0, 3)  # the fourth candidate, not candidate 2 again
    drawn = [{k: v for k, v in c.items()} for c in again.candidates]
    assert len(drawn) == 4 and all(drawn.count(c) == 1 for c in drawn)
    assert again.propose(11) is None  # rung 0 is full: 2 finished, 2 running
    for pid, score in ((2, 0.9), (10, 0.05)):
        again.result(pid, score)
        again.end(pid)
    promoted = [again.propose(pid)["LADDER"] for pid in range(12, 16)]
    assert [(x["rung"], x["candidate"]) for x in promoted] == [(1, 2), (1, 2), (1, 1), (1, 1)]


def test_a_rerun_trial_whose_result_never_came_is_scored_from_its_own_record_of_that_slot():
    """A trial NNI reruns after a stop can end SUCCEEDED without its final result reaching the advisor
    (docs/nni_defects.md): its record gives the score, but only a SUCCEEDED record of that very slot."""
    first = _ladder()
    params = {pid: first.propose(pid) for pid in range(4)}
    lad = _ladder()
    lad.import_data([{"parameter": params[pid], "value": 0.1 * (pid + 1)} for pid in (0, 1, 2)])
    lad.adopt(3, params[3])

    def record(status="SUCCEEDED", **rung):
        return {"status": status, "metrics": {"default": 0.9, "dice": 0.9},
                "rung": {"rung": 0, "candidate": 3, "repeat": 0, **rung}}

    assert not lad.result_from_record(3, record(candidate=2))  # another slot's record
    assert not lad.result_from_record(3, record(status="FAILED"))
    assert not lad.result_from_record(3, None) and not lad.result_from_record(99, record())
    assert lad.result_from_record(3, record())
    lad.end(3)
    promoted = [lad.propose(pid)["LADDER"] for pid in range(10, 14)]
    assert [(x["rung"], x["candidate"]) for x in promoted] == [(1, 3), (1, 3), (1, 2), (1, 2)]


def _with_incumbents(incumbents=None, rungs=RUNGS) -> Ladder:
    lad = Ladder(rungs, tuner="Random", tuner_args={"seed": 0}, budget=BUDGET,
                 incumbents=["unet"] if incumbents is None else incumbents)
    lad.update_search_space(legacy_search_space("choice", "joint"))
    return lad


def _run(lad: Ladder, pids, scores) -> None:
    for pid, score in zip(pids, scores):
        lad.result(pid, score)
        lad.end(pid)


def test_an_incumbent_skips_the_screen_fills_its_idle_slots_and_is_ranked_at_the_top_rung():
    from nni_seg.space.arch import decode_parameters, split_joint

    lad = _with_incumbents([{"network": "unet", "train_lr": 1e-3}])
    screen = [lad.propose(pid)["LADDER"] for pid in range(4)]
    assert [(x["rung"], x["candidate"]) for x in screen] == [(0, 0), (0, 1), (0, 2), (0, 3)]
    idle = [lad.propose(pid) for pid in (4, 5)]  # the screen is running: the incumbent's top-rung trials fill in
    assert [(p["LADDER"]["rung"], p["LADDER"]["candidate"], p["LADDER"]["repeat"]) for p in idle] == [
        (1, -1, 0), (1, -1, 1)]
    arch, recipe = split_joint({k: v for k, v in idle[0].items() if k != "LADDER"})
    assert decode_parameters(arch) == unet_arch() and recipe == {**RECIPE_DEFAULTS, "train_lr": 1e-3}
    assert lad.propose(6) is None
    _run(lad, range(4), [0.2, 0.9, 0.5, 0.7])
    top = [lad.propose(pid)["LADDER"] for pid in range(6, 10)]
    assert [(x["candidate"], x["repeat"]) for x in top] == [(1, 0), (1, 1), (3, 0), (3, 1)]
    assert lad.propose(10) is None
    _run(lad, range(6, 10), [0.6, 0.6, 0.7, 0.5])
    assert not lad.done  # the incumbent's trials are still running
    _run(lad, (4, 5), [0.7, 0.65])
    assert lad.done and lad.ranking(1) == [(-1, 0.675), (1, 0.6), (3, 0.6)]
    assert lad.planned_trials() == 4 + 2 * 2 + 2


def test_an_incumbent_not_yet_run_is_queued_with_the_top_rung_and_the_plan_counts_it():
    lad = _with_incumbents(["unet", "seed"])
    for pid in range(4):
        lad.propose(pid)
    _run(lad, range(4), [0.2, 0.9, 0.5, 0.7])  # no idle slot was asked for during the screen
    top = [lad.propose(pid)["LADDER"] for pid in range(4, 12)]
    assert [(x["candidate"], x["repeat"]) for x in top] == [(1, 0), (1, 1), (3, 0), (3, 1), (-1, 0), (-1, 1),
                                                            (-2, 0), (-2, 1)]
    assert lad.propose(12) is None
    assert plan_trials(lad.rungs, 2) == lad.planned_trials() == 12
    assert plan_cost(lad.rungs, 2) == {"trials": 12, "trial_epochs": 4 + 16, "base_epochs": 4 + 4 * 2 * 2 * 4.0}


def test_a_resumed_ladder_keeps_its_incumbents_finished_and_running_trials():
    first = _with_incumbents()
    params = {pid: first.propose(pid) for pid in range(6)}  # the screen, then the incumbent's two trials
    data = [{"parameter": params[pid], "value": 0.1 * (pid + 1)} for pid in (0, 1, 2, 3, 4)]
    again = _with_incumbents()
    again.import_data(data)
    again.adopt(5, params[5])  # the incumbent's second training was running at the stop
    top = [again.propose(pid)["LADDER"] for pid in range(10, 14)]
    assert [(x["candidate"], x["repeat"]) for x in top] == [(3, 0), (3, 1), (2, 0), (2, 1)]
    assert again.propose(14) is None
    _run(again, [5, 10, 11, 12, 13], [0.9, 0.1, 0.1, 0.1, 0.1])
    assert again.done and again.ranking(1)[0] == (-1, pytest.approx(0.7))


@pytest.mark.parametrize("incumbents,rungs,says", [
    (["vgg"], RUNGS, "incumbents: unknown network 'vgg'"),
    ([{"network": "unet", "train_lr": 0.3}], RUNGS, "incumbents: train_lr=0.3 is not one of"),
    ("unet", RUNGS, "incumbents: a list of networks"),
    (["unet"], RUNGS[:1], "incumbents: they enter the top rung above the screen, and this ladder has one rung"),
])
def test_a_bad_incumbent_is_one_line_naming_it(incumbents, rungs, says):
    with pytest.raises(ValueError, match=says):
        _with_incumbents(incumbents, rungs)


def test_the_advisor_finds_a_trials_record_in_its_experiments_folder(tmp_path, monkeypatch):
    from nni_seg.experiment.ladder import trial_record

    folder = tmp_path / "exp" / "environments" / "local-env" / "trials" / "AbC12"
    folder.mkdir(parents=True)
    (folder / "nni_seg_record.json").write_text(json.dumps({"status": "SUCCEEDED", "trial_id": "AbC12"}))
    monkeypatch.setenv("NNI_LOG_DIRECTORY", str(tmp_path / "exp" / "log"))
    assert trial_record("AbC12")["trial_id"] == "AbC12"
    assert trial_record("other") is None and trial_record(None) is None and trial_record("../AbC12") is None
    monkeypatch.delenv("NNI_LOG_DIRECTORY")
    assert trial_record("AbC12") is None


# ------------------------------------------------------------------ held-out selection
def _named(n_a=3, n_b=2):
    from nni_seg.data import SegData

    n = n_a + n_b
    x, y = torch.zeros(n, 3, 8, 8, dtype=torch.uint8), torch.zeros(n, 8, 8, dtype=torch.uint8)
    for i in range(n):
        y[i] = i  # each image is identifiable by its label
    names = [f"A_{i}" for i in range(n_a)] + [f"B_{i}" for i in range(n_b)]
    return SegData("toy", x, y, x[:1], y[:1], [f"c{i}" for i in range(n)], names={"train": names, "val": ["v"]})


def test_holdout_selects_on_the_named_training_images_and_trains_on_the_rest():
    from nni_seg.data import hold_out

    d = hold_out(_named(), "B")
    assert d.names["val"] == ["B_0", "B_1"] and d.names["train"] == ["A_0", "A_1", "A_2"]
    assert d.val_masks[:, 0, 0].tolist() == [3, 4] and d.train_masks[:, 0, 0].tolist() == [0, 1, 2]
    assert d.info["selection"] == "held-out training images B (2 of 5)"


@pytest.mark.parametrize("spec,says", [("C", "matches no training image"), ("A,B", "matches every training image"),
                                       (" , ", "no names or prefixes"), ("@/nonexistent/list", "cannot be read")])
def test_a_holdout_that_cannot_work_is_one_line(spec, says):
    from nni_seg.data import hold_out

    with pytest.raises(DataError, match=says):
        hold_out(_named(), spec)


def test_holdout_of_data_without_names_says_why():
    from nni_seg.data import load_dataset

    with pytest.raises(DataError, match="dataset digits has no image names"):
        load_dataset(DataSettings(size=(16, 16), num_train=4, num_val=2, holdout="x"))


def test_a_packed_folder_dataset_keeps_its_names_for_holdout(tmp_path):
    from PIL import Image

    from nni_seg.data import load_dataset, pack_dataset

    root = tmp_path / "d"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    (root / "classes.txt").write_text("bg\nfg\n")
    for i, name in enumerate(["siteA_1", "siteA_2", "siteB_1", "siteB_2", "val_1"]):
        Image.new("RGB", (16, 16), (i * 40, 0, 0)).save(root / "images" / f"{name}.png")
        Image.new("L", (16, 16), i % 2).save(root / "masks" / f"{name}.png")
    data = load_dataset(DataSettings(dataset="folder", data_root=str(root), num_val=1))
    assert data.names["train"] == ["siteA_1", "siteA_2", "siteB_1", "siteB_2"] and data.names["val"] == ["val_1"]
    packed = pack_dataset(data, tmp_path / "p.npz")
    d = load_dataset(DataSettings(dataset="packed", data_root=str(packed), holdout="siteB"))
    assert d.names["val"] == ["siteB_1", "siteB_2"] and len(d.train_images) == 2


# ------------------------------------------------------------------ the trial
def test_a_trial_takes_its_rung_and_recipe_from_its_parameters():
    from nni_seg.experiment.trial import ladder_fidelity, recipe_from

    params = {"LADDER": {"rung": 1, "epochs": 5, "size": [64, 96], "candidate": 3, "repeat": 1}}
    data, train, rung = ladder_fidelity(params, DataSettings(size=(32, 32)), TrainSettings(seed=10, epochs=1))
    assert data.size == (64, 96) and train.epochs == 5 and train.seed == 11 and rung.candidate == 3
    arch, train, recipe = recipe_from({**seed_arch(), "train_lr": 1e-2, "train_loss": "ce"}, TrainSettings())
    assert arch == seed_arch() and (train.lr, train.loss) == (1e-2, "ce") and recipe == {"train_lr": 1e-2, "train_loss": "ce"}


@pytest.mark.parametrize("ladder,says", [({"rung": 0, "epochs": 0}, "epochs >= 1"),
                                         ({"rung": "x"}, "rung"), ({"size": [8]}, "size")])
def test_a_bad_ladder_parameter_is_one_line(ladder, says):
    from nni_seg.experiment.trial import ladder_fidelity

    with pytest.raises(UserError, match=says):
        ladder_fidelity({"LADDER": ladder}, DataSettings(), TrainSettings())


# ------------------------------------------------------------------ export
def _record(tmp, tid, rung, cand, score, repeat=0, **arch):
    write_record(tmp, tid, score, parameter_id=tid, arch=dict(seed_arch(), **arch), metrics={"mmacs": 1.0},
                 recipe={"train_lr": 1e-3 * (1 + cand)},
                 rung={"rung": rung, "epochs": 1 + rung, "size": [32, 32], "candidate": cand, "repeat": repeat})


def test_a_ladder_export_takes_the_best_mean_at_the_top_rung_with_its_recipe(tmp_path):
    from nni_seg.workflow.export import top_architecture

    _record(tmp_path, "a", 0, 0, 0.95)  # the best single score, at the screen
    _record(tmp_path, "b", 0, 1, 0.5)
    _record(tmp_path, "c", 0, 2, 0.6)
    _record(tmp_path, "d", 1, 1, 0.70, 0, enc1_width=32)
    _record(tmp_path, "e", 1, 1, 0.60, 1, enc1_width=32)
    _record(tmp_path, "f", 1, 2, 0.72, 0)  # the best single score of the top rung, worse mean
    _record(tmp_path, "g", 1, 2, 0.50, 1)
    top = top_architecture(tmp_path)
    assert top.trial_id == "d" and top.arch["enc1_width"] == 32 and top.recipe == {"train_lr": 2e-3}
    assert top.ladder.rung == 1 and top.ladder.candidate == 1 and top.ladder.scores == [0.70, 0.60]
    assert top.recipe_settings() == {"lr": 2e-3}


def test_a_ladder_export_weighs_an_incumbent_at_the_top_rung_but_not_above_where_the_search_stopped(tmp_path):
    from nni_seg.workflow.export import top_architecture

    _record(tmp_path, "a", 0, 0, 0.5)
    _record(tmp_path, "b", 0, 1, 0.6)
    _record(tmp_path, "u0", 2, -1, 0.8, enc1_width=32)  # the incumbent, trained at the top rung in idle slots
    _record(tmp_path, "u1", 2, -1, 0.8, 1, enc1_width=32)
    _record(tmp_path, "c", 1, 1, 0.7)  # the search stopped at rung 1
    assert top_architecture(tmp_path).trial_id == "c"
    _record(tmp_path, "d", 2, 1, 0.75)
    _record(tmp_path, "e", 2, 1, 0.7, 1)
    top = top_architecture(tmp_path)
    assert top.ladder.rung == 2 and top.ladder.candidate == -1 and top.arch["enc1_width"] == 32
    assert top.ladder.candidates == {"-1": [0.8, 0.8], "1": [0.75, 0.7]}


# ------------------------------------------------------------------ end to end
def _ladder_config(tmp_path: Path, max_trials: int = 5, epochs: int = 1) -> dict:
    """A digits ladder: 3 screened at 16x16, the best trained twice at 32x32 (5 trials)."""
    import yaml

    trial = tmp_path / "trial.yml"
    trial.write_text(yaml.safe_dump({"data": {"dataset": "digits", "size": [16, 16], "num_train": 16, "num_val": 8},
                                     "train": {"epochs": 1, "batch_size": 8, "threads": 1, "device": "cpu"}}))
    rungs = [{"trials": 3, "epochs": epochs, "size": [16, 16]},
             {"keep": 1, "epochs": 2, "size": [32, 32], "repeats": 2}]
    return {"experimentName": "ladder-test", "searchSpaceFile": str(ROOT / "experiments" / "search_space_joint.json"),
            "trialCommand": f"python -m nni_seg.trial --config {trial}", "trialCodeDirectory": str(ROOT),
            "trialConcurrency": 2, "maxTrialNumber": max_trials, "maxExperimentDuration": "10m",
            "experimentWorkingDirectory": str(tmp_path / "exps"),
            "tuner": {"className": "nni_seg.ladder.LadderAdvisor", "codeDirectory": str(ROOT),
                      "classArgs": {"tuner": "Random", "tuner_args": {"seed": 0}, "rungs": rungs,
                                    "budget": {"max_mmacs_of": "unet", "size": [16, 16], "num_classes": 5}}},
            "trainingService": {"platform": "local"}}


@pytest.mark.slow
def test_a_ladder_stopped_during_its_screen_resumes_under_nnictl_and_finishes_its_plan(tmp_path):
    """`nnictl stop` after two screen trials, then `run --resume`: the ladder rebuilds its rungs from NNI's
    import data, reruns nothing that finished, promotes the best screened candidate and exports the top rung.
    A trial canceled by the stop counts against maxTrialNumber, so the config leaves room for its redraw."""
    import yaml

    config = tmp_path / "config.yml"
    config.write_text(yaml.safe_dump(_ladder_config(tmp_path, max_trials=7, epochs=3)))
    exp_id = create_then_stop(config, tmp_path)
    exp_dir = tmp_path / "exps" / exp_id
    try:
        before = {r["trial_id"]: r for r in records_of(exp_dir) if r["status"] == "SUCCEEDED"}
        assert len(before) >= 2 and all(r["rung"]["rung"] == 0 for r in before.values())
        resumed = run_cli(["run", "--resume", exp_id, "--port", str(free_port()), "--timeout", "600"], tmp_path)
        assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
        done = [r for r in records_of(exp_dir) if r["status"] == "SUCCEEDED"]
        assert all(any(r["trial_id"] == t for r in done) for t in before)  # nothing finished was lost
        screen = [r for r in done if r["rung"]["rung"] == 0]
        top_rung = [r for r in done if r["rung"]["rung"] == 1]
        assert len({r["rung"]["candidate"] for r in screen}) == 3 and len(screen) == 3  # none screened twice
        best = max(screen, key=lambda r: r["metrics"]["default"])["rung"]["candidate"]
        assert sorted(r["rung"]["repeat"] for r in top_rung) == [0, 1]
        assert {r["rung"]["candidate"] for r in top_rung} == {best}
        top = json.loads((exp_dir / "top_arch.json").read_text())
        assert top["ladder"]["rung"] == 1 and top["ladder"]["candidate"] == best
    finally:
        nnictl(["stop", exp_id], tmp_path)


@pytest.mark.slow
def test_a_ladder_search_runs_under_nni_and_exports_its_top_rung(tmp_path):
    import yaml

    cfg = _ladder_config(tmp_path)
    short = tmp_path / "short.yml"
    short.write_text(yaml.safe_dump(dict(cfg, maxTrialNumber=4)))
    r = run_cli(["run", str(short)], tmp_path)
    assert r.returncode == 2 and "maxTrialNumber 4 < the 5 trials of the ladder" in r.stderr
    config = tmp_path / "config.yml"
    config.write_text(yaml.safe_dump(cfg))
    r = run_cli(["run", str(config), "--out", str(tmp_path / "top.json")], tmp_path)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    recs = records_of(tmp_path / "exps" / experiment_id(r.stdout))
    rungs_run = sorted((x["rung"]["rung"], x["rung"]["repeat"], tuple(x["dataset"]["size"]), x["train"]["epochs"])
                       for x in recs)
    assert rungs_run == [(0, 0, (16, 16), 1)] * 3 + [(1, 0, (32, 32), 2), (1, 1, (32, 32), 2)]
    top = json.loads((tmp_path / "top.json").read_text())
    assert top["ladder"]["rung"] == 1 and len(top["ladder"]["scores"]) == 2 and set(top["recipe"]) == set(RECIPE_CHOICES)
    assert all(x["recipe"] == top["recipe"] for x in recs if x["rung"]["rung"] == 1)
    # retrain takes the searched recipe unless a flag says otherwise
    out = subprocess.run([sys.executable, "-m", "nni_seg", "retrain", str(tmp_path / "top.json"), "--dataset", "digits",
                          "--size", "16", "16", "--num-train", "16", "--num-val", "8", "--epochs", "1", "--threads", "1",
                          "--device", "cpu", "--lr", "0.003", "--out", str(tmp_path / "ckpt")],
                         capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    meta = json.loads((tmp_path / "ckpt" / "meta.json").read_text())
    want = dataclasses.replace(TrainSettings(), **recipe_settings(top["recipe"]))
    assert meta["train"]["lr"] == 0.003 and meta["train"]["loss"] == want.loss and meta["train"]["batch_size"] == want.batch_size
    assert Path(tmp_path / "ckpt" / "meta.json").exists()


@pytest.mark.slow
def test_an_incumbent_under_nni_trains_only_at_the_top_rung_and_is_weighed_there(tmp_path):
    import yaml

    from nni_seg.space.arch import decode_parameters, split_joint

    cfg = _ladder_config(tmp_path, max_trials=7)
    cfg["tuner"]["classArgs"]["incumbents"] = [{"network": "seed", "train_lr": 1e-3}]
    config = tmp_path / "config.yml"
    config.write_text(yaml.safe_dump(cfg))
    r = run_cli(["run", str(config), "--out", str(tmp_path / "top.json")], tmp_path)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    recs = records_of(tmp_path / "exps" / experiment_id(r.stdout))
    mine = [x for x in recs if x["rung"]["candidate"] == -1]
    assert sorted((x["rung"]["rung"], x["rung"]["repeat"], tuple(x["dataset"]["size"])) for x in mine) == [
        (1, 0, (32, 32)), (1, 1, (32, 32))]
    assert all(split_joint(decode_parameters(x["arch"]))[0] == seed_arch() and x["train"]["lr"] == 1e-3 for x in mine)
    assert sorted(x["rung"]["rung"] for x in recs) == [0, 0, 0, 1, 1, 1, 1]
    top = json.loads((tmp_path / "top.json").read_text())
    assert top["ladder"]["rung"] == 1 and set(top["ladder"]["candidates"]) >= {"-1"} and len(top["ladder"]["candidates"]) == 2
