"""nnictl experiments as a library: check a config, create or resume, follow to the end, export, stop.

:func:`run_experiment` is ``nnictl create --config config.yml`` + a follower that prints progress and
notices a dead experiment (manager gone, status ERROR, errors in dispatcher.log, no trial starting)
instead of waiting forever, then exports the top architecture and stops the experiment. It finishes as
soon as every trial has ended and NNI has nothing more to run (``maxTrialNumber`` reached, or the
tuner's space exhausted: ``TUNER_NO_MORE_TRIAL``).
"""
from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
import traceback
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable

from ..errors import ConfigError, RecordError, RunFailed, UserError
from .records import experiment_dir, registered_experiments
from ..config.settings import read_yaml


class ExperimentDead(RunFailed):
    """The experiment cannot make progress; the message says why."""


# NNI's config validation asserts these without a message; we check them first and say which.
_POSITIVE = {"trialConcurrency": "trial_concurrency", "maxTrialNumber": "max_trial_number"}
_DURATIONS = ("maxExperimentDuration", "maxTrialDuration")


def _nni_assertion(e: AssertionError) -> str:
    """A message for one of NNI's bare ``assert`` s: the condition that failed."""
    frames = traceback.extract_tb(e.__traceback__)
    line = (frames[-1].line or "").strip() if frames else ""
    return f"NNI's check failed: {line.removeprefix('assert ').split(',')[0]}" if line else "NNI rejected it"


def _canonical(path: Path):
    """NNI's canonical form of the config ``path`` (paths resolved, the search space loaded); NNI's
    validate() is exactly this canonical_copy(). Its errors are one-line ConfigErrors naming the file."""
    from nni.experiment.config import ExperimentConfig
    from nni.experiment.config.utils import unset_base_path

    try:
        return ExperimentConfig.load(str(path)).canonical_copy()
    except AssertionError as e:
        raise ConfigError(f"{path}: {str(e) or _nni_assertion(e)}") from None
    except Exception as e:  # NNI raises AttributeError/ValueError/TypeError for bad keys and values
        msg = " ".join(str(e).split()) or type(e).__name__
        raise ConfigError(f"{path}: {msg}") from None
    finally:  # NNI's load() sets a module-wide base path and leaves it set when the config fails: every
        unset_base_path()  # later load in this process would then fail ("_current_base_path is None")


def check_config(path: Path) -> dict:
    """Load an nnictl YAML config and validate it with NNI's own schema (typos in keys are errors), plus
    what NNI only finds out later (algorithm names, GPUs); returns the raw mapping."""
    raw = read_yaml(path)
    if not raw:
        raise ConfigError(f"{path}: empty config")
    for key in _POSITIVE:
        v = raw.get(key)
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
            raise ConfigError(f"{path}: {key}: must be a positive integer, got {v!r}")
    canonical = _canonical(path)
    _check_algorithm_names(raw, path)
    _check_our_space(raw, canonical, path)
    _check_guided_tuner(raw, canonical, path)
    _check_local_gpus(canonical, path)
    return raw


def _check_our_space(raw: dict, canonical, path: Path) -> None:
    """An architecture search with our trial (not ``--hpo``, whose space is training settings): its
    search space must be one the trial can build, or every trial fails."""
    from ..space.arch import ArchError, check_search_space

    command = str(raw.get("trialCommand") or "")
    if "nni_seg.trial" not in command and "nni_seg.experiment.trial" not in command or "--hpo" in command.split():
        return
    try:
        check_search_space(canonical.search_space, f"{path}: {raw.get('searchSpaceFile') or 'searchSpace'}")
    except ArchError as e:
        raise ConfigError(str(e)) from None


def _check_guided_tuner(raw: dict, canonical, path: Path) -> None:
    """Our GuidedTuner's classArgs (tuner, start_with, budget, exclude) meet the search space only in NNI's
    dispatcher, whose error ends the experiment in its log; build it here against the config's space."""
    tuner = raw.get("tuner")
    name = tuner.get("className") if isinstance(tuner, dict) else None
    name = {"nni_seg.experiment.tuners.GuidedTuner": "nni_seg.tuners.GuidedTuner",
            "nni_seg.experiment.ladder.LadderAdvisor": "nni_seg.ladder.LadderAdvisor"}.get(name, name)
    if name not in ("nni_seg.tuners.GuidedTuner", "nni_seg.ladder.LadderAdvisor"):
        return
    space, args = canonical.search_space, tuner.get("classArgs") or {}
    try:
        if name == "nni_seg.tuners.GuidedTuner":
            from .tuners import GuidedTuner

            GuidedTuner(**args).update_search_space(space)
            return
        from .ladder import Ladder

        ladder = Ladder(**args)
        ladder.update_search_space(space)
    except (ValueError, TypeError) as e:
        raise ConfigError(f"{path}: tuner.classArgs: {e}") from None
    need, given = ladder.planned_trials(), raw.get("maxTrialNumber")
    if isinstance(given, int) and given < need:
        raise ConfigError(f"{path}: maxTrialNumber {given} < the {need} trials of the ladder's rungs (the top rung "
                          f"would be cut short)")


def search_space_of(path: Path) -> dict:
    """The search space of the nnictl config ``path`` (its ``searchSpaceFile`` or inline ``searchSpace``), as
    NNI resolves it."""
    return dict(_canonical(path).search_space)


_CONFIG_PATHS = ("searchSpaceFile", "trialCodeDirectory", "experimentWorkingDirectory")


def with_trial_flags(config: Path, flags: list[str], out: Path) -> Path:
    """A copy of the nnictl config ``config`` written to ``out``, whose trials get ``flags`` after their
    command (a trial's flags override its ``--config``); relative paths are made absolute, so the copy runs
    from wherever it lies. The original is not changed."""
    import shlex

    import yaml

    from ..files import atomic_write_text

    raw, here = read_yaml(config), config.resolve().parent
    raw.setdefault("trialCodeDirectory", ".")  # NNI's default, relative to the config's folder
    for key in _CONFIG_PATHS:
        if isinstance(raw.get(key), str):
            raw[key] = str((here / os.path.expanduser(raw[key])).resolve())
    for role in ("tuner", "assessor", "advisor"):
        spec = raw.get(role)
        if isinstance(spec, dict) and isinstance(spec.get("codeDirectory"), str):
            spec["codeDirectory"] = str((here / os.path.expanduser(spec["codeDirectory"])).resolve())
    raw["trialCommand"] = " ".join([str(raw.get("trialCommand") or ""), *map(shlex.quote, flags)])
    return atomic_write_text(out, yaml.safe_dump(raw, sort_keys=False))


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
            raise ConfigError(f"{path}: trialGpuNumber: {need:g} but NNI's GPU probe found no GPU ({why}); "
                              f"remove trialGpuNumber to train on the CPU")
        count = int(info.get("gpuNumber", 0))
        usable = [i for i in (service.gpu_indices if service.gpu_indices is not None else range(count)) if i < count]
        if need > len(usable):
            where = f"gpuIndices {service.gpu_indices} of " if service.gpu_indices is not None else ""
            raise ConfigError(f"{path}: trialGpuNumber: {need:g} but NNI sees only {len(usable)} usable GPU(s) "
                              f"({where}{count} found); a trial asking for more is never started")


def _check_algorithm_names(raw: dict, path: Path) -> None:
    """NNI's validation accepts any built-in tuner/assessor name; its dispatcher fails later. Check now."""
    from nni.tools.package_utils import config_manager

    metas = config_manager.get_all_algo_meta()
    for section in ("tuner", "assessor", "advisor"):
        name = (raw.get(section) or {}).get("name") if isinstance(raw.get(section), dict) else None
        if name is None:
            continue
        kind = "tuner" if section == "advisor" else section
        known = [m for m in metas if m.algo_type in (kind, "advisor")] if kind == "tuner" else \
            [m for m in metas if m.algo_type == kind]
        if str(name).lower() not in {n.lower() for m in known for n in (m.name, m.alias) if n}:
            raise ConfigError(f"{path}: unknown {section} {name!r}; valid: {', '.join(sorted(m.name for m in known))} "
                              f"(or className: your own class)")


def _nnictl() -> list[str]:
    exe = Path(sys.executable).with_name("nnictl")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "nni.tools.nnictl.nnictl"]


def trial_env() -> dict:
    """Environment for nnictl: this interpreter's bin dir first on PATH, so trials' ``python`` is ours."""
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    return env


def check_environment(allow_unpatched: bool = False) -> None:
    """Known ways for NNI 3.0 to hang or mislead, caught before starting.

    nnictl's experiment-registry lock subclasses ``filelock.SoftFileLock`` and sets a private field
    that filelock >= 3.12 no longer reads, so the lock is never seen as taken and ``nnictl create``
    spins forever after "Starting web server..." (measured here and on the GPU machine). And an NNI
    without our fixes mixes up trials and parameters (``python -m nni_seg patch-nni``).
    """
    from importlib.metadata import version

    from packaging.version import Version

    from . import patch as nni_patch

    fl = version("filelock")
    if Version(fl) >= Version("3.12"):
        raise UserError(f"filelock {fl} makes NNI 3.0's nnictl hang after 'Starting web server...'; "
                        f"install 'filelock<3.12' (requirements.txt pins it)")
    if not allow_unpatched:
        state = nni_patch.state()
        if state != "patched":
            raise UserError(f"the installed NNI is {state}, not patched: run `python -m nni_seg patch-nni` first "
                            f"(or --no-patch to run NNI as it is, with its defects)")


def create(config: Path, port: int, timeout: float = 120) -> str:
    """``nnictl create``; returns the experiment id. Interrupted (Ctrl-C; SIGTERM under
    :func:`interrupt_on_signal`) or timed out while nnictl runs, it stops the experiment nnictl had already
    registered on ``port``, if any: nothing is left running that no one knows the id of."""
    before = set(registered_experiments())
    try:
        return _start(["create", "--config", str(config), "--port", str(port)], timeout)
    except BaseException:
        for exp_id in started_on(port, before):
            stop(exp_id)
        raise


def started_on(port: int, before: set[str]) -> list[str]:
    """Experiments registered since ``before`` (a set of ids) on ``port``: what an interrupted create started."""
    return [k for k, v in registered_experiments().items()
            if k not in before and isinstance(v, dict) and str(v.get("port")) == str(port)]


def resume(exp_id: str, port: int, timeout: float = 120) -> str:
    """``nnictl resume``: restart a stopped experiment from its database; finished trials are kept."""
    known = registered_experiments()
    if exp_id not in known:
        raise UserError(f"experiment {exp_id!r} is not in nnictl's registry of this HOME; "
                        f"known: {', '.join(sorted(known)) or 'none'}")
    if known[exp_id].get("status") != "STOPPED":
        raise UserError(f"experiment {exp_id} is {known[exp_id].get('status')}, not STOPPED; "
                        f"`nnictl stop {exp_id}` first")
    try:
        return _start(["resume", exp_id, "--port", str(port)], timeout)
    except BaseException:  # interrupted or timed out: the manager nnictl may have restarted is stopped again
        if registered_experiments().get(exp_id, {}).get("status") != "STOPPED":
            stop(exp_id)
        raise


def _start(args: list[str], timeout: float) -> str:
    with subprocess.Popen([*_nnictl(), *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          env=trial_env()) as proc:
        deadline = time.monotonic() + timeout
        try:
            while True:  # in short waits: a signal taken by another thread is acted on within a second
                try:
                    out, _ = proc.communicate(timeout=min(1.0, max(0.01, deadline - time.monotonic())))
                    break
                except subprocess.TimeoutExpired:
                    if time.monotonic() < deadline:
                        continue
                    proc.kill()
                    out, _ = proc.communicate()
                    raise ExperimentDead(f"nnictl {args[0]} did not return in {timeout:.0f}s:\n"
                                         f"{(out or '').strip()[-1000:]}") from None
        except ExperimentDead:
            raise
        except BaseException:  # interrupted: nnictl goes too (its manager, if started, is the caller's to stop)
            proc.kill()
            proc.communicate()
            raise
    out = re.sub(r"\x1b\[[0-9;]*m", "", out or "")
    m = re.search(r"experiment id(?: is|:)\s*(\w+)", out, re.IGNORECASE)
    if proc.returncode != 0 or not m:
        last = [line for line in out.strip().splitlines() if line.strip()][-1:] or ["no output"]
        raise ExperimentDead(f"nnictl {args[0]} failed (exit {proc.returncode}): {last[0].strip()}")
    return m.group(1)


def stop(exp_id: str, timeout: float = 120) -> None:
    """``nnictl stop``. A manager too busy to answer can keep nnictl waiting for minutes (NNI 3.0's
    GPU-wait loop did, before ``patch-nni``); then kill the manager and every process under it."""
    pid = registered_experiments().get(exp_id, {}).get("pid")
    try:
        subprocess.run([*_nnictl(), "stop", exp_id], capture_output=True, text=True, env=trial_env(),
                       timeout=timeout)
    except subprocess.TimeoutExpired:
        n = kill_tree(pid) if pid else 0
        print(f"warning: nnictl stop {exp_id} did not return in {timeout:.0f}s; killed its NNI manager "
              f"(pid {pid}, {n} processes in all); its trials' records are kept", file=sys.stderr)
        return
    _wait_gone(pid, STOP_GRACE)


STOP_GRACE = 30.0  # seconds a stopped manager may take to exit (and free its port) before stop returns anyway


def _wait_gone(pid: int | None, seconds: float) -> None:
    """nnictl stop returns while the manager still shuts down and holds its web port: the next experiment
    on that port (a script running searches one after another) would be refused. Wait for it to exit."""
    import psutil

    if not pid:
        return
    try:
        psutil.Process(pid).wait(seconds)
    except (psutil.NoSuchProcess, psutil.TimeoutExpired):
        pass


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


def _dispatcher_gone(exp_dir: Path | None) -> bool:
    """NNI's dispatcher (the tuner's process) has exited: NNI logs it, then keeps the experiment RUNNING."""
    log = exp_dir / "log" / "dispatcher.log" if exp_dir else None
    return bool(log and log.is_file() and "Dispatcher exiting" in log.read_text(errors="replace"))


def _manager_hint(exp_dir: Path | None) -> str:
    """The last error or GPU-scheduling refusal in nnimanager.log, as ``"; NNI: <line>"`` (or "")."""
    log = exp_dir / "log" / "nnimanager.log" if exp_dir else None
    if log is None or not log.is_file():
        return ""
    bad = [line for line in log.read_text(errors="replace").splitlines()
           if " ERROR " in line or "GPU constraint cannot be satisfied" in line]
    return f"; NNI: {bad[-1].strip()[:300]}" if bad else ""


# NNI statuses in which nothing more will be started: the experiment is over once no trial is active
FINISHED = ("DONE", "NO_MORE_TRIAL", "TUNER_NO_MORE_TRIAL", "STOPPED")
ACTIVE_TRIALS = ("WAITING", "RUNNING", "UNKNOWN")
# NNI's manager submits the trials a tuner sends on its next tick (every 5 s): three ticks of quiet
TUNER_PAUSE_SECONDS = 15.0


def follow(exp_id: str, port: int, *, timeout: float, stall: float = 180, poll: float = 3,
           log: Callable[[str], None] = print) -> dict:
    """Poll until every trial has ended and NNI has nothing more to start; returns the final status.

    Raises :class:`ExperimentDead` when the manager stops answering, reports ERROR, the dispatcher
    logs an error, or no trial is created within ``stall`` seconds.
    """
    t0 = time.time()
    last_ok, last_state, exp_dir, idle_since = time.time(), None, None, None
    while True:
        time.sleep(poll)
        elapsed = time.time() - t0
        try:
            exp_dir = exp_dir or experiment_dir(exp_id)
        except UserError:
            pass
        try:
            status = rest(port, "/check-status")
            trials = rest(port, "/trial-jobs")
            last_ok = time.time()
        except (urllib.error.URLError, OSError, json.JSONDecodeError) as e:
            if time.time() - last_ok > 45:
                raise ExperimentDead(f"NNI manager of {exp_id} stopped answering on port {port} ({e}); "
                                     f"see {exp_dir / 'log' if exp_dir else '~/nni-experiments/' + exp_id}/nnimanager.log"
                                     ) from None
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
        if errors and (not trials or _dispatcher_gone(exp_dir)):  # a dead tuner never finishes the experiment
            raise ExperimentDead(f"the tuner of {exp_id} failed (dispatcher.log):\n{errors}")
        if not trials and elapsed > stall:
            raise ExperimentDead(f"no trial started in {stall:.0f}s; experiment {exp_id} is stuck in "
                                 f"{status['status']}{_manager_hint(exp_dir)}")
        active = sum(counts.get(s, 0) for s in ACTIVE_TRIALS)
        if not (status["status"] in FINISHED and trials and not active):
            idle_since = None
        elif status["status"] != "TUNER_NO_MORE_TRIAL":
            return status
        else:
            # a multi-fidelity tuner (BOHB, Hyperband) says "no more" while it waits for a rung's results and
            # then sends the next rung, which NNI submits on its next tick: only a lasting pause is the end
            idle_since = idle_since or time.time()
            if time.time() - idle_since >= TUNER_PAUSE_SECONDS:
                return status
        if elapsed > timeout:
            raise ExperimentDead(f"experiment {exp_id} still {status['status']} after {timeout:.0f}s (--timeout)")


def port_in_use(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("", port))
            return False
        except OSError:
            return True


def choose_port(port: int | None) -> int:
    """The port asked for (refused if busy), else 8080 or any free port."""
    if port is not None:
        if port_in_use(port):
            raise UserError(f"--port {port} is in use (another experiment or server); choose another port")
        return port
    return 8080 if not port_in_use(8080) else free_port()


def free_port() -> int:
    """A port nothing listens on now (the system's choice)."""
    with socket.socket() as s:
        s.bind(("", 0))
        return s.getsockname()[1]


def interrupt_on_signal(signum, frame):
    """A signal handler turning SIGTERM (``timeout``, ``kill``) into KeyboardInterrupt, so cleanup runs."""
    raise KeyboardInterrupt(f"signal {signum}")


def settle_records(exp_id: str, log: Callable[[str], None]) -> None:
    """Records of trials killed before they could write their end (a trial run in-process that NNI killed)
    take the end NNI saw; said, never silent."""
    from .records import settle_experiment

    try:
        settled = settle_experiment(experiment_dir(exp_id))
    except (UserError, RecordError) as e:
        log(f"warning: trial records not checked for unfinished ends: {e}")
        return
    if settled:
        log(f"{len(settled)} trial record(s) left RUNNING by a killed trial now say how NNI ended them: "
            f"{', '.join(settled)}")

