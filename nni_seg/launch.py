"""Run an nnictl experiment from a config, follow it until done, export the top architecture.

``python -m nni_seg run config.yml`` = ``nnictl create --config config.yml`` + a follower that
prints progress, notices a dead experiment (manager gone, status ERROR, errors in dispatcher.log,
no trial starting) instead of waiting forever, then exports and prints the top architecture and
stops the experiment (``--keep-running`` leaves the web UI up).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from .records import experiment_dir, registered_experiments


class ExperimentDead(RuntimeError):
    """The experiment cannot make progress; the message says why."""


def check_config(path: Path) -> dict:
    """Load an nnictl YAML config and validate it with NNI's own schema (typos in keys are errors)."""
    import yaml
    from nni.experiment.config import ExperimentConfig

    if not path.is_file():
        raise FileNotFoundError(f"config not found: {path}")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise ValueError(f"{path}: not valid YAML: {e}") from None
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: expected a mapping of NNI experiment settings")
    try:  # NNI's validate() is exactly this canonical_copy(); the canonical form is used below
        canonical = ExperimentConfig.load(str(path)).canonical_copy()
    except Exception as e:  # NNI raises AttributeError/ValueError/TypeError for bad keys and values
        raise ValueError(f"{path}: {e}") from None
    _check_algorithm_names(raw, path)
    _check_local_gpus(canonical, path)
    return raw


def probe_gpus() -> dict:
    """What NNI's local GPU scheduler will see: the output of NNI's own probe, run as the manager runs it.

    ``{"success": bool, "gpuNumber": int, "failures": [...]}`` (NNI's ``collect_gpu_info``, via pynvml).
    """
    cmd = [sys.executable, "-m", "nni.tools.nni_manager_scripts.collect_gpu_info"]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=trial_env(), timeout=60)
        return json.loads(proc.stdout.strip().splitlines()[-1])
    except (subprocess.TimeoutExpired, json.JSONDecodeError, IndexError) as e:
        return {"success": False, "failures": [f"probe gave no answer: {e!r}"]}


def _check_local_gpus(config, path: Path) -> None:
    """A local experiment asking NNI for GPUs must have them, or NNI 3.0 never starts a trial.

    Without NVML the manager quits seconds after ``nnictl create`` returned 0; with fewer GPUs than
    ``trialGpuNumber`` its scheduler retries forever and no trial ever appears. Say so before starting.
    """
    ts = config.training_service
    services = ts if isinstance(ts, list) else [ts]
    for service in services:
        need = getattr(service, "trial_gpu_number", None) or 0
        if service.platform != "local" or not need:
            continue
        info = probe_gpus()
        if not info.get("success"):
            why = "; ".join(info.get("failures", [])) or "no answer"
            raise ValueError(f"{path}: trialGpuNumber: {need:g} but NNI's GPU probe found no GPU ({why}); "
                             f"remove trialGpuNumber to train on the CPU")
        count = int(info.get("gpuNumber", 0))
        usable = [i for i in (service.gpu_indices if service.gpu_indices is not None else range(count)) if i < count]
        if need > len(usable):
            where = f"gpuIndices {service.gpu_indices} of " if service.gpu_indices is not None else ""
            raise ValueError(f"{path}: trialGpuNumber: {need:g} but NNI sees only {len(usable)} usable GPU(s) "
                             f"({where}{count} found); a trial asking for more is never started")


def _check_algorithm_names(raw: dict, path: Path) -> None:
    """NNI's validation accepts any built-in tuner/assessor name; its dispatcher fails later. Check now."""
    from nni.tools.package_utils import config_manager

    metas = config_manager.get_all_algo_meta()
    for section in ("tuner", "assessor"):
        name = (raw.get(section) or {}).get("name") if isinstance(raw.get(section), dict) else None
        if name is None:
            continue
        known = [m for m in metas if m.algo_type == section]
        if str(name).lower() not in {n.lower() for m in known for n in (m.name, m.alias) if n}:
            raise ValueError(f"{path}: unknown {section} {name!r}; valid: {', '.join(sorted(m.name for m in known))} "
                             f"(or className: your own class)")


def _nnictl() -> list[str]:
    exe = Path(sys.executable).with_name("nnictl")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "nni.tools.nnictl.nnictl"]


def trial_env() -> dict:
    """Environment for nnictl: this interpreter's bin dir first on PATH, so trials' ``python`` is ours."""
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    return env


def check_environment() -> None:
    """Known ways for NNI 3.0 to hang, caught before starting.

    nnictl's experiment-registry lock subclasses ``filelock.SoftFileLock`` and sets a private field
    that filelock >= 3.12 no longer reads, so the lock is never seen as taken and ``nnictl create``
    spins forever after "Starting web server..." (measured here and on the GPU machine).
    """
    from importlib.metadata import version

    from packaging.version import Version

    fl = version("filelock")
    if Version(fl) >= Version("3.12"):
        raise ExperimentDead(f"filelock {fl} makes NNI 3.0's nnictl hang after 'Starting web server...'; "
                             f"install 'filelock<3.12' (requirements.txt pins it)")


def create(config: Path, port: int, timeout: float = 120) -> str:
    """``nnictl create``; returns the experiment id."""
    return _start(["create", "--config", str(config), "--port", str(port)], timeout)


def resume(exp_id: str, port: int, timeout: float = 120) -> str:
    """``nnictl resume``: restart a stopped experiment from its database; finished trials are kept."""
    known = registered_experiments()
    if exp_id not in known:
        raise ExperimentDead(f"experiment {exp_id!r} is not in nnictl's registry of this HOME; "
                             f"known: {', '.join(sorted(known)) or 'none'}")
    if known[exp_id].get("status") != "STOPPED":
        raise ExperimentDead(f"experiment {exp_id} is {known[exp_id].get('status')}, not STOPPED; "
                             f"`nnictl stop {exp_id}` first")
    return _start(["resume", exp_id, "--port", str(port)], timeout)


def _start(args: list[str], timeout: float) -> str:
    check_environment()
    try:
        proc = subprocess.run([*_nnictl(), *args], capture_output=True, text=True, env=trial_env(), timeout=timeout)
    except subprocess.TimeoutExpired as e:
        out = (e.stdout or b"").decode(errors="replace") if isinstance(e.stdout, bytes) else (e.stdout or "")
        raise ExperimentDead(f"nnictl {args[0]} did not return in {timeout:.0f}s:\n{out.strip()[-1000:]}") from None
    out = re.sub(r"\x1b\[[0-9;]*m", "", proc.stdout + proc.stderr)
    m = re.search(r"experiment id(?: is|:)\s*(\w+)", out, re.IGNORECASE)
    if proc.returncode != 0 or not m:
        raise ExperimentDead(f"nnictl {args[0]} failed (exit {proc.returncode}):\n{out.strip()[-2000:]}")
    return m.group(1)


def stop(exp_id: str, timeout: float = 120) -> None:
    """``nnictl stop``. A manager too busy to answer can keep nnictl waiting for minutes (NNI 3.0's
    GPU-wait loop did, before ``patch-nni``); then kill the manager and every process under it."""
    try:
        subprocess.run([*_nnictl(), "stop", exp_id], capture_output=True, text=True, env=trial_env(),
                       timeout=timeout)
    except subprocess.TimeoutExpired:
        pid = registered_experiments().get(exp_id, {}).get("pid")
        n = kill_tree(pid) if pid else 0
        print(f"warning: nnictl stop {exp_id} did not return in {timeout:.0f}s; killed its NNI manager "
              f"(pid {pid}, {n} processes in all); its trials' records are kept", file=sys.stderr)


def kill_tree(pid: int) -> int:
    """SIGKILL process ``pid`` and all its descendants; returns how many were killed."""
    import psutil

    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0
    for p in procs:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(procs, timeout=10)
    return len(procs)


def rest(port: int, path: str, timeout: float = 10):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/nni{path}", timeout=timeout) as r:
        return json.loads(r.read().decode())


def _dispatcher_errors(exp_dir: Path | None) -> str:
    if exp_dir is None:
        return ""
    log = exp_dir / "log" / "dispatcher.log"
    if not log.is_file():
        return ""
    lines = log.read_text(errors="replace").splitlines()
    bad = [i for i, line in enumerate(lines) if "ERROR" in line or "Traceback" in line]
    return "\n".join(lines[bad[0]:bad[0] + 30]) if bad else ""


def _manager_hint(exp_dir: Path | None) -> str:
    """The last error or GPU-scheduling refusal in nnimanager.log, as ``"; NNI: <line>"`` (or "")."""
    log = exp_dir / "log" / "nnimanager.log" if exp_dir else None
    if log is None or not log.is_file():
        return ""
    bad = [line for line in log.read_text(errors="replace").splitlines()
           if " ERROR " in line or "GPU constraint cannot be satisfied" in line]
    return f"; NNI: {bad[-1].strip()[:300]}" if bad else ""


def _log(msg: str) -> None:
    print(msg, flush=True)


def follow(exp_id: str, port: int, *, timeout: float, stall: float = 180, poll: float = 3,
           log=_log) -> dict:
    """Poll until every trial has ended and NNI says DONE / NO_MORE_TRIAL; returns the final status.

    Raises :class:`ExperimentDead` when the manager stops answering, reports ERROR, the dispatcher
    logs an error, or no trial is created within ``stall`` seconds.
    """
    t0 = time.time()
    last_ok, last_state, exp_dir = time.time(), None, None
    while True:
        time.sleep(poll)
        elapsed = time.time() - t0
        try:
            exp_dir = exp_dir or experiment_dir(exp_id)
        except FileNotFoundError:
            pass
        try:
            status = rest(port, "/check-status")
            trials = rest(port, "/trial-jobs")
            last_ok = time.time()
        except (urllib.error.URLError, OSError, json.JSONDecodeError) as e:
            if time.time() - last_ok > 45:
                raise ExperimentDead(f"NNI manager of {exp_id} stopped answering on port {port} ({e}); "
                                     f"see {exp_dir / 'log' if exp_dir else '~/nni-experiments/' + exp_id}/nnimanager.log")
            continue
        counts: dict[str, int] = {}
        for t in trials:
            counts[t["status"]] = counts.get(t["status"], 0) + 1
        state = f"{status['status']}: " + (", ".join(f"{v} {k}" for k, v in sorted(counts.items())) or "no trials yet")
        if state != last_state:  # print only changes
            log(f"[{elapsed:5.0f}s] {state}")
            last_state = state
        if status["status"] == "ERROR":
            raise ExperimentDead(f"experiment {exp_id} reported ERROR: {status.get('errors')}\n{_dispatcher_errors(exp_dir)}")
        errors = _dispatcher_errors(exp_dir)
        if errors and not trials:
            raise ExperimentDead(f"the tuner of {exp_id} failed (dispatcher.log):\n{errors}")
        if not trials and elapsed > stall:
            raise ExperimentDead(f"no trial started in {stall:.0f}s; experiment {exp_id} is stuck in "
                                 f"{status['status']}{_manager_hint(exp_dir)}")
        active = sum(counts.get(s, 0) for s in ("WAITING", "RUNNING", "UNKNOWN"))
        if status["status"] in ("DONE", "NO_MORE_TRIAL", "STOPPED") and trials and not active:
            return status
        if elapsed > timeout:
            raise ExperimentDead(f"experiment {exp_id} still {status['status']} after {timeout:.0f}s (--timeout)")


def free_port(preferred: int) -> int:
    """``preferred`` if nothing listens there, else any free port."""
    import socket

    with socket.socket() as s:
        try:
            s.bind(("", preferred))
            return preferred
        except OSError:
            s.bind(("", 0))
            return s.getsockname()[1]


def interrupt_on_signal(signum, frame):
    """A signal handler turning SIGTERM (``timeout``, ``kill``) into KeyboardInterrupt, so cleanup runs."""
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    from . import nni_patch
    from .export import export, one_line

    ap = argparse.ArgumentParser(prog="python -m nni_seg run", description=__doc__.split("\n\n")[0])
    ap.add_argument("config", nargs="?", default="config.yml")
    ap.add_argument("--resume", metavar="EXP_ID", help="resume this stopped experiment instead of creating one "
                                                      "(finished trials are kept, not rerun; config is not read)")
    ap.add_argument("--port", type=int, help="web UI / REST port (default: 8080, or a free one if taken)")
    ap.add_argument("--timeout", type=float, default=3600, help="seconds before giving up (default 3600)")
    ap.add_argument("--stall", type=float, default=180, help="seconds without any trial before giving up")
    ap.add_argument("--keep-running", action="store_true", help="leave the experiment (and web UI) running")
    ap.add_argument("--out", help="exported JSON (default: <experiment dir>/top_arch.json)")
    ap.add_argument("--no-patch", action="store_true",
                    help="do not apply our NNI fixes (to reproduce NNI 3.0's trial/parameter mix-up)")
    args = ap.parse_args(argv)
    config = Path(args.config)
    if not args.resume:
        try:
            check_config(config)
        except (FileNotFoundError, ValueError) as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
    if args.port is None:
        args.port = free_port(8080)
    pending = [k for k, v in nni_patch.status().items() if v == "pending"]
    if pending and not args.no_patch:
        print(f"applying NNI fixes: {', '.join(pending)}")
        nni_patch.apply()
    try:
        exp_id = resume(args.resume, args.port) if args.resume else create(config, args.port)
    except ExperimentDead as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"experiment {exp_id} {'resumed' if args.resume else 'started'}; web UI: http://127.0.0.1:{args.port} (no authentication: keep the "
          f"port local or use an SSH tunnel)", flush=True)
    code = 0
    signal.signal(signal.SIGTERM, interrupt_on_signal)  # `timeout`/kill: still stop the experiment below
    try:
        follow(exp_id, args.port, timeout=args.timeout, stall=args.stall)
        top, path = export(exp_id, args.out)
        print(json.dumps(top["arch"], indent=2))
        print(one_line(top))
        check = top["nni_cross_check"]
        if "note" in check:
            print(f"{check['note']}; exported to {path}")
        else:
            print(f"cross-check with NNI's records: {check['trials_checked']} trials, "
                  f"{len(check['mismatches'])} mismatches; exported to {path}")
    except (ExperimentDead, LookupError) as e:
        print(f"error: {e}", file=sys.stderr)
        code = 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        code = 130
    finally:
        if not args.keep_running:
            stop(exp_id)
            print(f"stopped {exp_id} (finished trials and records are kept; "
                  f"`python -m nni_seg export {exp_id}` works after stop)")
    return code
