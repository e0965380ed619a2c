"""The top architecture of an NNI experiment, from the trials' own records, reconciled with NNI's database.

Works while the experiment runs and after ``nnictl stop`` (reads files, needs no server). Each trial's
record says which architecture it trained and with which NNI ``parameter_id``; the export is
cross-checked against NNI's database (the final metric's parameter id and value, the parameters NNI
says it gave the trial) and every disagreement is reported. A record that cannot be read is an error for
that trial, never a silent skip: if NNI's database holds a better final score for a trial whose record
is unreadable or missing, the export fails and says so (``trust_db`` takes that trial from the database
instead). When no trial's record is on this machine (remote training services), the export comes from
NNI's database alone.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Callable

from ..config import schema
from ..errors import RecordError, RunFailed, UserError
from ..files import check_output
from ..experiment.records import Loaded, db_records, db_score, experiment_dir, nni_db, rank, trial_records
from ..config.schema import TOP_NAME, CrossCheck, LadderChoice, Mismatch, Status, TopArch, TrialRecord


def cross_check(loaded: list[Loaded], db: dict[str, dict]) -> CrossCheck:
    """Compare each trial's record with NNI's database; returns counts and the mismatching trials."""
    checked, mismatches = 0, []
    for item in loaded:
        rec = item.record
        row = db.get(rec.trial_id)
        if row is None:
            continue
        checked += 1
        problems = []
        if "final_parameter_id" in row and row["final_parameter_id"] != rec.parameter_id:
            problems.append(f"final metric parameter_id {row['final_parameter_id']} != record {rec.parameter_id}")
        db_final = db_score(row)
        mine = rec.score()
        if db_final is not None and mine is not None and not math.isclose(db_final, mine, rel_tol=1e-6, abs_tol=1e-9):
            problems.append(f"final Dice {db_final} != record {mine}")
        if "parameters" in row and rec.raw_parameters is not None and row["parameters"] != rec.raw_parameters:
            problems.append("NNI shows other parameters for this trial than it trained")
        if problems:
            mismatches.append(Mismatch(trial_id=rec.trial_id or "?", problems=problems))
    return CrossCheck(trials_checked=checked, mismatches=mismatches)


def _best(loaded: list[Loaded], metric: str) -> tuple[Loaded | None, LadderChoice | None]:
    """The best trial, and how a ladder chose it (None when the trials are not a ladder's)."""
    if any(x.record.rung is not None for x in loaded):
        return ladder_best(loaded, metric) or (None, None)
    scored = [x for x in loaded if x.record.score(metric) is not None]
    return (max(scored, key=rank(metric)) if scored else None), None


def ladder_best(loaded: list[Loaded], metric: str) -> tuple[Loaded, LadderChoice] | None:
    """A ladder's winner (:mod:`nni_seg.experiment.ladder`): at the highest rung that a searched candidate's
    scored trial reached, the candidate with the best mean over its trainings there, incumbents included (ties:
    the cheaper network, then the earlier candidate); returned as its best-scoring training and how it was
    chosen. An incumbent (a negative candidate) may have trained at the top rung before the search got there:
    it is not the winner of a ladder stopped below it."""
    scored = [x for x in loaded if x.record.rung is not None and x.record.score(metric) is not None]
    if not scored:
        return None
    searched = [x.record.rung.rung for x in scored if x.record.rung.candidate >= 0]
    top = max(searched or [x.record.rung.rung for x in scored])
    by: dict[int, list[Loaded]] = {}
    for x in scored:
        if x.record.rung.rung == top:
            by.setdefault(x.record.rung.candidate, []).append(x)

    def key(c: int) -> tuple:
        xs = by[c]
        mmacs = xs[0].record.mmacs if xs[0].record.mmacs is not None else math.inf
        return sum(x.record.score(metric) for x in xs) / len(xs), -mmacs, -c

    best = max(by, key=key)
    r = by[best][0].record.rung
    choice = LadderChoice(rung=top, epochs=r.epochs, size=r.size, metric=metric, candidate=best,
                          scores=[x.record.score(metric) for x in by[best]],
                          candidates={str(c): [x.record.score(metric) for x in xs] for c, xs in sorted(by.items())})
    return max(by[best], key=rank(metric)), choice


def _states(loaded: list[Loaded]) -> dict[str, int]:
    out: dict[str, int] = {}
    for x in loaded:
        out[x.record.status.value] = out.get(x.record.status.value, 0) + 1
    return out


def top_architecture(exp_dir: Path, metric: str = "default", trust_db: bool = False) -> TopArch:
    """The best SUCCEEDED trial by ``metric`` (higher is better), reconciled and cross-checked."""
    loaded, unreadable = trial_records(exp_dir)
    warnings: list[str] = []
    if not loaded and not unreadable:
        loaded = db_records(exp_dir)
        best, ladder = _best(loaded, metric)
        check = CrossCheck(note="exported from NNI's database: no trial records here (remote training service?)")
        return _top(best, ladder, loaded, metric, "NNI database", check, warnings, exp_dir)
    try:
        db = nni_db(exp_dir)
    except RecordError as e:
        if unreadable:
            raise RecordError(f"{e}; and {len(unreadable)} trial record(s) are unreadable (first: "
                              f"{unreadable[0].error}): the best trial cannot be known") from None
        db, warnings = {}, [f"no cross-check: {e}"]
    best, ladder = _best(loaded, metric)
    best_score = best.record.score(metric) if best else None
    # a readable record that has no score (FAILED, RUNNING, CANCELED) where NNI's database has one is as
    # much in doubt as an unreadable record: the best may be that trial
    unscored = {x.record.trial_id: f"its record ({x.path}) says {x.record.status.value} with no final {metric}"
                for x in loaded if x.record.score(metric) is None}
    readable = {x.record.trial_id for x in loaded} - set(unscored)
    bad = {u.trial_id: u for u in unreadable}
    silent: dict[str, list[str]] = {}  # NNI's end -> trials that ended with no record (died before the trial ran)
    for tid, row in db.items():
        if tid in readable:
            continue
        score = db_score(row, metric)
        if tid in unscored and score is None:
            continue  # record and database agree: no result
        if tid not in bad and tid not in unscored and score is None and row.get("status") not in ("WAITING", "RUNNING"):
            silent.setdefault(str(row.get("status", "?")), []).append(tid)
        why = bad[tid].error if tid in bad else unscored.get(tid, "no record found for it")
        if score is not None and (best_score is None or score > best_score):
            if not trust_db:
                raise RunFailed(f"trial {tid}: {why}; NNI's database holds a better final {metric} for it "
                                f"({score:.4f} > {best_score if best_score is not None else 'none'} of the best "
                                f"readable record): repair or remove that record, or export with --trust-db to take "
                                f"trial {tid} from NNI's database")
            from_db = [x for x in db_records(exp_dir) if x.record.trial_id == tid]
            if from_db:
                warnings.append(f"trial {tid} taken from NNI's database: {why}")
                best, best_score, ladder = from_db[0], score, None
                continue
        if tid in bad or (tid in unscored and score is not None):
            warnings.append(f"trial {tid} left out: {why}" + (f" (NNI's database: {metric} {score:.4f})"
                                                               if score is not None else ""))
    for tid, u in bad.items():
        if tid not in db:
            warnings.append(f"trial {tid} left out: {u.error} (not in NNI's database either)")
    if silent:  # e.g. the interpreter or the code was gone: the best is then only among the trials that ran
        n = sum(len(v) for v in silent.values())
        states = ", ".join(f"{len(v)} {k}" for k, v in sorted(silent.items()))
        first = next(iter(silent.values()))[0]
        warnings.append(f"{n} of {len(db)} trials left no record and no result ({states}; e.g. trial {first}: see "
                        f"its trial.log): the best is among the {len(loaded)} recorded only")
    return _top(best, ladder, loaded, metric, "trial records", cross_check(loaded, db), warnings, exp_dir)


def _top(best: Loaded | None, ladder: LadderChoice | None, loaded: list[Loaded], metric: str, source: str,
         check: CrossCheck, warnings: list[str], exp_dir: Path) -> TopArch:
    if best is None:
        raise RunFailed(f"no succeeded trial with metric {metric!r} in {exp_dir} "
                        f"(trial records: {_states(loaded) or 'none'})")
    rec: TrialRecord = best.record
    return TopArch(recipe=rec.recipe, ladder=ladder,
                   arch=rec.arch, summary=rec.summary, experiment_id=rec.experiment_id or exp_dir.name,
                   trial_id=rec.trial_id, parameter_id=rec.parameter_id, sequence_id=rec.sequence_id, metric=metric,
                   metrics=rec.metrics, dataset=rec.dataset, data=rec.data, train=rec.train,
                   trials_succeeded=sum(x.record.status == Status.SUCCEEDED for x in loaded),
                   trials_recorded=len(loaded), source=source if rec.source != "nni-db" else "NNI database",
                   cross_check=check, record=best.path, warnings=warnings)


def output_path(exp_dir: Path, out: str | None, force: bool, exp_id: str) -> Path:
    """Where the export goes: ``<exp dir>/top_arch.json`` (re-exports replace it), or ``out``, which must
    not exist unless it is this experiment's earlier export or ``force`` is set."""
    if not out:
        return exp_dir / TOP_NAME
    p = Path(out)
    if p.is_file() and not force:
        try:
            same = schema.load(TopArch, p).experiment_id == exp_id
        except RecordError:
            same = False
        if same:
            return p
    return check_output(p, force=force, what="export")


def export(exp_id: str, out: str | None = None, exp_dirs: list[str] | None = None, metric: str = "default",
           trust_db: bool = False, force: bool = False, confirm: int = 0, extra_trainings: int = 1,
           log: Callable[[str], None] = print) -> tuple[TopArch, Path]:
    """Export the top architecture of experiment ``exp_id``; returns it and the file written. ``confirm``
    > 0: the top ``confirm`` trials are trained ``extra_trainings`` more times first and the best mean is exported
    (:mod:`nni_seg.workflow.confirm`)."""
    if not metric:
        raise UserError("--metric: must name a final-result key (default: default = Dice)")
    if confirm < 0 or extra_trainings < 1:
        raise UserError(f"--confirm must be >= 0 and --extra-trainings >= 1, got {confirm} and {extra_trainings}")
    d = experiment_dir(exp_id, exp_dirs)
    path = output_path(d, out, force, d.name)
    top = top_architecture(d, metric, trust_db)
    if confirm:
        from .confirm import confirm_top

        top = confirm_top(d, top, confirm, extra_trainings, metric, log)
    return top, schema.save(top, path)


def one_line(top: TopArch) -> str:
    m = top.metrics or {}
    score = (f"dice={m['dice']:.4f} miou={m['miou']:.4f} params={int(m.get('params', 0))} "
             f"mmacs={m.get('mmacs', float('nan')):.1f}" if "dice" in m else "not scored")
    if top.ladder:
        lad = top.ladder
        score += (f" | chosen at ladder rung {lad.rung} ({lad.epochs} epochs"
                  + (f" at {lad.size[0]}x{lad.size[1]}" if lad.size else "")
                  + f") by the mean {top.ladder.metric} of {len(lad.scores)}: {sum(lad.scores) / len(lad.scores):.4f}")
    if top.recipe:
        score += " | recipe " + " ".join(f"{k.removeprefix('train_')}={v}" for k, v in top.recipe.items())
    return (f"top architecture of {top.experiment_id}: trial {top.trial_id} (parameter {top.parameter_id}) "
            f"{score} | {top.summary}")
