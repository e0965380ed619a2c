"""A search from start to export: create (or resume) an nnictl experiment, follow it, export its top
architecture, stop it (:mod:`nni_seg.experiment.lifecycle` has the parts)."""
from __future__ import annotations

import signal
from pathlib import Path
from typing import Callable

from ..config.schema import TopArch
from ..config.settings import RunSettings
from ..experiment.lifecycle import (settle_records, check_config, check_environment, choose_port, create, follow,
                                    interrupt_on_signal, resume, stop)
from ..experiment.records import experiment_dir
from .export import export, output_path


def run_experiment(config: str | Path | None, settings: RunSettings = RunSettings(), *, resume_id: str | None = None,
                   log: Callable[[str], None] = print) -> tuple[TopArch, Path]:
    """Create (or resume) an nnictl experiment, follow it to the end, export its top architecture and
    stop it (unless ``settings.keep_running``). Raises :class:`ExperimentDead` if it cannot finish; the
    experiment is stopped either way, its finished trials and records kept. Returns the export and its file;
    progress goes to ``log``."""

    if not resume_id:
        config = Path(config)
        check_config(config)
        if settings.out:  # a new experiment has no earlier export: an existing --out is refused before any trial
            from ..files import check_output

            check_output(Path(settings.out), force=False, what="export")
    check_environment(allow_unpatched=settings.no_patch)
    port = choose_port(settings.port)
    # SIGTERM (timeout, kill) from here on still stops the experiment, even one that nnictl is still creating
    previous = signal.signal(signal.SIGTERM, interrupt_on_signal)
    try:
        exp_id = resume(resume_id, port) if resume_id else create(Path(config), port)
    except BaseException:
        signal.signal(signal.SIGTERM, previous)
        raise
    log(f"experiment {exp_id} {'resumed' if resume_id else 'started'}; web UI: http://127.0.0.1:{port} "
        f"(no authentication: keep the port local or use an SSH tunnel)")
    try:
        follow(exp_id, port, timeout=settings.timeout, stall=settings.stall, log=log)
        output_path(experiment_dir(exp_id), settings.out, False, exp_id)  # refuse a foreign file before work
        return export(exp_id, settings.out)
    finally:
        signal.signal(signal.SIGTERM, previous)
        if not settings.keep_running:
            stop(exp_id)
            settle_records(exp_id, log)
            log(f"stopped {exp_id} (finished trials and records are kept; "
                f"`python -m nni_seg export {exp_id}` works after stop)")
