"""Small, idempotent fixes to the installed NNI 3.0 (its last release), applied by our setup step.

``python -m nni_seg patch-nni`` applies them; ``--check`` only reports. Each patch replaces one
exact snippet of NNI's shipped JavaScript and leaves a marker, so running it twice changes nothing,
and a different NNI version (snippet absent, marker absent) is reported instead of guessed at.

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
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Patch:
    name: str
    file: str  # relative to the nni_node folder
    old: str
    new: str

    @property
    def marker(self) -> str:
        return f"/* nni_seg patch: {self.name} */"


PATCHES = [
    Patch(
        "trial-parameters",
        "training_service/v3/compat.js",
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
        "training_service/v3/compat.js",
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
        "common/trial_keeper/task_scheduler/scheduler.js",
        old="gpuNumber >= this.gpus.length",
        new="gpuNumber > this.gpus.length",
    ),
    Patch(
        "gpu-wait-retry",
        "training_service/v3/compat.js",
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
        "common/trial_keeper/task_scheduler/collect_info.js",
        old="""    cache = info;
    return info;""",
        new="""    info.timestamp = Date.now();
    cache = info;
    return info;""",
    ),
    Patch(
        "remote-keep-nni",
        "training_service/remote_v3/worker.js",
        old="await this.ssh.run(`${this.python} -m pip install nni --upgrade`);",
        new="await this.ssh.run(`${this.python} -c 'import nni' || ${this.python} -m pip install nni==3.0`);",
    ),
]


def nni_node_dir() -> Path:
    import nni_node

    return Path(nni_node.__path__[0])


def status(root: Path | None = None) -> dict[str, str]:
    """patch name -> 'applied' | 'pending' | 'unknown' (snippet not found: another NNI version)."""
    root = root or nni_node_dir()
    out = {}
    for p in PATCHES:
        path = root / p.file
        text = path.read_text() if path.is_file() else ""
        if p.marker in text:
            out[p.name] = "applied"
        elif p.old in text:
            out[p.name] = "pending"
        else:
            out[p.name] = "unknown"
    return out


def apply(root: Path | None = None) -> dict[str, str]:
    """Apply every pending patch; returns the status after. Idempotent."""
    root = root or nni_node_dir()
    for p in PATCHES:
        path = root / p.file
        text = path.read_text() if path.is_file() else ""
        if p.marker in text or p.old not in text:
            continue
        if text.count(p.old) != 1:
            raise RuntimeError(f"{path}: snippet for patch {p.name!r} occurs {text.count(p.old)} times")
        text = text.replace(p.old, p.new + " " + p.marker, 1)
        tmp = path.with_suffix(path.suffix + ".nni_seg_tmp")
        tmp.write_text(text)
        tmp.replace(path)
    return status(root)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m nni_seg patch-nni", description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", action="store_true", help="only report; exit 1 if a patch is not applied")
    args = ap.parse_args(argv)
    st = status() if args.check else apply()
    for name, s in st.items():
        print(f"{name}: {s}")
    if any(s == "unknown" for s in st.values()):
        print(f"error: installed NNI at {nni_node_dir()} does not match NNI 3.0; patches not applied",
              file=sys.stderr)
        return 1
    return 1 if args.check and any(s != "applied" for s in st.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
