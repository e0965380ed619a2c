"""Small fixes to the installed NNI 3.0 (its last release), applied by our setup step, with a way back.

``python -m nni_seg patch-nni`` applies them, ``--check`` reports, ``--revert`` restores NNI as shipped.
Before touching anything it checks NNI's version and the SHA-256 of every target file: each must be
exactly as NNI 3.0 shipped it (then it is patched) or exactly as we patch it (then nothing changes);
any other content (another version, someone's edit, a half-applied patch) stops it with the file named.
All files are patched or none: the new contents are computed first, a backup of each file is kept beside
it (``*.nni_seg-orig``), and a failed write restores the files already written. ``run`` refuses an
unpatched NNI and prints this command, rather than patching behind the user's back.

1. ``trial-parameters`` (``training_service/v3/compat.js``): with ``trialConcurrency`` > 1 NNI 3.0
   queues parameters in one list and hands the head to whichever trial asks first, so the
   trial<->parameter link in the web UI, REST and DB is wrong for many trials. The fix binds the
   parameters to the trial id as soon as the trial is created, and a trial's request waits for its own.
2. ``gpu-off-by-one`` (``common/trial_keeper/task_scheduler/scheduler.js``): the scheduler rejects
   ``gpuNumber >= gpus.length``, so a trial asking for all GPUs of the box (1 of 1) is never run.
3. ``remote-keep-nni`` (``training_service/remote_v3/worker.js``): the remote training service runs
   ``pip install nni --upgrade`` on every SSH host at start, which fails on hosts without internet
   (the experiment then never starts) and would replace a patched NNI. The fix installs NNI only
   where ``import nni`` fails.
4. ``gpu-wait-retry`` (``training_service/v3/compat.js``): when the GPU scheduler has no free GPU for a
   trial (more trials than ``maxTrialNumberPerGpu`` x GPUs), NNI retries at once, in a loop without
   a pause, and every try starts a GPU probe process (measured: 343 probes alive after a minute,
   REST unanswered, ``nnictl stop`` over 5 minutes). The fix waits 1 s between tries.
5. ``gpu-info-cache`` (``common/trial_keeper/task_scheduler/collect_info.js``): the GPU info cache is
   meant to last 10 s but reads a ``timestamp`` the probe never writes, so every query runs the probe.
   The fix stamps the cached info.
6. ``advisor-string-ids`` (``nni/recoverable.py``): NNI 3.0's Hyperband and BOHB advisors die at the first
   metric (``'<=' not supported between instances of 'str' and 'int'``: their parameter ids are strings
   like ``"0_2_5"``, compared with an integer to spot resumed trials), so their experiments sit RUNNING
   until the timeout. The fix treats a string id as new (advisors are not resumable anyway).
7. ``tuner-connect-wait`` (``core/tuner_command_channel.js``): the manager fails the experiment
   ("Tuner did not connect in 10 seconds") when the dispatcher takes longer than 10 s to start. Ours imports
   torch for the budget and the ladder; on 2 loaded cores that took more than 10 s (seen: a search started
   beside a retrain and the test suite died at once). The fix waits 120 s.
8. ``rest-server-wait`` (``nni/experiment/launcher.py``): ``nnictl create`` and ``resume`` give the manager's
   REST server 3 s to answer, then fail ("Connection refused") and leave nothing running. On 2 cores under
   load (seen: a tune started beside a retrain and the test suite) the manager took longer. The fix waits
   up to 60 s, inside the 120 s that :func:`nni_seg.experiment.lifecycle.create` gives nnictl.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from ..errors import UserError

NNI_VERSION = "3.0"
BACKUP_SUFFIX = ".nni_seg-orig"


@dataclass(frozen=True)
class Patch:
    name: str
    file: str  # relative to the site-packages folder holding nni and nni_node
    old: str
    new: str

    @property
    def marker(self) -> str:
        if self.file.endswith(".py"):
            return f"# nni_seg patch: {self.name}"
        return f"/* nni_seg patch: {self.name} */"


PATCHES = [
    Patch(
        "trial-parameters",
        "nni_node/training_service/v3/compat.js",
        old="""        if (trialId === null) {
            this.parameters.push(form.hyperParameters.value);
        }
        else {
            this.allocatedParameters.set(trialId, form.hyperParameters.value);
        }
        while (trialId === null) {
            envId = this.schedule();
            if (envId === null) {
                await (0, promises_2.setTimeout)(1000);
                continue;
            }
            submitTime = Date.now();
            try {
                trialId = await this.v3.createTrial(envId, this.config.trialCommand, 'trial_code', form.sequenceId);
            }
            catch (error) {
                logger.error('Exception when create trial', form, ':', error);
            }
        }""",
        new="""        while (trialId === null) {
            envId = this.schedule();
            if (envId === null) {
                await (0, promises_2.setTimeout)(1000);
                continue;
            }
            submitTime = Date.now();
            try {
                trialId = await this.v3.createTrial(envId, this.config.trialCommand, 'trial_code', form.sequenceId);
            }
            catch (error) {
                logger.error('Exception when create trial', form, ':', error);
            }
        }
        this.allocatedParameters.set(trialId, form.hyperParameters.value);""",
    ),
    Patch(
        "trial-parameters-wait",
        "nni_node/training_service/v3/compat.js",
        old="""        this.v3.onRequestParameter(async (trialId) => {
            if (this.allocatedParameters.has(trialId)) {""",
        new="""        this.v3.onRequestParameter(async (trialId) => {
            for (let i = 0; i < 1200 && !this.allocatedParameters.has(trialId); i++) {
                await (0, promises_2.setTimeout)(50);
            }
            if (this.allocatedParameters.has(trialId)) {""",
    ),
    Patch(
        "gpu-off-by-one",
        "nni_node/common/trial_keeper/task_scheduler/scheduler.js",
        old="gpuNumber >= this.gpus.length",
        new="gpuNumber > this.gpus.length",
    ),
    Patch(
        "gpu-wait-retry",
        "nni_node/training_service/v3/compat.js",
        old="""                logger.error('Exception when create trial', form, ':', error);
            }
        }""",
        new="""                logger.error('Exception when create trial', form, ':', error);
            }
            if (trialId === null) {
                await (0, promises_2.setTimeout)(1000);
            }
        }""",
    ),
    Patch(
        "gpu-info-cache",
        "nni_node/common/trial_keeper/task_scheduler/collect_info.js",
        old="""    cache = info;
    return info;""",
        new="""    info.timestamp = Date.now();
    cache = info;
    return info;""",
    ),
    Patch(
        "advisor-string-ids",
        "nni/recoverable.py",
        old="""        if param_id is None:
            return False
        return param_id <= self.recovered_max_param_id""",
        new="""        if param_id is None or not isinstance(param_id, int):  # Hyperband / BOHB ids are strings
            return False
        return param_id <= self.recovered_max_param_id""",
    ),
    Patch(
        "tuner-connect-wait",
        "nni_node/core/tuner_command_channel.js",
        old="""                    const msg = 'Tuner did not connect in 10 seconds. Please check tuner (dispatcher) log.';
                    this.connect.reject(new Error('tuner_command_channel: ' + msg));
                }
            }, 10000);""",
        new="""                    const msg = 'Tuner did not connect in 120 seconds. Please check tuner (dispatcher) log.';
                    this.connect.reject(new Error('tuner_command_channel: ' + msg));
                }
            }, 120000);""",
    ),
    Patch(
        "rest-server-wait",
        "nni/experiment/launcher.py",
        old="def _check_rest_server(port: int, retry: int = 3, url_prefix: str | None = None) -> None:",
        new="def _check_rest_server(port: int, retry: int = 60, url_prefix: str | None = None) -> None:",
    ),
    Patch(
        "remote-keep-nni",
        "nni_node/training_service/remote_v3/worker.js",
        old="await this.ssh.run(`${this.python} -m pip install nni --upgrade`);",
        new="await this.ssh.run(`${this.python} -c 'import nni' || ${this.python} -m pip install nni==3.0`);",
    ),
]


# SHA-256 of each target file as NNI 3.0's wheel ships it, and after all its patches (checked by a test
# that rebuilds the patched text from the shipped one).
SHIPPED = {
    "nni/recoverable.py": "9f89f7381cba45a76d30886c322e8d07e31e079544df9f06c90a70e630f010dd",
    "nni/experiment/launcher.py": "4f8ad08481b9454b6ef1381abe66750d3d29efcd4c450dbd46590230355aa941",
    "nni_node/training_service/v3/compat.js": "9334774e798bd14efc5ccc0c78eef8d5fd14f91ead38ab71e9f468cdf9c05e99",
    "nni_node/common/trial_keeper/task_scheduler/scheduler.js": "0e0186fcb3390cb94574a2a108666f8c904b20102ca31271b1a54b114c65a94b",  # noqa: E501
    "nni_node/common/trial_keeper/task_scheduler/collect_info.js": "77dab4fbf6cbde7e33ac7b6d86893bbe7b4592d6dcb806a2d0e38918629816ee",  # noqa: E501
    "nni_node/training_service/remote_v3/worker.js": "f45b7db4524a85e5ed02c77c659fe9b784c2059f38bffc77600105d93ebba724",
    "nni_node/core/tuner_command_channel.js": "ab66be789261f31b26e7fb9605936c4bce6d23c9593dce0bbe556458f27da6b3",
}
PATCHED = {
    "nni/recoverable.py": "475539929f06511e093e887f02c156b294baab53b1752f6b477e04059e80691a",
    "nni/experiment/launcher.py": "ed0b6caca29a6edcea6f77df94390ffebeffc801c0f7ffecca1d7447f3532178",
    "nni_node/training_service/v3/compat.js": "120dee1ed6c1641fed8d51a48417c96cd0fddbf117647bc24728c0da4a5edd34",
    "nni_node/common/trial_keeper/task_scheduler/scheduler.js": "7e5a5595fa09e26d73c8ef48dda2f905047bed449f89f8d3b30c6eafb2987d59",  # noqa: E501
    "nni_node/common/trial_keeper/task_scheduler/collect_info.js": "cbccaa18226ce864453bf32f4087502ecf74138717b9f3c2a3d878c2b733f4f3",  # noqa: E501
    "nni_node/training_service/remote_v3/worker.js": "16e3246f45f57b4087523b13238fc5f4f3e18fdac52c63dc6e1fe30352dd0805",
    "nni_node/core/tuner_command_channel.js": "8491eb7403314b8f7ebc2b708f4a3e8fab669d4f67a025c6b4adf8534304c240",
}
FILES = tuple(SHIPPED)


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def patch_text(file: str, shipped: str) -> str:
    """``shipped`` (a target file as NNI ships it) with every patch of ``file`` applied, in order."""
    text = shipped
    for p in PATCHES:
        if p.file != file:
            continue
        if text.count(p.old) != 1:
            raise UserError(f"{file}: the snippet of patch {p.name!r} occurs {text.count(p.old)} times, not once")
        text = text.replace(p.old, p.new + " " + p.marker, 1)
    return text


def unpatch_text(file: str, patched: str) -> str:
    """The inverse of :func:`patch_text` (patches undone in reverse order)."""
    text = patched
    for p in reversed([p for p in PATCHES if p.file == file]):
        text = text.replace(p.new + " " + p.marker, p.old, 1)
    return text


def site_dir() -> Path:
    """The folder holding the installed ``nni`` and ``nni_node`` packages (the patched files are under it)."""
    try:
        import nni_node
    except ImportError:
        raise UserError("NNI is not installed in this environment (pip install -r requirements.txt)") from None
    return Path(nni_node.__path__[0]).parent


def nni_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("nni")
    except PackageNotFoundError:
        raise UserError("NNI is not installed in this environment (pip install -r requirements.txt)") from None


def file_states(root: Path | None = None) -> dict[str, str]:
    """target file -> 'shipped' | 'patched' | 'missing' | 'modified' (neither: another version or an edit)."""
    root = root or site_dir()
    out = {}
    for f in FILES:
        path = root / f
        if not path.is_file():
            out[f] = "missing"
            continue
        h = sha256(path.read_text())
        out[f] = "shipped" if h == SHIPPED[f] else "patched" if h == PATCHED[f] else "modified"
    return out


def state(root: Path | None = None) -> str:
    """'patched', 'shipped' (as NNI ships it), 'partly patched', or 'NNI x, not 3.0' / 'modified (<file>)'."""
    if nni_version() != NNI_VERSION:
        return f"NNI {nni_version()}, not {NNI_VERSION}"
    states = file_states(root)
    if all(s == "patched" for s in states.values()):
        return "patched"
    if all(s == "shipped" for s in states.values()):
        return "shipped"
    odd = [f"{f}: {s}" for f, s in states.items() if s not in ("patched", "shipped")]
    return f"modified ({'; '.join(odd)})" if odd else "partly patched"


def _check_version() -> None:
    if nni_version() != NNI_VERSION:
        raise UserError(f"installed NNI is {nni_version()}; these patches are for NNI {NNI_VERSION} only")


def _write_all(root: Path, texts: dict[str, str]) -> None:
    """Replace the files with ``texts``: all or none (written ones are restored if one fails)."""
    done: dict[str, str] = {}
    try:
        for f, text in texts.items():
            path = root / f
            done[f] = path.read_text()
            tmp = path.with_name(path.name + ".nni_seg-tmp")
            tmp.write_text(text)
            tmp.replace(path)
    except OSError as e:
        for f, old in done.items():
            (root / f).write_text(old)
        raise UserError(f"cannot write {root / f} ({e.strerror}); NNI left as it was") from None


def apply(root: Path | None = None) -> dict[str, str]:
    """Patch every target file that is as shipped; returns the files' states after. Idempotent."""
    _check_version()
    root = root or site_dir()
    states = file_states(root)
    odd = {f: s for f, s in states.items() if s not in ("shipped", "patched")}
    if odd:
        f, s = next(iter(odd.items()))
        raise UserError(f"{root / f} is {s} (its SHA-256 is neither NNI {NNI_VERSION}'s nor ours): nothing patched; "
                        f"reinstall NNI ({'pip install --force-reinstall nni==' + NNI_VERSION})")
    texts = {}
    for f, s in states.items():
        if s == "shipped":
            shipped = (root / f).read_text()
            texts[f] = patch_text(f, shipped)
            backup = root / (f + BACKUP_SUFFIX)
            if not backup.is_file():
                backup.write_text(shipped)
    _write_all(root, texts)
    return file_states(root)


def revert(root: Path | None = None) -> dict[str, str]:
    """Restore every patched file as NNI shipped it (from its backup, or by undoing the patches); checked
    against the shipped hashes before anything is written."""
    _check_version()
    root = root or site_dir()
    states = file_states(root)
    texts = {}
    for f, s in states.items():
        if s == "shipped":
            continue
        if s != "patched":
            raise UserError(f"{root / f} is {s}: not ours to revert; reinstall NNI")
        backup = root / (f + BACKUP_SUFFIX)
        text = backup.read_text() if backup.is_file() else unpatch_text(f, (root / f).read_text())
        if sha256(text) != SHIPPED[f]:
            text = unpatch_text(f, (root / f).read_text())
        if sha256(text) != SHIPPED[f]:
            raise UserError(f"cannot rebuild {root / f} as shipped; reinstall NNI")
        texts[f] = text
    _write_all(root, texts)
    return file_states(root)


def patch_states(root: Path | None = None) -> dict[str, str]:
    """patch name -> 'applied' | 'pending' | 'unknown' (for reports)."""
    root = root or site_dir()
    out = {}
    for p in PATCHES:
        path = root / p.file
        text = path.read_text() if path.is_file() else ""
        out[p.name] = "applied" if p.marker in text else "pending" if p.old in text else "unknown"
    return out
