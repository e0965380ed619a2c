import re
import socket
from pathlib import Path

import pytest

from nni_seg.experiment import lifecycle as launch
from nni_seg.errors import ConfigError, UserError
from nni_seg.experiment.lifecycle import ExperimentDead, check_config, check_environment, choose_port, follow

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("name", ["config.yml", "experiments/tpe.yml", "experiments/random.yml",
                                  "experiments/evolution.yml", "experiments/regularized_evolution.yml",
                                  "experiments/rl.yml", "experiments/gpu.yml", "experiments/seeded_tpe.yml",
                                  "experiments/hyperband.yml", "experiments/tpe_medianstop.yml", "experiments/bohb.yml",
                                  "experiments/camvid/search_cpu.yml", "experiments/camvid/joint_cpu.yml",
                                  "experiments/camvid/joint_long_cpu.yml", "experiments/camvid/joint_unet_cpu.yml",
                                  "experiments/camvid/joint_random_cpu.yml", "experiments/camvid/joint_lr_cpu.yml",
                                  "experiments/camvid/arch_ladder_cpu.yml", "experiments/camvid/joint_inc_cpu.yml",
                                  "experiments/camvid/arch_inc_cpu.yml", "experiments/camvid/joint_wide_cpu.yml",
                                  "experiments/camvid/tpe_unet_cpu.yml",
                                  "experiments/camvid/search_gpu.yml",
                                  "experiments/camvid/random_cpu.yml", "experiments/camvid/tpe_cpu.yml",
                                  "experiments/camvid/tpe_single_op_cpu.yml",
                                  "experiments/camvid/hyperband_cpu.yml", "experiments/isbi2012/search_cpu.yml",
                                  "experiments/gpu_unscheduled.yml"])
def test_shipped_configs_pass_nni_validation(name, fake_gpus):
    fake_gpus(1)  # the GPU configs are also checked against the GPUs NNI would see
    assert check_config(ROOT / name)["trainingService"]["platform"] == "local"


def test_config_errors_name_the_file(tmp_path):
    with pytest.raises(ConfigError, match="config not found: .*nope.yml"):
        check_config(tmp_path / "nope.yml")
    bad = tmp_path / "bad.yml"
    bad.write_text("a: [unclosed\n")
    with pytest.raises(ConfigError, match="bad.yml: not valid YAML"):
        check_config(bad)
    good = (ROOT / "config.yml").read_text().replace("experiments/", str(ROOT / "experiments") + "/")
    for key, value, msg in (("maxTrialNumber: 8", "maxTrialNumber: 0", "maxTrialNumber: must be a positive integer"),
                            ("trialConcurrency: 2", "trialConcurrency: -1", "trialConcurrency: must be a positive"),
                            ("maxExperimentDuration: 30m", "maxExperimentDuration: 0s", "NNI's check failed: ")):
        bad.write_text(good.replace(key, value))
        with pytest.raises(ConfigError, match=f"bad.yml: {msg}"):
            check_config(bad)


def test_busy_port_is_refused_and_the_default_falls_back():
    with socket.socket() as s:
        s.bind(("", 0))
        s.listen()
        taken = s.getsockname()[1]
        with pytest.raises(UserError, match=f"--port {taken} is in use"):
            choose_port(taken)
    assert choose_port(taken) == taken
    assert isinstance(choose_port(None), int)


def test_environment_check_passes_with_pinned_filelock(monkeypatch):
    check_environment()
    import importlib.metadata as md

    monkeypatch.setattr(md, "version", lambda name: "3.20.0")
    with pytest.raises(UserError, match="filelock 3.20.0 makes NNI 3.0's nnictl hang"):
        check_environment()


def test_remote_config_passes_nni_validation_given_its_ssh_key(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(ConfigError, match=r"remote.yml: .*valid SSH key file"):
        check_config(ROOT / "experiments" / "remote.yml")
    (tmp_path / ".ssh").mkdir()
    (tmp_path / ".ssh" / "id_ed25519").write_text("not a real key; NNI checks that the file exists\n")
    cfg = check_config(ROOT / "experiments" / "remote.yml")
    hosts = cfg["trainingService"]["machineList"]
    assert cfg["trainingService"]["platform"] == "remote" and len(hosts) == 2
    assert hosts[0]["gpuIndices"] == [0, 1] and hosts[0]["maxTrialNumberPerGpu"] == 2


def test_unknown_tuner_or_assessor_name_lists_the_valid_ones(tmp_path):
    text = (ROOT / "config.yml").read_text().replace("experiments/", str(ROOT / "experiments") + "/")
    text = text.replace("trialCodeDirectory: .", f"trialCodeDirectory: {ROOT}")
    bad = tmp_path / "c.yml"
    bad.write_text(text.replace("name: TPE", "name: TPEE"))
    with pytest.raises(ConfigError, match=r"c.yml: unknown tuner 'TPEE'; valid: .*Random.*TPE"):
        check_config(bad)
    bad.write_text(text + "assessor:\n  name: Medianstopp\n")
    with pytest.raises(ConfigError, match=r"unknown assessor 'Medianstopp'; valid: Curvefitting, Medianstop"):
        check_config(bad)
    bad.write_text(text.replace("name: TPE", "name: tpe"))  # NNI's names are case-insensitive
    check_config(bad)


def _gpu_config(tmp_path, need, **service):
    import yaml

    cfg = yaml.safe_load((ROOT / "experiments" / "gpu.yml").read_text())
    cfg.update(trialGpuNumber=need, searchSpaceFile=str(ROOT / "experiments" / "search_space.json"),
               trialCodeDirectory=str(ROOT))
    cfg["trainingService"].update(service)
    path = tmp_path / "gpu.yml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_gpu_config_without_gpus_is_refused_before_starting(tmp_path, fake_gpus):
    fake_gpus(-1)  # NVML missing: NNI's manager would quit seconds after nnictl create returned 0
    with pytest.raises(ConfigError, match=r"gpu.yml: trialGpuNumber: 1 but NNI's GPU probe found no GPU "
                                         r"\(init: NVML Shared Library Not Found \(fake\)\); remove trialGpuNumber"):
        check_config(_gpu_config(tmp_path, 1))
    fake_gpus(0)
    with pytest.raises(ConfigError, match=r"trialGpuNumber: 1 but NNI sees only 0 usable GPU\(s\) \(0 found\)"):
        check_config(_gpu_config(tmp_path, 1))


def test_gpu_config_asking_more_gpus_than_usable_is_refused(tmp_path, fake_gpus):
    fake_gpus(2)
    check_config(_gpu_config(tmp_path, 2, maxTrialNumberPerGpu=1))
    check_config(_gpu_config(tmp_path, 1, gpuIndices=[1]))
    with pytest.raises(ConfigError, match=r"trialGpuNumber: 3 but NNI sees only 2 usable GPU\(s\) \(2 found\)"):
        check_config(_gpu_config(tmp_path, 3, maxTrialNumberPerGpu=1))
    with pytest.raises(ConfigError, match=r"trialGpuNumber: 2 but NNI sees only 1 usable GPU\(s\) "
                                         r"\(gpuIndices \[1, 5\] of 2 found\)"):
        check_config(_gpu_config(tmp_path, 2, gpuIndices=[1, 5], maxTrialNumberPerGpu=1))


def test_follow_gives_up_when_no_trial_starts_and_quotes_nni(tmp_path, monkeypatch):
    """A trial NNI cannot place on a GPU never shows up in /trial-jobs; the follower says why, from NNI's log."""
    (tmp_path / "log").mkdir()
    (tmp_path / "log" / "nnimanager.log").write_text(
        "[2026-11-28 03:00:00] INFO (main) Start\n"
        "[2026-11-28 03:00:01] INFO (TrialKeeper.local) Scheduling failed because the GPU constraint cannot be "
        "satisfied\n[2026-11-28 03:00:01] INFO (NNIManager) something else\n")
    monkeypatch.setattr(launch, "experiment_dir", lambda exp_id: tmp_path)
    answers = {"/check-status": {"status": "RUNNING"}, "/trial-jobs": []}
    monkeypatch.setattr(launch, "rest", lambda port, path: answers[path])
    with pytest.raises(ExperimentDead, match=r"no trial started in 0s; experiment exp is stuck in RUNNING; "
                                             r"NNI: .*Scheduling failed because the GPU constraint"):
        follow("exp", 1, timeout=60, stall=0.05, poll=0.01, log=lambda msg: None)
    answers["/trial-jobs"] = [{"trialJobId": "a", "status": "RUNNING"}]
    with pytest.raises(ExperimentDead, match="still RUNNING after 0s"):  # a trial runs: only --timeout ends it
        follow("exp", 1, timeout=0.1, stall=0.05, poll=0.01, log=lambda msg: None)
    # the tuner has nothing more to give (a one-point space) and every trial has ended: done, not a timeout
    answers.update({"/check-status": {"status": "TUNER_NO_MORE_TRIAL"},
                    "/trial-jobs": [{"trialJobId": "a", "status": "SUCCEEDED"}]})
    monkeypatch.setattr(launch, "TUNER_PAUSE_SECONDS", 0.05)
    assert follow("exp", 1, timeout=60, stall=60, poll=0.01, log=lambda msg: None)["status"] == "TUNER_NO_MORE_TRIAL"


def test_follow_waits_out_a_multi_fidelity_tuners_pause(monkeypatch):
    """BOHB says "no more trials" while a rung's results are pending, then sends the next rung: a short quiet
    spell with nothing active is not the end (CI once stopped a BOHB search there and canceled its next trial)."""
    monkeypatch.setattr(launch, "experiment_dir", lambda exp_id: None)
    monkeypatch.setattr(launch, "TUNER_PAUSE_SECONDS", 0.3)
    done = [{"trialJobId": "a", "status": "SUCCEEDED"}]
    script = ([("TUNER_NO_MORE_TRIAL", done)] * 3 + [("RUNNING", done + [{"trialJobId": "b", "status": "RUNNING"}])] * 3
              + [("TUNER_NO_MORE_TRIAL", done + [{"trialJobId": "b", "status": "SUCCEEDED"}])] * 1000)
    polls = []

    def rest(port, path):
        if path == "/check-status":
            polls.append(None)
        status, trials = script[len(polls) - 1]
        return {"status": status} if path == "/check-status" else trials

    monkeypatch.setattr(launch, "rest", rest)
    assert follow("exp", 1, timeout=60, stall=60, poll=0.02, log=lambda msg: None)["status"] == "TUNER_NO_MORE_TRIAL"
    assert len(polls) > 6  # not ended during the first pause, before trial b


def test_stop_that_hangs_kills_the_manager_and_its_children(tmp_path, monkeypatch, capsys):
    import json
    import subprocess
    import time

    import psutil

    manager = subprocess.Popen(["bash", "-c", "sleep 300 & sleep 300 & wait"])
    time.sleep(0.5)
    children = psutil.Process(manager.pid).children(recursive=True)
    assert len(children) == 2
    monkeypatch.setenv("NNI_HOME_DIR", str(tmp_path))
    (tmp_path / ".experiment").write_text(json.dumps({"exp1": {"id": "exp1", "pid": manager.pid}}))

    def hang(*args, timeout=None, **kwargs):
        raise subprocess.TimeoutExpired(args[0], timeout)

    monkeypatch.setattr(launch.subprocess, "run", hang)
    launch.stop("exp1", timeout=1)
    manager.wait(timeout=5)  # gone (psutil may have reaped it, so no exit code to compare)
    assert not any(c.is_running() and c.status() != psutil.STATUS_ZOMBIE for c in children)
    assert f"nnictl stop exp1 did not return in 1s; killed its NNI manager (pid {manager.pid}, 3 processes" \
        in capsys.readouterr().err


def test_a_rejected_config_does_not_spoil_the_next_check(tmp_path):
    """NNI's ExperimentConfig.load leaves a module-wide base path set when a config fails inside it; every
    later load in the process then failed with "_current_base_path is None" (seen in CI)."""
    good = (ROOT / "config.yml").read_text().replace("experiments/", str(ROOT / "experiments") + "/")
    bad = tmp_path / "bad.yml"
    bad.write_text(good.replace("maxExperimentDuration: 30m", "maxExperimentDuration: 0s"))
    with pytest.raises(ConfigError, match="NNI's check failed"):
        check_config(bad)
    assert check_config(ROOT / "config.yml")["maxTrialNumber"] == 8


def test_stop_waits_for_the_manager_to_exit_so_its_port_is_free_again():
    """A script running searches one after another on one --port was refused: nnictl stop returns first."""
    import subprocess
    import sys
    import time

    from nni_seg.experiment.lifecycle import _wait_gone

    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(1.5)"])
    t0 = time.time()
    _wait_gone(proc.pid, 30)
    assert proc.poll() is not None or proc.wait(1) == 0  # gone (a child: reaped by the wait above or here)
    assert 1.0 < time.time() - t0 < 20
    _wait_gone(None, 30)  # no manager known: nothing to wait for


def test_guided_tuner_arguments_are_checked_before_nnictl_starts(tmp_path):
    """A wrong exclude / start_with / classArg would only fail in NNI's dispatcher, after nnictl returned 0."""
    camvid = ROOT / "experiments" / "camvid"
    good = (camvid / "search_cpu.yml").read_text().replace("../", f"{camvid}/../")
    bad = tmp_path / "bad.yml"
    for old, new, msg in (("exclude: {up: [deconv]", "exclude: {up: [transposed]",
                           r"bad.yml: tuner.classArgs: exclude.up: 'transposed' is not one of \["),
                          ("    exclude:", "    start_with: [unet]\n    exclude:",
                           "bad.yml: tuner.classArgs: start_with: a network with enc_join='serial', which exclude"),
                          ("    exclude:", "    excluded:", "bad.yml: tuner.classArgs: .*unexpected keyword argument 'excluded'"),
                          ("max_mmacs_of: unet,", "max_mmacs: -5,", "budget.max_mmacs: a number > 0, got -5"),
                          ("num_classes: 11", "num_classes: eleven", "budget.num_classes: an integer >= 1, got 'eleven'"),
                          ("enc1_width: [16]", "enc1_depth: [true]", r"exclude.enc1_depth: True is not one of \[1, 2, 3\]")):
        assert old in good
        bad.write_text(good.replace(old, new))
        with pytest.raises(ConfigError, match=msg):
            check_config(bad)


@pytest.mark.parametrize("change,msg", [
    ({"enc1_width": {"_type": "choice", "_value": [16, 24]}}, "enc1_width: 24 is not one of [16, 32, 64]"),
    ({"enc1_depth": {"_type": "randint", "_value": [1, 3]}}, "enc1_depth: expected {_type: choice or layer_choice"),
    ({"nosuch": {"_type": "choice", "_value": [1]}}, "unknown label(s) nosuch"),
    ({"act": None}, "missing label(s) act"),
    ("empty", "expected a non-empty mapping"),
], ids=["unknown value", "randint", "extra label", "missing label", "empty"])
def test_a_search_space_the_trial_cannot_build_is_refused_before_nnictl_starts(tmp_path, change, msg):
    import json

    space = json.loads((ROOT / "experiments" / "search_space.json").read_text())
    if change == "empty":
        space = {}
    else:
        for k, v in change.items():
            if v is None:
                space.pop(k)
            else:
                space[k] = v
    (tmp_path / "space.json").write_text(json.dumps(space))
    cfg = (ROOT / "config.yml").read_text()
    cfg = "\n".join(line for line in cfg.splitlines() if not line.startswith(("searchSpaceFile", "trialCodeDirectory")))
    (tmp_path / "c.yml").write_text(cfg + f"\nsearchSpaceFile: {tmp_path / 'space.json'}\ntrialCodeDirectory: {ROOT}\n")
    with pytest.raises(ConfigError, match=re.escape(msg)):
        check_config(tmp_path / "c.yml")
    for shipped in sorted((ROOT / "experiments").rglob("*.yml")):  # every shipped search passes
        text = shipped.read_text()
        if "searchSpaceFile" in text and "nni_seg.trial" in text and "trialGpuNumber" not in text:
            check_config(shipped)


@pytest.mark.parametrize("how", ["interrupted", "timed out"])
def test_a_create_that_does_not_return_stops_the_experiment_nnictl_had_registered(monkeypatch, how):
    """SIGTERM or Ctrl-C while `nnictl create` still runs (or create hangs): the manager it had started
    on our port is stopped, by the id in nnictl's registry, and no other experiment is touched."""
    import signal
    import sys
    import threading

    registry = {"old": {"port": 9001, "status": "RUNNING"}}
    monkeypatch.setattr(launch, "registered_experiments", lambda: dict(registry))
    # a fake nnictl that registers its experiment, then hangs before printing the id
    monkeypatch.setattr(launch, "_nnictl", lambda: [sys.executable, "-c", "import time; time.sleep(30)"])
    stopped = []
    monkeypatch.setattr(launch, "stop", lambda exp_id: stopped.append(exp_id))
    # Ctrl-C as a terminal delivers it, also where this process was started with SIGINT ignored (a
    # background job of a non-interactive shell, as CI may run it)
    old_handler = signal.signal(signal.SIGINT, signal.default_int_handler)
    timer = threading.Timer(1.0, lambda: registry.update(new={"port": 9002, "status": "RUNNING"}) or (
        signal.raise_signal(signal.SIGINT) if how == "interrupted" else None))
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt if how == "interrupted" else ExperimentDead):
            launch.create(Path("c.yml"), 9002, timeout=30 if how == "interrupted" else 2)
    finally:
        timer.cancel()
        signal.signal(signal.SIGINT, old_handler)
    assert stopped == ["new"]


def test_a_config_copied_with_trial_flags_runs_from_elsewhere_and_leaves_the_original(tmp_path):
    import shutil

    import yaml

    from nni_seg.experiment.lifecycle import check_config, with_trial_flags

    shutil.copytree(ROOT / "experiments", tmp_path / "experiments")
    original = tmp_path / "experiments" / "camvid" / "arch_ladder_cpu.yml"
    before = original.read_text()
    copy = with_trial_flags(original, ["--lr", "0.0022", "--loss", "ce+dice"], tmp_path / "elsewhere" / "c.yml")
    raw = yaml.safe_load(copy.read_text())
    assert raw["trialCommand"].endswith("trial_arch_cpu.yml --lr 0.0022 --loss ce+dice")
    assert raw["searchSpaceFile"] == str((tmp_path / "experiments" / "search_space.json").resolve())
    assert raw["trialCodeDirectory"] == raw["tuner"]["codeDirectory"] == str(tmp_path.resolve())
    assert original.read_text() == before
    check_config(copy)
