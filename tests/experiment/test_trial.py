import json

import pytest

from nni_seg.config.schema import RECORD_NAME
from nni_seg.experiment.trial import main

TINY = ["--size", "24", "24", "--num-train", "16", "--num-val", "8", "--epochs", "1", "--batch-size", "8",
        "--device", "cpu"]


def test_standalone_trial_writes_record(tmp_path, arch_file, tiny_arch, capsys):
    assert main(["--arch", str(arch_file), "--out", str(tmp_path / "t"), *TINY]) == 0
    rec = json.loads((tmp_path / "t" / RECORD_NAME).read_text())
    assert rec["status"] == "SUCCEEDED" and rec["arch"] == tiny_arch
    assert rec["metrics"]["default"] == rec["metrics"]["dice"] and 0 <= rec["metrics"]["dice"] <= 1
    assert rec["params"] > 0 and rec["mmacs"] > 0 and len(rec["history"]) == 1 and rec["format_version"] == 1
    assert rec["latency_ms"] is None and "latency_ms" not in rec["metrics"]  # no extra forward passes unasked
    assert rec["device"] == "cpu" and rec["data"]["size"] == [24, 24] and rec["train"]["epochs"] == 1
    assert set(rec["timings"]) >= {"startup", "data", "build", "cost", "train"}
    assert "dice=" in capsys.readouterr().out
    assert main(["--arch", str(arch_file), "--out", str(tmp_path / "t"), *TINY]) == 2  # the record is not replaced
    assert main(["--arch", "unet", "--out", str(tmp_path / "l"), *TINY, "--latency"]) == 0
    assert json.loads((tmp_path / "l" / RECORD_NAME).read_text())["metrics"]["latency_ms"] > 0


def test_exported_file_is_accepted_as_arch(tmp_path, tiny_arch):
    f = tmp_path / "top.json"
    f.write_text(json.dumps({"arch": tiny_arch, "metrics": {}}))
    assert main(["--arch", str(f), "--out", str(tmp_path / "t"), *TINY]) == 0


@pytest.mark.parametrize("content,msg", [
    (None, "architecture file not found"),
    ("[]", "expected a JSON object"),
    ("{not json", "is not valid JSON"),
    ('{"levels": 3}', "missing choice"),
])
def test_bad_arch_file_is_one_clear_error(tmp_path, capsys, content, msg):
    f = tmp_path / "a.json"
    if content is not None:
        f.write_text(content)
    assert main(["--arch", str(f), *TINY]) == 2
    err = capsys.readouterr().err
    assert msg in err and err.count("\n") == 1


@pytest.mark.parametrize("flags,msg", [
    (["--batch-size", "-4"], "--batch-size: must be >= 1, got -4"),
    (["--epochs", "0"], "--epochs: must be >= 1, got 0"),
    (["--loss", "foo"], "--loss: must be one of ce, ce+dice; got 'foo'"),
    (["--num-train", "-3"], "--num-train: must be >= 1, got -3"),
    (["--size", "8", "8"], "--size 8 8: digit scenes need at least 10x10"),
    (["--epochs", "two"], "argument --epochs: expected an integer, got 'two'"),
])
def test_bad_settings_are_refused_before_any_work(tmp_path, capsys, flags, msg):
    assert main(["--arch", "seed", "--out", str(tmp_path / "t"), *TINY, *flags]) == 2
    err = capsys.readouterr().err
    assert msg in err and err.count("\n") == 1
    assert not (tmp_path / "t" / RECORD_NAME).exists() or "digit" in msg


def test_trial_config_file_and_flags_on_top(tmp_path):
    cfg = tmp_path / "trial.yml"
    cfg.write_text("data: {size: [24, 24], num_train: 16, num_val: 8}\n"
                   "train: {epochs: 1, batch_size: 8, lr: 3e-3, device: cpu}\nbudget: {max_mmacs: 1000}\n")
    assert main(["--config", str(cfg), "--arch", "unet", "--out", str(tmp_path / "t"), "--lr", "1e-3"]) == 0
    rec = json.loads((tmp_path / "t" / RECORD_NAME).read_text())
    assert rec["train"]["lr"] == 1e-3 and rec["data"]["num_train"] == 16 and rec["budget"]["max_mmacs"] == 1000
    cfg.write_text("train: {epochs: two}\n")
    assert main(["--config", str(cfg), "--arch", "unet"]) == 2


def test_over_budget_architecture_is_rejected_before_training(tmp_path, arch_file, capsys):
    assert main(["--arch", "seed", "--out", str(tmp_path / "t"), *TINY, "--max-mmacs", "10"]) == 0
    rec = json.loads((tmp_path / "t" / RECORD_NAME).read_text())
    assert rec["status"] == "REJECTED" and "MMACs > 10.0" in rec["reason"] and rec["history"] == []
    assert rec["metrics"]["default"] == 0.0 and rec["metrics"]["rejected"] == 1
    assert "rejected before training" in capsys.readouterr().out
    assert main(["--arch", str(arch_file), "--out", str(tmp_path / "u"), *TINY, "--max-mmacs", "1000"]) == 0
    assert json.loads((tmp_path / "u" / RECORD_NAME).read_text())["status"] == "SUCCEEDED"
    # the U-Net's own cost as the budget: the seed's net (2295 vs 1997 MMACs at 96x128) is over it
    assert main(["--arch", "seed", "--out", str(tmp_path / "v"), *TINY, "--max-mmacs-of", "unet"]) == 0
    rec = json.loads((tmp_path / "v" / RECORD_NAME).read_text())
    assert rec["status"] == "REJECTED" and "(unet's)" in rec["reason"]
    assert main(["--arch", "unet", "--out", str(tmp_path / "w"), *TINY, "--max-mmacs-of", "unet"]) == 0
    assert json.loads((tmp_path / "w" / RECORD_NAME).read_text())["status"] == "SUCCEEDED"


@pytest.mark.parametrize("kind, reason", [("nan", "TrainingDiverged: loss became nan at epoch 1"),
                                          ("oom", "out of memory: CUDA out of memory"),
                                          ("raise", "RuntimeError: injected failure")])
def test_failing_trial_exits_nonzero_with_reason_and_failed_record(tmp_path, monkeypatch, capsys, kind, reason, faults):
    monkeypatch.setenv("NNI_SEG_FAULTS", f"*:{kind}")
    assert main(["--arch", "seed", "--out", str(tmp_path), *TINY]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: trial failed: {reason}") and err.count("\n") == 1
    rec = json.loads((tmp_path / RECORD_NAME).read_text())
    assert rec["status"] == "FAILED" and rec["error"].startswith(reason) and "Traceback" in rec["traceback"]
    assert "finished" in rec


def test_fault_spec_parsing():
    from tests.faults.sitecustomize import injected_fault

    assert injected_fault(3, "1:nan, 3:oom") == "oom" and injected_fault(2, "1:nan,3:oom") is None
    assert injected_fault(7, "*:raise") == "raise" and injected_fault(0, "") is None
    with pytest.raises(Exception, match="fault must be one of nan, oom, raise"):
        injected_fault(0, "0:segfault")


@pytest.mark.parametrize("sig", ["SIGINT", "SIGTERM"])
def test_stop_signal_leaves_a_canceled_record_and_a_signal_death(tmp_path, sig):
    """NNI 3.0 stops trials (assessor, trial kill, nnictl stop) with SIGINT: the record must not stay RUNNING,
    and the process must die by the signal (NNI reads any exit code as FAILED)."""
    import os
    import signal
    import subprocess
    import sys
    import time

    proc = subprocess.Popen([sys.executable, "-m", "nni_seg.trial", "--arch", "seed", "--out", str(tmp_path),
                             "--size", "24", "24", "--num-train", "16", "--num-val", "8", "--batch-size", "8",
                             "--epochs", "500", "--device", "cpu", "--threads", "1"],
                            stderr=subprocess.PIPE, text=True)
    rec_path = tmp_path / RECORD_NAME
    t0 = time.time()
    while time.time() - t0 < 60:  # wait until it trains
        if rec_path.is_file() and json.loads(rec_path.read_text()).get("history"):
            break
        time.sleep(0.2)
    signum = getattr(signal, sig)
    os.kill(proc.pid, signum)
    assert proc.wait(30) == -signum
    assert f"trial canceled ({sig})" in proc.stderr.read()
    rec = json.loads(rec_path.read_text())
    assert rec["status"] == "CANCELED" and rec["error"] == f"canceled ({sig})" and rec["finished"]


@pytest.mark.parametrize("precision", [[], ["--no-amp", "--no-channels-last"]], ids=["default", "fp32"])
def test_same_arch_seed_and_threads_give_the_same_trial_twice(tmp_path, arch_file, precision):
    import torch

    def history(name: str, seed: int) -> list:
        torch.randn(7)  # draws made earlier in the process must not matter
        flags = [*TINY, "--epochs", "2", "--threads", "1", "--seed", str(seed), *precision]
        assert main(["--arch", str(arch_file), "--out", str(tmp_path / name), *flags]) == 0
        rec = json.loads((tmp_path / name / RECORD_NAME).read_text())
        return [(h["loss"], h["dice"]) for h in rec["history"]]

    first = history("a", 3)
    assert history("b", 3) == first
    assert history("c", 4) != first


def test_the_record_says_which_compute_path_ran(tmp_path, arch_file):
    from nni_seg.training.precision import cpu_bf16_unit

    assert main(["--arch", str(arch_file), "--out", str(tmp_path / "f"), *TINY]) == 0
    assert main(["--arch", str(arch_file), "--out", str(tmp_path / "s"), *TINY, "--no-amp", "--no-channels-last"]) == 0
    fast = json.loads((tmp_path / "f" / RECORD_NAME).read_text())["compute"]
    slow = json.loads((tmp_path / "s" / RECORD_NAME).read_text())["compute"]
    assert slow.startswith("cpu: fp32, NCHW")
    if cpu_bf16_unit():
        assert fast == f"cpu: bf16 autocast, channels-last ({cpu_bf16_unit()})"
    else:
        assert fast == "cpu: fp32, NCHW (this CPU has no native bf16)"


def test_a_malformed_start_stamp_is_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("NNI_SEG_STARTED", "abc")
    assert main(["--arch", "seed", "--out", str(tmp_path / "t"), *TINY]) == 2
    err = capsys.readouterr().err
    assert err == "error: NNI_SEG_STARTED (set by the fork server): expected epoch seconds, got 'abc'\n"


def test_a_fork_server_socket_path_too_long_for_the_os_says_so_and_runs_the_trial_itself(tmp_path, monkeypatch,
                                                                                          capsys):
    from nni_seg.experiment import forkserver

    monkeypatch.setenv("NNI_SEG_FORKSERVER_DIR", str(tmp_path / ("d" * 120)))
    assert forkserver.run("nni_seg.experiment.trial:main", ["--help"], 0.0) is None
    assert "fork server off: its socket path would be" in capsys.readouterr().err
    assert not (tmp_path / ("d" * 120)).exists()  # nothing started, nothing waited for
