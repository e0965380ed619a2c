"""One trial: build the architecture, train it, report Dice. Runs under NNI or standalone.

Under NNI (``NNI_PLATFORM`` set) the architecture comes from ``nni.get_next_parameter()`` (with a
multi-fidelity advisor such as Hyperband or BOHB, its ``TRIAL_BUDGET`` is the number of epochs), each
epoch's validation Dice goes to ``nni.report_intermediate_result`` and the final one to
``nni.report_final_result``. Standalone, ``--arch`` names the architecture (a JSON file of choices, an
exported ``top_arch.json``, or ``seed`` / ``unet``), so the same code retrains.

Settings: flags, or ``--config trial.yml`` with ``trial:``, ``data:``, ``train:`` and ``budget:`` sections
(flags given as well override it), so nnictl configs need not repeat one long ``trialCommand``.

A trial that fails (out of memory, NaN/inf loss, any exception) prints one ``error:`` line with the
reason, leaves a FAILED record with it, and exits non-zero, so NNI marks it FAILED and tuners skip it
(``trial_end(success=False)``). The tests prove that path with faults injected from outside the library
(``tests/faults/sitecustomize.py``).

Either way the trial writes its own record (``nni_seg_record.json``, :class:`~nni_seg.config.schema.TrialRecord`)
into ``$NNI_OUTPUT_DIR`` or ``--out``: the ground truth that export reads. Only what a trial needs is
imported (no ``nni.nas``, no Lightning).
"""
from __future__ import annotations

import dataclasses
import math
import os
import signal
import socket
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any

from . import forkserver
from .records import end_record
from ..config import schema
from ..space.arch import arch_summary, decode_parameters, load_arch, recipe_settings, split_joint, validate_arch
from ..errors import RecordError, UserError, one_line
from ..config.schema import RECORD_NAME, DatasetInfo, Rung, Status, TrialRecord
from ..config.settings import (BudgetSettings, DataSettings, Parser, TrainSettings, TrialSettings, add_flags, from_flags,
                       load_sections)

_T0 = time.time()  # when this module was imported: the end of the interpreter's and our imports


def process_start_time() -> float:
    """When this process started (epoch seconds): the trial's overhead is measured from here (for a trial
    forked by :mod:`nni_seg.experiment.forkserver`, when the process NNI started did)."""
    if os.environ.get("NNI_SEG_STARTED"):
        value = os.environ["NNI_SEG_STARTED"]
        try:
            started = float(value)
        except ValueError:
            started = math.nan
        if not math.isfinite(started):
            raise UserError(f"NNI_SEG_STARTED (set by the fork server): expected epoch seconds, got {value!r}")
        return started
    try:
        ticks = os.sysconf("SC_CLK_TCK")
        start = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19]) / ticks
        boot = next(float(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines()
                    if line.startswith("btime"))
        return boot + start
    except (OSError, ValueError, IndexError, StopIteration):
        return _T0


def failure_reason(e: BaseException) -> str:
    """One line: what went wrong and, where we know, what to do."""
    import torch

    if isinstance(e, torch.OutOfMemoryError):
        return f"out of memory: {str(e).splitlines()[0]} (lower --batch-size or --size, or the budget's max_mmacs)"
    return f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}".rstrip(": ")


class Clock:
    """Seconds per phase of a trial, for ``record.timings``."""

    def __init__(self):
        self.timings: dict[str, float] = {}
        self.t = time.perf_counter()

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.timings[name] = round(self.timings.get(name, 0.0) + now - self.t, 3)
        self.t = now


def run_trial(arch: dict, data_cfg: DataSettings, train_cfg: TrainSettings, out_dir: Path,
              budget: BudgetSettings = BudgetSettings(), reporter=None, ids: dict[str, Any] | None = None,
              model=None, clock: Clock | None = None) -> TrialRecord:
    """Train ``arch`` (or the already-built ``model`` of it) and write its record.

    ``reporter`` gets ``intermediate(dict)`` after each epoch and ``final(dict)`` at the end. A network
    over the ``budget`` is not trained: its record says REJECTED and the final result is Dice 0 with
    ``rejected: 1`` (tuners learn to avoid it). ``ids``: NNI's trial/experiment/parameter/sequence ids.
    """
    clock = clock or Clock()
    record = TrialRecord(status=Status.RUNNING, arch=arch, summary=arch_summary(arch), data=data_cfg,
                         train=train_cfg, budget=budget, **(ids or {}), started=time.strftime("%Y-%m-%dT%H:%M:%S"),
                         # where it ran: NNI's GPU scheduler assigns GPUs through CUDA_VISIBLE_DEVICES
                         host=socket.gethostname(), cuda_visible_devices=os.environ.get("CUDA_VISIBLE_DEVICES"))
    path = out_dir / RECORD_NAME
    schema.save(record, path)
    forkserver.tell_record(path)  # under the fork server: who settles this record if the trial is killed
    try:
        _train_and_score(record, path, arch, data_cfg, train_cfg, budget, reporter, model, clock)
        return record
    except KeyboardInterrupt as e:  # NNI stops trials with SIGINT (assessor, trial kill, nnictl stop); SIGTERM; Ctrl-C
        if record.status == Status.SUCCEEDED:  # trained and scored; only the final report did not reach NNI
            record.error = f"final result not reported to NNI ({str(e) or 'interrupted'})"
        else:
            record.status, record.error = Status.CANCELED, f"canceled ({str(e) or 'interrupted'})"
        raise
    except BaseException as e:
        record.status, record.traceback = Status.FAILED, traceback.format_exc()
        record.error = str(e) if isinstance(e, UserError) else failure_reason(e)
        raise
    finally:
        record.timings = dict(clock.timings)
        end_record(record, path)


def _train_and_score(record: TrialRecord, path: Path, arch: dict, data_cfg: DataSettings, train_cfg: TrainSettings,
                     budget: BudgetSettings, reporter, model, clock: Clock) -> None:
    from ..space.cost import count_macs, count_params, measure_latency
    from ..data import load_dataset
    import torch

    from ..space.net import SegNet
    from ..space.budget import over_budget
    from ..training.trainer import fit

    clock.lap("imports")
    data = load_dataset(data_cfg)
    clock.lap("data")
    h, w = data.size
    if model is None:
        torch.manual_seed(train_cfg.seed)  # the initial weights are the seed's too: a record reproduces its trial
        model = SegNet(arch, data.num_classes, data.in_channels)
    need = 2 ** (arch["levels"] - 1)
    if min(h, w) < need:
        raise UserError(f"--size {h} {w} is too small for levels={arch['levels']} (needs at least {need}x{need})")
    clock.lap("build")
    record.params = count_params(model)
    record.mmacs = round(count_macs(model, (1, data.in_channels, h, w)) / 1e6, 3)
    record.dataset = DatasetInfo(name=data.name, size=(h, w), classes=data.class_names,
                                 num_train=len(data.train_images), num_val=len(data.val_images),
                                 selection=data.info.get("selection", "val"))
    over = over_budget(record.mmacs, record.params, budget, data.num_classes, data.in_channels, (h, w))
    clock.lap("cost")
    if over:
        record.reason = "over budget: " + ", ".join(over)
        print(f"rejected before training: {record.reason}", flush=True)
        record.metrics = {"default": 0.0, "dice": 0.0, "miou": 0.0, "rejected": 1, "params": record.params,
                          "mmacs": record.mmacs}
        record.status = Status.REJECTED
        if reporter:
            reporter.final(record.metrics)
        return

    def on_epoch(result, scores) -> None:
        record.history.append(result)
        schema.save(record, path)
        if reporter:
            reporter.intermediate({"default": scores.dice, "miou": scores.miou, "loss": result.loss})

    result = fit(model, data, train_cfg, on_epoch=on_epoch)
    clock.lap("train")
    if budget.latency:  # one image at the data's size, on the trial's device and compute path, batch 1
        record.latency_ms = round(measure_latency(model, (1, data.in_channels, h, w), path=result.path), 3)
        clock.lap("latency")
    final = result.final
    metrics = {"default": final.dice, "dice": final.dice, "miou": final.miou, "pixel_acc": final.pixel_acc,
               "params": record.params, "mmacs": record.mmacs}
    if record.latency_ms is not None:
        metrics["latency_ms"] = record.latency_ms
    for name, d in zip(data.class_names, final.dice_per_class):
        if d is not None:
            metrics[f"dice_{name}"] = d
    record.metrics, record.scores = metrics, final
    record.train_seconds, record.images_per_second = result.train_seconds, result.images_per_second
    record.device, record.compute = result.device, result.compute
    record.status = Status.SUCCEEDED
    if reporter:
        reporter.final(metrics)
        clock.lap("report")


class TrialSignal(KeyboardInterrupt):
    """The trial was told to stop by signal ``args[1]``; its record says CANCELED."""

    def __str__(self) -> str:
        return self.args[0]


def _on_signal(signum, frame):
    forkserver.tell_stop()  # a SIGKILL after this is NNI's escalation of the stop, not the OOM killer
    raise TrialSignal(signal.Signals(signum).name, signum)


def build_parser() -> Parser:
    p = Parser(prog="python -m nni_seg.trial", description=__doc__.split("\n\n")[0])
    p.add_argument("--config", help="YAML with trial / data / train / budget sections (flags override it)")
    p.add_argument("--force", action="store_true", help="standalone: replace the record in --out")
    add_flags(p, TrialSettings, "trial")
    add_flags(p, DataSettings, "data")
    add_flags(p, TrainSettings, "training")
    add_flags(p, BudgetSettings, "cost budget (per trial)")
    return p


SECTIONS = {"trial": TrialSettings, "data": DataSettings, "train": TrainSettings, "budget": BudgetSettings}


def parse_settings(argv: list[str] | None) -> tuple[Any, dict[str, Any]]:
    """(argparse namespace, {section: settings}) from ``--config`` and the flags."""
    args = build_parser().parse_args(argv)
    base = load_sections(args.config, SECTIONS)
    return args, {name: from_flags(cls, args, base[name]) for name, cls in SECTIONS.items()}


def nni_budget_epochs(params: dict, train_cfg: TrainSettings) -> tuple[TrainSettings, float | None]:
    """A multi-fidelity advisor's ``TRIAL_BUDGET`` (Hyperband, BOHB) as the number of epochs."""
    if "TRIAL_BUDGET" not in params:
        return train_cfg, None
    budget = params["TRIAL_BUDGET"]
    if isinstance(budget, bool) or not isinstance(budget, (int, float)) or not budget > 0:
        raise UserError(f"TRIAL_BUDGET from NNI must be a positive number of epochs, got {budget!r}")
    return dataclasses.replace(train_cfg, epochs=max(1, round(budget))), float(budget)


def ladder_fidelity(params: dict, data_cfg: DataSettings, train_cfg: TrainSettings
                    ) -> tuple[DataSettings, TrainSettings, Rung | None]:
    """A ladder advisor's ``LADDER`` parameter (:mod:`nni_seg.experiment.ladder`): the rung's epochs and image size, and
    the repeat's seed (the trial's seed + repeat), applied to the trial's settings."""
    if "LADDER" not in params:
        return data_cfg, train_cfg, None
    from ..config._typed import FieldError, convert

    where = f"LADDER parameter from NNI ({params['LADDER']!r})"
    try:
        rung = convert(Rung, params["LADDER"], "")
        if rung.epochs < 1 or rung.repeat < 0 or rung.rung < 0:
            raise UserError(f"{where}: rung and repeat must be >= 0 and epochs >= 1")
        if rung.size is not None:
            data_cfg = dataclasses.replace(data_cfg, size=tuple(rung.size))
        train_cfg = dataclasses.replace(train_cfg, epochs=rung.epochs, seed=train_cfg.seed + rung.repeat)
    except (FieldError, UserError) as e:
        raise UserError(f"{where}: {one_line(e)}" if isinstance(e, FieldError) else one_line(e)) from None
    return data_cfg, train_cfg, rung


def recipe_from(params: dict, train_cfg: TrainSettings) -> tuple[dict, TrainSettings, dict | None]:
    """Joint search: (architecture labels, ``train_cfg`` with the recipe labels applied, those labels)."""
    arch_params, recipe = split_joint(params)
    if not recipe:
        return arch_params, train_cfg, None
    try:
        return arch_params, dataclasses.replace(train_cfg, **recipe_settings(recipe, "trial parameters")), recipe
    except UserError as e:
        raise UserError(f"trial parameters: {one_line(e)}") from None


def hpo_settings(params: dict, train_cfg: TrainSettings) -> TrainSettings:
    """``train_cfg`` with the tuner's values for some of its fields (each checked like a flag)."""
    names = {f.name for f in dataclasses.fields(TrainSettings)}
    unknown = sorted(set(params) - names)
    if unknown:
        raise UserError(f"trial parameters: {', '.join(unknown)} are not training settings; valid: {', '.join(names)}")
    try:
        return dataclasses.replace(train_cfg, **params)
    except UserError as e:
        raise UserError(f"trial parameters: {e}") from None


def main(argv: list[str] | None = None) -> int:
    """Entry point. A trial stopped by SIGINT (how NNI 3.0 stops trials) or SIGTERM writes its CANCELED
    record, then dies by that same signal: NNI counts only a signal death as EARLY_STOPPED /
    USER_CANCELED, any exit code as FAILED."""
    if threading.current_thread() is not threading.main_thread():
        return _main(argv)
    from .channel import ChannelClosed

    previous = {s: signal.signal(s, _on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        return _main(argv)
    except (TrialSignal, ChannelClosed) as e:
        # NNI closing the channel is the experiment stopping: the trial ends as NNI's SIGINT would end it
        signum = e.args[1] if isinstance(e, TrialSignal) else signal.SIGINT
        print(f"error: trial canceled ({e})", file=sys.stderr, flush=True)
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)
        return 128 + signum  # only if the default action did not end the process
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def _main(argv: list[str] | None) -> int:
    clock = Clock()
    try:
        clock.timings["startup"] = round(time.time() - process_start_time(), 3)
        args, s = parse_settings(argv)
        record, path = _start(args, s, clock)
    except UserError as e:
        print(f"error: {one_line(e)}", file=sys.stderr)
        return 2
    except Exception as e:  # the record says FAILED with the traceback; NNI marks the trial FAILED
        print(f"error: trial failed: {failure_reason(e)}", file=sys.stderr)
        return 1
    m = record.metrics or {}
    print(f"{record.status.value} dice={m.get('dice', 0):.4f} miou={m.get('miou', 0):.4f} params={record.params} "
          f"mmacs={record.mmacs} record={path}")
    return 0


def _start(args, s: dict[str, Any], clock: Clock) -> tuple[TrialRecord, Path]:
    trial, data_cfg, train_cfg, budget = s["trial"], s["data"], s["train"], s["budget"]
    if os.environ.get("NNI_PLATFORM"):
        from .channel import Trial

        nni_trial = Trial()
        params = nni_trial.next_parameter()
        if params is None:
            raise RecordError("NNI gave this trial no parameters")
        train_cfg, nni_budget = nni_budget_epochs(params, train_cfg)
        data_cfg, train_cfg, rung = ladder_fidelity(params, data_cfg, train_cfg)
        rest = decode_parameters({k: v for k, v in params.items() if k not in ("TRIAL_BUDGET", "LADDER")})
        recipe = None
        if trial.hpo:  # tune: the parameters are training settings of a fixed architecture
            if not trial.arch:
                raise UserError("--hpo needs --arch (the architecture whose training is tuned)")
            arch, train_cfg = load_arch(trial.arch), hpo_settings(rest, train_cfg)
        else:  # an architecture, and in a joint search its training recipe too
            rest, train_cfg, recipe = recipe_from(rest, train_cfg)
            arch = validate_arch(rest, source="trial parameters", fill_legacy=True)
        ids = {**nni_trial.ids(), "raw_parameters": params, "nni_budget": nni_budget, "rung": rung, "recipe": recipe}
        out = Path(trial.out or os.environ.get("NNI_OUTPUT_DIR", "."))
        reporter = nni_trial
    else:
        if not trial.arch:
            raise UserError("a standalone trial needs --arch FILE (or seed / unet); under NNI the tuner chooses")
        arch = load_arch(trial.arch)
        ids, reporter = {"trial_id": "standalone"}, None
        out = Path(trial.out or f"runs/trial-{time.strftime('%Y%m%d-%H%M%S')}")
        if (out / RECORD_NAME).exists() and not args.force:
            raise UserError(f"{out / RECORD_NAME} exists; choose another --out or pass --force")
    clock.lap("settings")
    return run_trial(arch, data_cfg, train_cfg, out, budget, reporter, ids, clock=clock), out / RECORD_NAME


def launch(argv: list[str] | None = None) -> int:
    """``python -m nni_seg.trial``: under NNI in a copy of the fork server (torch already imported), else here."""
    argv = list(sys.argv[1:] if argv is None else argv)

    if forkserver.enabled() and "-h" not in argv and "--help" not in argv:
        try:
            started = process_start_time()
        except UserError as e:
            print(f"error: {one_line(e)}", file=sys.stderr)
            return 2
        code = forkserver.run("nni_seg.experiment.trial:main", argv, started)
        if code is not None:
            return code
    return main(argv)


if __name__ == "__main__":
    sys.exit(launch())
