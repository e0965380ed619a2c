import json

import pytest

from nni_seg.records import RECORD_NAME
from nni_seg.trial import main

TINY = ["--size", "24", "24", "--num-train", "16", "--num-val", "8", "--epochs", "1", "--batch-size", "8",
        "--device", "cpu"]


def test_standalone_trial_writes_record(tmp_path, arch_file, tiny_arch, capsys):
    assert main(["--arch", str(arch_file), "--out", str(tmp_path / "t"), *TINY]) == 0
    rec = json.loads((tmp_path / "t" / RECORD_NAME).read_text())
    assert rec["status"] == "SUCCEEDED" and rec["arch"] == tiny_arch
    assert rec["metrics"]["default"] == rec["metrics"]["dice"] and 0 <= rec["metrics"]["dice"] <= 1
    assert rec["params"] > 0 and rec["mflops"] > 0 and len(rec["history"]) == 1
    assert rec["metrics"]["latency_ms"] > 0 and rec["device"] == "cpu"
    assert rec["data"]["size"] == [24, 24] and rec["train"]["epochs"] == 1
    assert "dice=" in capsys.readouterr().out


def test_exported_file_is_accepted_as_arch(tmp_path, tiny_arch):
    f = tmp_path / "top.json"
    f.write_text(json.dumps({"arch": tiny_arch, "metrics": {}}))
    assert main(["--arch", str(f), "--out", str(tmp_path / "t"), *TINY]) == 0


@pytest.mark.parametrize("content,msg", [
    (None, "architecture file not found"),
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


def test_failed_trial_leaves_a_failed_record(tmp_path, arch_file):
    assert main(["--arch", str(arch_file), "--out", str(tmp_path / "t"), *TINY, "--lr", "1e30"]) == 1
    rec = json.loads((tmp_path / "t" / RECORD_NAME).read_text())
    assert rec["status"] == "FAILED" and "TrainingDiverged" in rec["error"]


def test_over_budget_architecture_is_rejected_before_training(tmp_path, arch_file, capsys):
    assert main(["--arch", "seed", "--out", str(tmp_path / "t"), *TINY, "--max-mflops", "10"]) == 0
    rec = json.loads((tmp_path / "t" / RECORD_NAME).read_text())
    assert rec["status"] == "REJECTED" and "MMACs > 10" in rec["reason"] and rec["history"] == []
    assert rec["metrics"]["default"] == 0.0 and rec["metrics"]["rejected"] == 1
    assert "rejected before training" in capsys.readouterr().out
    assert main(["--arch", str(arch_file), "--out", str(tmp_path / "u"), *TINY, "--max-mflops", "1000"]) == 0
    assert json.loads((tmp_path / "u" / RECORD_NAME).read_text())["status"] == "SUCCEEDED"


@pytest.mark.parametrize("kind, reason", [("nan", "TrainingDiverged: loss became nan at epoch 1"),
                                          ("oom", "out of memory: CUDA out of memory"),
                                          ("raise", "RuntimeError: injected failure")])
def test_failing_trial_exits_nonzero_with_reason_and_failed_record(tmp_path, monkeypatch, capsys, kind, reason):
    monkeypatch.setenv("NNI_SEG_FAULTS", f"*:{kind}")
    assert main(["--arch", "seed", "--out", str(tmp_path), *TINY]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: trial failed: {reason}") and err.count("\n") == 1
    rec = json.loads((tmp_path / RECORD_NAME).read_text())
    assert rec["status"] == "FAILED" and rec["error"].startswith(reason) and "Traceback" in rec["traceback"]
    assert "finished" in rec


def test_fault_spec_parsing():
    from nni_seg.trial import injected_fault

    assert injected_fault(3, "1:nan, 3:oom") == "oom" and injected_fault(2, "1:nan,3:oom") is None
    assert injected_fault(7, "*:raise") == "raise" and injected_fault(0, "") is None
    with pytest.raises(ValueError, match="fault must be one of nan, oom, raise"):
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
    assert rec["status"] == "CANCELED" and rec["error"] == f"canceled ({sig})" and "finished" in rec
