"""Trials forked from a server with torch imported: same output, exit codes, signals and records as in-process."""
import json
import os
import signal
import subprocess
import sys
import time

import psutil
import pytest

from nni_seg.config.schema import RECORD_NAME

from ..nni_helpers import ROOT

TINY = ["--size", "16", "16", "--num-train", "8", "--num-val", "4", "--batch-size", "4", "--device", "cpu",
        "--threads", "1"]


@pytest.fixture
def env(tmp_path):
    e = dict(os.environ, NNI_SEG_FORKSERVER="1", NNI_SEG_FORKSERVER_DIR=str(tmp_path / "fs"), PYTHONUNBUFFERED="1",
             NNI_SEG_TEST_ID=str(tmp_path))
    yield e
    for p in psutil.process_iter(["cmdline"]):  # the server of this test
        if str(tmp_path / "fs") in " ".join(p.info["cmdline"] or []):
            p.kill()


def _trial(env, *args, **kw):
    return subprocess.Popen([sys.executable, "-m", "nni_seg.trial", *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def test_forked_trial_succeeds_fails_and_reports_like_an_in_process_one(env, tmp_path):
    ok = _trial(env, "--arch", "unet", "--epochs", "1", "--out", str(tmp_path / "a"), *TINY)
    out, err = ok.communicate(timeout=300)
    assert ok.returncode == 0, err
    assert "SUCCEEDED dice=" in out and list((tmp_path / "fs").glob("*.sock"))  # a server now runs
    second = _trial(env, "--arch", "unet", "--epochs", "1", "--out", str(tmp_path / "b"), *TINY)
    out, err = second.communicate(timeout=300)
    assert second.returncode == 0 and "SUCCEEDED" in out, err
    timings = json.loads((tmp_path / "b" / RECORD_NAME).read_text())["timings"]
    assert timings["imports"] < 0.5  # torch was imported by the server, not by this trial
    bad = _trial(env, "--arch", "unet", "--batch-size", "-4")
    out, err = bad.communicate(timeout=300)
    assert bad.returncode == 2 and err == "error: --batch-size: must be >= 1, got -4\n"
    from ..conftest import FAULTS

    fault = _trial(dict(env, NNI_SEG_FAULTS="*:nan", PYTHONPATH=str(FAULTS)), "--arch", "unet", "--epochs", "1",
                   "--out", str(tmp_path / "c"), *TINY)
    out, err = fault.communicate(timeout=300)
    assert fault.returncode == 1 and err.startswith("error: trial failed: TrainingDiverged")
    assert json.loads((tmp_path / "c" / RECORD_NAME).read_text())["status"] == "FAILED"


def _wait_training(path, proc):
    t0 = time.time()
    while time.time() - t0 < 120:
        if path.is_file() and json.loads(path.read_text()).get("history"):
            return
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.2)
    raise AssertionError("the trial never trained")


@pytest.mark.parametrize("sig", ["SIGINT", "SIGTERM"])
def test_stop_signal_reaches_the_forked_trial(env, tmp_path, sig):
    proc = _trial(env, "--arch", "seed", "--epochs", "500", "--out", str(tmp_path / "t"), *TINY)
    _wait_training(tmp_path / "t" / RECORD_NAME, proc)
    signum = getattr(signal, sig)
    proc.send_signal(signum)
    assert proc.wait(60) == -signum  # NNI reads only a signal death as EARLY_STOPPED / USER_CANCELED
    assert f"trial canceled ({sig})" in proc.stderr.read()
    assert json.loads((tmp_path / "t" / RECORD_NAME).read_text())["status"] == "CANCELED"


def test_killing_the_process_nni_started_kills_its_trial(env, tmp_path):
    proc = _trial(env, "--arch", "seed", "--epochs", "500", "--out", str(tmp_path / "t"), *TINY)
    _wait_training(tmp_path / "t" / RECORD_NAME, proc)
    server = next(p for p in psutil.process_iter(["cmdline"]) if str(tmp_path / "fs") in " ".join(p.info["cmdline"] or []))
    trial_pids = [g.pid for c in server.children() for g in c.children()]  # server -> supervisor -> trial
    assert len(trial_pids) == 1
    proc.kill()
    proc.wait(30)
    t0 = time.time()
    while time.time() - t0 < 10 and any(psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE
                                        for p in trial_pids):
        time.sleep(0.2)
    assert not any(psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE for p in trial_pids)
    _wait_status(tmp_path / "t" / RECORD_NAME, "CANCELED", "SIGKILL")  # not left RUNNING


def _wait_status(path, status, reason):
    t0 = time.time()
    while time.time() - t0 < 10 and json.loads(path.read_text())["status"] == "RUNNING":
        time.sleep(0.2)
    record = json.loads(path.read_text())
    assert record["status"] == status and reason in record["error"], record["status"]


def _forked_trial(tmp_path):
    """The one trial process of this test's server (server -> supervisor -> trial)."""
    server = next(p for p in psutil.process_iter(["cmdline"]) if str(tmp_path / "fs") in " ".join(p.info["cmdline"] or []))
    (trial,) = [g for c in server.children() for g in c.children()]
    return trial


@pytest.mark.parametrize("sig,reason", [("SIGKILL", "most likely the kernel's out-of-memory killer"),
                                        ("SIGSEGV", "died by SIGSEGV")])
def test_a_trial_killed_with_no_stop_asked_fails_and_says_why(env, tmp_path, sig, reason):
    """SIGKILL with no stop before it (what the OOM killer sends) or a crash leaves no chance to write the
    record: the supervisor writes FAILED with the reason, and the process NNI started exits non-zero (a
    signal death would read as USER_CANCELED in NNI)."""
    proc = _trial(env, "--arch", "seed", "--epochs", "500", "--out", str(tmp_path / "t"), *TINY)
    _wait_training(tmp_path / "t" / RECORD_NAME, proc)
    trial = _forked_trial(tmp_path)
    signum = getattr(signal, sig)
    trial.send_signal(signum)
    assert proc.wait(60) == 128 + signum
    assert f"error: trial failed: {'killed by' if sig == 'SIGKILL' else 'the trial process'}" in proc.stderr.read()
    _wait_status(tmp_path / "t" / RECORD_NAME, "FAILED", reason)


def test_a_sigkill_after_a_stop_request_is_a_cancel(env, tmp_path):
    """NNI sends SIGKILL when a stopped trial does not exit in time: that is still a stop (CANCELED)."""
    proc = _trial(env, "--arch", "seed", "--epochs", "500", "--out", str(tmp_path / "t"), *TINY)
    _wait_training(tmp_path / "t" / RECORD_NAME, proc)
    trial = _forked_trial(tmp_path)
    trial.send_signal(signal.SIGSTOP)  # frozen: the stop request is queued, its handler not yet run
    trial.send_signal(signal.SIGTERM)
    trial.send_signal(signal.SIGCONT)
    time.sleep(0.05)
    with __import__("contextlib").suppress(psutil.NoSuchProcess):
        trial.send_signal(signal.SIGKILL)
    assert proc.wait(60) in (-signal.SIGKILL, -signal.SIGTERM)
    _wait_status(tmp_path / "t" / RECORD_NAME, "CANCELED", "")


def test_the_trial_tells_its_supervisor_where_its_record_is(env, tmp_path):
    """A record folder from the trial's YAML (not on its command line, no $NNI_OUTPUT_DIR) is settled too."""
    out = tmp_path / "from_yaml"
    cfg = tmp_path / "trial.yml"
    cfg.write_text(json.dumps({"trial": {"out": str(out)}}))  # JSON is YAML
    env = {k: v for k, v in env.items() if k != "NNI_OUTPUT_DIR"}
    proc = _trial(env, "--config", str(cfg), "--arch", "seed", "--epochs", "500", *TINY)
    _wait_training(out / RECORD_NAME, proc)
    trial = _forked_trial(tmp_path)
    trial.send_signal(signal.SIGKILL)
    assert proc.wait(60) == 128 + signal.SIGKILL
    _wait_status(out / RECORD_NAME, "FAILED", "SIGKILL")


def test_off_by_default_outside_nni_and_on_under_it(monkeypatch):
    from nni_seg.experiment import forkserver

    monkeypatch.delenv("NNI_SEG_FORKSERVER", raising=False)
    monkeypatch.delenv("NNI_PLATFORM", raising=False)
    assert not forkserver.enabled()
    monkeypatch.setenv("NNI_PLATFORM", "local")
    assert forkserver.enabled()
    monkeypatch.setenv("NNI_SEG_FORKSERVER", "0")
    assert not forkserver.enabled()
