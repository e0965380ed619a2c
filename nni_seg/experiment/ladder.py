"""A fidelity ladder under NNI: many cheap trials screen, the best are promoted to dearer rungs, and the
winner is chosen at the top rung by the mean of several trainings.

The proxy that a search can afford (small images, few epochs) orders a population but not the top of it:
one network trained twice at the proxy differs as much as a search's top three (docs/strategies.md). So a
ladder spends the first rung on breadth and the last on certainty:

* rung 0: ``trials`` candidates from any NNI tuner (through :class:`~nni_seg.experiment.tuners.GuidedTuner`: within the
  cost budget, narrowed by ``exclude``, started from ``start_with``), each trained at ``epochs`` and
  ``size``; the inner tuner learns from these results;
* rung k > 0: the ``keep`` best candidates of rung k-1 (by the mean of their trainings there), each trained
  ``repeats`` times (seeds: the trial's seed + repeat) at that rung's epochs and size;
* ``incumbents``: networks you already have (the U-Net, perhaps at a tuned learning rate; the same forms as
  ``start_with``) that skip the screen and enter only the top rung, trained there ``repeats`` times beside the
  promoted candidates. The screen's breadth goes to new candidates, and a searched network wins only if it
  beats the incumbents at the top rung's fidelity, where the ranking is trusted. Their trials fill the slots
  a rung leaves idle while its last trials run, so they cost no wall time of their own where there is such a
  slot. An incumbent's ``candidate`` number is negative (-1, -2, ...);
* export (:mod:`nni_seg.workflow.export`) takes the candidate with the best mean at the highest rung reached.

A candidate is an architecture with, in a joint search, its training recipe. Every trial gets its rung in
its parameters (``LADDER: {rung, epochs, size, candidate, repeat}``; NNI's web UI shows it in the trial's
parameters) and its record keeps it. The plan's cost, in trial-epochs and in epochs at rung 0's size, is
:func:`plan_cost`; ``maxTrialNumber`` must be at least :func:`plan_trials` (both count the incumbents).

:class:`Ladder` is the state machine (no NNI: checked by ``check_config``, tested directly);
:class:`LadderAdvisor` is the NNI advisor around it. Use from nnictl::

    tuner:
      className: nni_seg.ladder.LadderAdvisor
      codeDirectory: .
      classArgs:
        tuner: Random
        tuner_args: {seed: 0}
        budget: {max_mmacs_of: unet, size: [48, 64], num_classes: 11}
        rungs:
          - {trials: 16, epochs: 3, size: [48, 64]}
          - {keep: 4, epochs: 6, size: [96, 128]}
          - {keep: 2, epochs: 12, size: [96, 128], repeats: 2}

Resuming (``nnictl resume``, ``run --resume``): NNI hands the advisor the finished trials' parameters and
results; the ladder rebuilds its rungs from them and runs what is missing (a trial that was running when
the experiment stopped runs again; if its final result does not reach the advisor, the score is read from
the trial's own record).
"""
from __future__ import annotations

import dataclasses
import logging
import math
from typing import Any

_logger = logging.getLogger(__name__)

Slot = tuple[int, int, int]  # (rung, candidate, repeat)


@dataclasses.dataclass(frozen=True)
class RungPlan:
    """One rung: how many candidates it trains (``trials`` at rung 0, ``keep`` above), how long and how big."""
    epochs: int
    size: tuple[int, int] | None
    trials: int = 0  # rung 0: candidates drawn from the tuner
    keep: int = 0  # rung > 0: candidates promoted from the rung below
    repeats: int = 1

    @property
    def candidates(self) -> int:
        return self.trials or self.keep


def _int(d: dict, key: str, where: str, default: int | None = None, least: int = 1) -> int:
    v = d.get(key, default)
    if isinstance(v, bool) or not isinstance(v, int) or v < least:
        raise ValueError(f"{where}.{key}: an integer >= {least}, got {v!r}")
    return v


def parse_rungs(rungs: Any) -> list[RungPlan]:
    """The ``rungs`` class argument, checked: rung 0 gives ``trials``, every later one ``keep`` (no more
    than the rung below), sizes are ``[H, W]`` of at least 8, the top rung of a ladder repeats >= 2 times."""
    if not isinstance(rungs, list) or not rungs:
        raise ValueError("rungs: a non-empty list of {trials|keep, epochs, size, repeats}")
    out: list[RungPlan] = []
    for i, r in enumerate(rungs):
        where = f"rungs[{i}]"
        if not isinstance(r, dict):
            raise ValueError(f"{where}: a mapping, got {r!r}")
        unknown = sorted(set(r) - {"trials", "keep", "epochs", "size", "repeats"})
        if unknown:
            raise ValueError(f"{where}: unknown key(s) {', '.join(unknown)}; valid: trials, keep, epochs, size, repeats")
        size = r.get("size")
        if size is not None and (not isinstance(size, (list, tuple)) or len(size) != 2
                                 or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 8 for v in size)):
            raise ValueError(f"{where}.size: [H, W], integers >= 8, got {size!r}")
        if i == 0 and "keep" in r or i > 0 and "trials" in r:
            raise ValueError(f"{where}: rung 0 gives trials (drawn from the tuner), later rungs keep (promoted)")
        plan = RungPlan(epochs=_int(r, "epochs", where), size=tuple(size) if size else None,
                        trials=_int(r, "trials", where) if i == 0 else 0, keep=_int(r, "keep", where) if i else 0,
                        repeats=_int(r, "repeats", where, 1))
        if i and plan.keep > out[-1].candidates:
            raise ValueError(f"{where}.keep: {plan.keep} > the {out[-1].candidates} candidates of rung {i - 1}")
        out.append(plan)
    if len(out) > 1 and out[-1].repeats < 2:
        raise ValueError(f"rungs[{len(out) - 1}].repeats: the top rung chooses by a mean: give repeats >= 2")
    return out


def _trained(rungs: list[RungPlan], incumbents: int) -> list[int]:
    """Candidates trained at each rung: the top rung's promoted ones and the ``incumbents``."""
    return [r.candidates + (incumbents if i == len(rungs) - 1 else 0) for i, r in enumerate(rungs)]


def plan_trials(rungs: list[RungPlan], incumbents: int = 0) -> int:
    """Trials the whole ladder runs (what ``maxTrialNumber`` must allow)."""
    return sum(n * r.repeats for n, r in zip(_trained(rungs, incumbents), rungs))


def plan_cost(rungs: list[RungPlan], incumbents: int = 0) -> dict[str, float]:
    """The ladder's compute: ``trial_epochs`` (epochs summed over trials) and ``base_epochs`` (the same,
    each weighted by its pixels relative to rung 0's size: what an equal-compute baseline is given)."""
    base = rungs[0].size
    px = (lambda s: 1.0) if base is None else (lambda s: (s[0] * s[1]) / (base[0] * base[1]) if s else 1.0)
    n = _trained(rungs, incumbents)
    return {"trials": plan_trials(rungs, incumbents),
            "trial_epochs": sum(k * r.repeats * r.epochs for k, r in zip(n, rungs)),
            "base_epochs": round(sum(k * r.repeats * r.epochs * px(r.size) for k, r in zip(n, rungs)), 3)}


class Ladder:
    """The ladder's state: which trial of which rung to run next, and promotion when a rung has ended.

    ``propose(parameter_id)`` returns the next trial's parameters (with ``LADDER``), or None while the
    current rung's trials are still running (or when the ladder is done); ``result`` and ``end`` report.
    """

    def __init__(self, rungs: list, tuner: str = "Random", tuner_args: dict | None = None,
                 start_with: list | None = None, budget: dict | None = None, exclude: dict | None = None,
                 optimize_mode: str = "maximize", incumbents: list | None = None):
        from .tuners import GuidedTuner, known_archs

        if optimize_mode not in ("maximize", "minimize"):
            raise ValueError(f"optimize_mode: maximize or minimize, got {optimize_mode!r}")
        self.rungs = parse_rungs(rungs)
        self.sign = 1.0 if optimize_mode == "maximize" else -1.0
        self.inner = GuidedTuner(tuner, tuner_args, start_with, budget, optimize_mode, exclude)
        self.known_incumbents = known_archs(incumbents if incumbents is not None else [], source="incumbents")
        if self.known_incumbents and len(self.rungs) < 2:
            raise ValueError("incumbents: they enter the top rung above the screen, and this ladder has one rung "
                             "(give more rungs, or put them in start_with)")
        top = len(self.rungs) - 1
        self.incumbent_ids = [-1 - i for i in range(len(self.known_incumbents))]  # their candidate numbers
        self.incumbents: dict[int, dict] = {}  # candidate -> its parameters, once the space is known
        # the incumbents' top-rung trials: run in the slots a rung leaves idle, or queued with the top rung
        self.spare: list[Slot] = [(top, c, rep) for c in self.incumbent_ids for rep in range(self.rungs[top].repeats)]
        self.candidates: list[dict] = []  # candidate -> its parameters (architecture and recipe labels)
        self.queue: list[Slot] = []  # promoted trials not yet handed out
        self.running: dict[Any, Slot] = {}  # parameter id -> slot
        self.scores: dict[Slot, float] = {}
        self.ended: set[Slot] = set()
        self.rung = 0  # the rung being run
        self.drawn = 0  # rung-0 candidates drawn from the tuner
        self._planned: dict[int, list[Slot]] = {}  # rung > 0 -> its trials, once promoted

    # ---------------------------------------------------------------- NNI's side
    def update_search_space(self, space: dict) -> None:
        self.inner.update_search_space(space)
        params = self.inner.known_parameters(self.known_incumbents, space, source="incumbents")
        self.incumbents = dict(zip(self.incumbent_ids, params))

    def planned_trials(self) -> int:
        """Trials this ladder runs (:func:`plan_trials` with its incumbents)."""
        return plan_trials(self.rungs, len(self.known_incumbents))

    def params_of(self, cand: int) -> dict:
        """Candidate ``cand``'s parameters (a negative one: an incumbent's)."""
        return self.incumbents[cand] if cand < 0 else self.candidates[cand]

    def propose(self, parameter_id: Any) -> dict | None:
        """The next trial's parameters, or None (nothing to run until a running trial ends, or done)."""
        slot = self._next_slot(parameter_id)
        if slot is None:
            return None
        self.running[parameter_id] = slot
        return self.parameters(slot)

    def parameters(self, slot: Slot) -> dict:
        rung, cand, repeat = slot
        r = self.rungs[rung]
        return {**self.params_of(cand), "LADDER": {"rung": rung, "epochs": r.epochs,
                                                    "size": list(r.size) if r.size else None,
                                                    "candidate": cand, "repeat": repeat}}

    def result(self, parameter_id: Any, value: float) -> None:
        slot = self.running.get(parameter_id)
        if slot is None or not isinstance(value, (int, float)) or math.isnan(value):
            return
        self.scores[slot] = float(value)
        if slot[0] == 0:
            self.inner.receive_trial_result(parameter_id, self.candidates[slot[1]], value)

    def has_result(self, parameter_id: Any) -> bool:
        slot = self.running.get(parameter_id)
        return slot is None or slot in self.scores

    def result_from_record(self, parameter_id: Any, record: dict | None) -> bool:
        """A running trial's score from its own record (the ground truth) when its final result never came:
        only a SUCCEEDED record of this very slot (its ``rung``) counts. True if it gave the score."""
        slot, record = self.running.get(parameter_id), record or {}
        rung = record.get("rung")
        if slot is None or slot in self.scores or record.get("status") != "SUCCEEDED" or not isinstance(
                rung, dict) or (rung.get("rung"), rung.get("candidate"), rung.get("repeat", 0)) != slot:
            return False
        value = _scalar(record.get("metrics"))
        if value is None:
            return False
        self.result(parameter_id, value)
        return True

    def end(self, parameter_id: Any, success: bool = True) -> None:
        slot = self.running.pop(parameter_id, None)
        if slot is None:
            return
        self.ended.add(slot)
        if slot[0] == 0 and hasattr(self.inner, "trial_end"):
            self.inner.trial_end(parameter_id, success and slot in self.scores)
        self._promote_if_done()

    def adopt(self, parameter_id: Any, params: dict) -> None:
        """Resume: a trial NNI runs again with the parameters it had (it was waiting or running at the stop;
        NNI's ADD_CUSTOMIZED_TRIAL_JOB, after the import data). Its slot is running, not drawn or handed out
        again, and its result counts where its ``LADDER`` says."""
        lad = params.get("LADDER") if isinstance(params, dict) else None
        if not isinstance(lad, dict) or not isinstance(lad.get("candidate"), int) or not isinstance(lad.get("rung"), int):
            return
        cand, slot = lad["candidate"], (lad["rung"], lad["candidate"], int(lad.get("repeat", 0)))
        if cand < 0:  # an incumbent: its parameters are the config's
            self.running[parameter_id] = slot
            self.spare = [s for s in self.spare if s != slot]
            self.queue = [s for s in self.queue if s != slot]
            return
        while len(self.candidates) <= cand:
            self.candidates.append({})
        if not self.candidates[cand]:
            self.candidates[cand] = {k: v for k, v in params.items() if k != "LADDER"}
            self.drawn = sum(1 for c in self.candidates if c)
        self.running[parameter_id] = slot
        self.queue = [s for s in self.queue if s != slot]
        if slot[0] == 0:
            self.inner.adopt(parameter_id, self.candidates[cand])

    def import_data(self, data: list) -> None:
        """Resume: finished trials (``{"parameter", "value"}``, as NNI sends them) rebuild the rungs."""
        rows = [d for d in data if isinstance(d, dict) and isinstance(d.get("parameter"), dict)
                and isinstance(d["parameter"].get("LADDER"), dict)]
        rows.sort(key=lambda d: (d["parameter"]["LADDER"].get("rung", 0), d["parameter"]["LADDER"].get("candidate", 0)))
        first = []
        for d in rows:
            lad, params = d["parameter"]["LADDER"], {k: v for k, v in d["parameter"].items() if k != "LADDER"}
            cand = lad.get("candidate")
            if not isinstance(cand, int) or not isinstance(lad.get("rung"), int):
                continue
            if cand >= 0:  # an incumbent's parameters are the config's
                while len(self.candidates) <= cand:
                    self.candidates.append({})
                self.candidates[cand] = params
            slot = (lad["rung"], cand, int(lad.get("repeat", 0)))
            value = _scalar(d.get("value"))
            if value is not None:
                self.scores[slot] = value
            self.ended.add(slot)
            if slot[0] == 0 and cand >= 0:
                first.append({"parameter": params, "value": d.get("value")})
        self.drawn = sum(1 for c in self.candidates if c)
        self.inner.import_data(first)
        while self._promote_if_done():
            pass
        # a promoted or incumbent trial already run is not run again
        self.queue = [s for s in self.queue if s not in self.ended]
        self.spare = [s for s in self.spare if s not in self.ended]

    @property
    def done(self) -> bool:
        return self.rung >= len(self.rungs)

    # ---------------------------------------------------------------- the ladder
    def _next_slot(self, parameter_id: Any) -> Slot | None:
        if self.queue:
            return self.queue.pop(0)
        if self.rung == 0 and self.drawn < self.rungs[0].trials:
            params = self.inner.generate_parameters(parameter_id)
            for _ in range(DUPLICATE_TRIES):  # a resumed seeded tuner replays its first draws: not screened twice
                if params not in self.candidates:
                    break
                self.inner.trial_end(parameter_id, False)
                params = self.inner.generate_parameters(parameter_id)
            self.candidates.append(dict(params))
            self.drawn += 1
            cand = len(self.candidates) - 1
            self.queue += [(0, cand, rep) for rep in range(1, self.rungs[0].repeats)]
            return 0, cand, 0
        if self.spare:  # the rung's last trials are running: an incumbent's trial uses the idle slot
            return self.spare.pop(0)
        return None

    def _promote_if_done(self) -> bool:
        """When every trial of the current rung has ended, queue the next rung (True if it moved on)."""
        if self.done:
            return False
        r = self.rungs[self.rung]
        if self.rung == 0:
            if self.drawn < r.trials:
                return False
            # a resumed ladder has no parameters for a rung-0 trial that had not finished: a new draw replaces it
            slots = [(0, c, rep) for c, params in enumerate(self.candidates) if params for rep in range(r.repeats)]
        else:
            slots = self._planned[self.rung]
        if any(s not in self.ended for s in slots):
            return False
        ranked = self.ranking(self.rung)
        self.rung += 1
        if self.done:
            _logger.info("ladder done: best candidate %s", ranked[0] if ranked else None)
            return True
        nxt = self.rungs[self.rung]
        chosen = [c for c, _ in ranked[:nxt.keep]]
        if self.rung == len(self.rungs) - 1:
            chosen += self.incumbent_ids
        self._planned[self.rung] = [(self.rung, c, rep) for c in chosen for rep in range(nxt.repeats)]
        running = set(self.running.values())  # an incumbent's trial may be running in an idle slot already
        self.queue += [s for s in self._planned[self.rung] if s not in self.ended and s not in running]
        self.spare.clear()  # the incumbents' trials not yet handed out are in the top rung's queue now
        _logger.info("ladder: rung %d done; %d candidate(s) promoted to rung %d: %s", self.rung - 1, len(chosen),
                     self.rung, chosen)
        return True

    def ranking(self, rung: int) -> list[tuple[int, float]]:
        """(candidate, mean score) at ``rung``, best first; a candidate with no score there is left out
        (its trials failed); ties go to the earlier candidate (an incumbent before a searched one)."""
        by: dict[int, list[float]] = {}
        for (r, c, _), v in self.scores.items():
            if r == rung:
                by.setdefault(c, []).append(v)
        means = [(c, sum(v) / len(v)) for c, v in by.items()]
        return sorted(means, key=lambda cv: (-self.sign * cv[1], cv[0]))


DUPLICATE_TRIES = 50  # draws a rung-0 candidate may take to differ from those screened already


def _scalar(value: Any) -> float | None:
    """NNI's final result (a number or a dict with ``default``) as a number."""
    if isinstance(value, str):
        import json

        try:
            value = json.loads(value)
        except ValueError:
            return None
    if isinstance(value, dict):
        value = value.get("default")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        return None
    return float(value)


def trial_record(trial_job_id: Any) -> dict | None:
    """Trial ``trial_job_id``'s own record, read from this experiment's folder (the dispatcher's
    ``NNI_LOG_DIRECTORY`` is ``<experiment>/log``); None if there is none to read."""
    import json
    import os
    from pathlib import Path

    from ..config.schema import RECORD_NAME

    log_dir = os.environ.get("NNI_LOG_DIRECTORY")
    if not log_dir or not isinstance(trial_job_id, str) or not trial_job_id or "/" in trial_job_id:
        return None
    for path in (Path(log_dir).parent / "environments").glob(f"*/trials/{trial_job_id}/{RECORD_NAME}"):
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(record, dict):
            return record
    return None


def _advisor_base():
    from nni.runtime.msg_dispatcher_base import MsgDispatcherBase

    return MsgDispatcherBase


RESULT_WAIT_SECONDS = 30.0  # how long a trial's end waits for its final result (they come on two threads)


class LadderAdvisor(_advisor_base()):
    """NNI advisor running a :class:`Ladder` (class arguments: those of :class:`Ladder`).

    NNI's dispatcher handles a trial's end on another thread than its metrics and the requests for trials:
    every handler holds one lock, and an end waits (up to :data:`RESULT_WAIT_SECONDS`) for the trial's
    final result, so that a rung is never closed before its last score has arrived.
    """

    def __init__(self, rungs: list, tuner: str = "Random", tuner_args: dict | None = None,
                 start_with: list | None = None, budget: dict | None = None, exclude: dict | None = None,
                 optimize_mode: str = "maximize", incumbents: list | None = None):
        import threading

        super().__init__()
        self.lock = threading.RLock()
        self.ladder = Ladder(rungs, tuner, tuner_args, start_with, budget, exclude, optimize_mode, incumbents)
        self.credit = 0  # trials NNI asked for that the ladder could not give yet (a rung still running)
        self.next_id = 0
        self.said_done = False

    def handle_initialize(self, data):
        from nni.runtime.tuner_command_channel import CommandType

        with self.lock:
            self.ladder.update_search_space(data)
        self.send(CommandType.Initialized, "")

    def handle_update_search_space(self, data):
        with self.lock:
            self.ladder.update_search_space(data)

    def handle_request_trial_jobs(self, data):
        with self.lock:
            self.credit += int(data)
            self._serve()

    def _serve(self) -> None:
        import nni
        from nni.runtime.tuner_command_channel import CommandType

        while self.credit > 0:
            pid = self.next_id
            params = self.ladder.propose(pid)
            if params is None:
                break
            self.next_id += 1
            self.credit -= 1
            self.send(CommandType.NewTrialJob, nni.dump({"parameter_id": pid, "parameter_source": "algorithm",
                                                        "parameters": params, "parameter_index": 0}))
        if self.ladder.done and not self.ladder.queue and not self.said_done:
            self.said_done = True
            self.send(CommandType.NoMoreTrialJobs, nni.dump({"parameter_id": None, "parameter_source": "algorithm",
                                                            "parameters": ""}))

    def handle_report_metric_data(self, data):
        import nni

        if data.get("type") != "FINAL":
            return
        value = _scalar(nni.load(data["value"]) if isinstance(data.get("value"), str) else data.get("value"))
        if value is not None:
            with self.lock:
                self.ladder.result(data.get("parameter_id"), value)

    def handle_trial_end(self, data):
        import time

        import nni

        params = nni.load(data["hyper_params"]) if isinstance(data.get("hyper_params"), str) else data.get("hyper_params")
        pid = (params or {}).get("parameter_id")
        success = data.get("event") == "SUCCEEDED"
        deadline = time.monotonic() + RESULT_WAIT_SECONDS
        while success and time.monotonic() < deadline:
            with self.lock:
                if self.ladder.has_result(pid):
                    break
            time.sleep(0.1)
        with self.lock:
            # NNI reruns a trial that was running at a stop, and then its final result may not reach the
            # advisor (docs/nni_defects.md): the trial's own record has it
            if success and not self.ladder.has_result(pid) and self.ladder.result_from_record(
                    pid, trial_record(data.get("trial_job_id"))):
                _logger.warning("trial %s ended without its final result reaching the ladder; its score was read "
                                "from its record", data.get("trial_job_id"))
            self.ladder.end(pid, success)
            self._serve()

    def handle_import_data(self, data):
        with self.lock:
            self.ladder.import_data(data if isinstance(data, list) else [])
            self.next_id = max(self.next_id, 1 + max((p for p in self.recovered_trial_params), default=-1))

    def handle_add_customized_trial(self, data):
        """Resume: NNI reruns the trials that were waiting or running, with their old parameter ids."""
        import nni

        with self.lock:
            self.next_id = max(self.next_id, self.recover_parameter_id(data) + 1)
            for trial in data if isinstance(data, list) else [data]:
                trial = nni.load(trial) if isinstance(trial, str) else trial
                if isinstance(trial, dict) and isinstance(trial.get("parameter_id"), int):
                    self.ladder.adopt(trial["parameter_id"], trial.get("parameters") or {})
