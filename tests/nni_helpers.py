"""Helpers for tests that run real NNI experiments in a temp HOME on their own port."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TINY_TRIAL = ("python -m nni_seg.trial --size 16 16 --num-train 16 --num-val 8 --epochs 2 "
              "--batch-size 8 --threads 1 --device cpu")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_config(tmp: Path, *, tuner: str | dict = "Random", trials: int = 4, concurrency: int = 2,
                 space: str = "search_space.json", extra_trial_args: str = "", class_args: dict | None = None) -> Path:
    import yaml

    cfg = {
        "experimentName": "nni_seg-test",
        "searchSpaceFile": str(ROOT / "experiments" / space),
        "trialCommand": f"{TINY_TRIAL} {extra_trial_args}".strip(),
        "trialCodeDirectory": str(ROOT),
        "trialConcurrency": concurrency,
        "maxTrialNumber": trials,
        "maxExperimentDuration": "10m",
        "experimentWorkingDirectory": str(tmp / "exps"),
        "tuner": tuner if isinstance(tuner, dict) else
                 {"name": tuner, "classArgs": class_args if class_args is not None else {"seed": 1}},
        "trainingService": {"platform": "local"},
    }
    path = tmp / "config.yml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def env_for(tmp: Path) -> dict:
    env = dict(os.environ, HOME=str(tmp), PYTHONUNBUFFERED="1")
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env["PATH"]])
    return env


def run_cli(args: list[str], tmp: Path, timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "nni_seg", *args], cwd=tmp, env=env_for(tmp),
                          capture_output=True, text=True, timeout=timeout)


def nnictl(args: list[str], tmp: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([str(Path(sys.executable).with_name("nnictl")), *args], cwd=tmp, env=env_for(tmp),
                          capture_output=True, text=True, timeout=timeout)


def rest(port: int, path: str):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/nni{path}", timeout=10) as r:
        return json.loads(r.read().decode())


def experiment_id(stdout: str) -> str:
    for line in stdout.splitlines():
        if line.startswith("experiment ") and " started" in line:
            return line.split()[1]
    raise AssertionError(f"no experiment id in output:\n{stdout}")


def records_of(exp_dir: Path) -> list[dict]:
    """Every trial record under an experiment folder, as the JSON on disk (plus ``_path``); all must load."""
    from nni_seg.experiment.records import trial_records

    loaded, unreadable = trial_records(Path(exp_dir))
    assert not unreadable, [u.error for u in unreadable]
    return [dict(json.loads(Path(x.path).read_text()), _path=x.path) for x in loaded]


def create_then_stop(config: Path, tmp: Path, succeeded: int = 2, timeout: float = 300) -> str:
    """``nnictl create`` the config, wait until ``succeeded`` trials have finished, ``nnictl stop``; returns the
    experiment id (the caller resumes it, and stops it again in a ``finally``)."""
    import re
    import time

    port = free_port()
    out = nnictl(["create", "--config", str(config), "--port", str(port)], tmp)
    assert out.returncode == 0, out.stdout + out.stderr
    exp_id = re.search(r"Experiment ID: (\w+)", re.sub(r"\x1b\[[0-9;]*m", "", out.stdout)).group(1)
    try:
        t0 = time.time()
        while time.time() - t0 < timeout:
            time.sleep(1)
            if sum(j["status"] == "SUCCEEDED" for j in rest(port, "/trial-jobs")) >= succeeded:
                break
    finally:
        assert nnictl(["stop", exp_id], tmp).returncode == 0
    return exp_id
