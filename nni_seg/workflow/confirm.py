"""``export --confirm K``: the top K trials of a search trained again before one is exported.

Why: at a short proxy one architecture trained twice differs by about as much as a search's best few do
(docs/strategies.md: CamVid's 48x64 x 3-epoch proxy, repeat sd 0.038 val Dice, top three within 0.01-0.03),
so the single best trial is partly the luckiest one and scores lower when trained again. Training the top K
again with other seeds, at the search's own settings (each trial's record says what they were), and
taking the best mean spends K x R proxy trainings on a choice less driven by that noise.

The repeats' records are kept in ``<experiment>/confirm/`` under their own file names, so export and
report, which read the experiment's ``nni_seg_record.json`` files, still see NNI's trials only; a repeat
whose record is already there (same architecture, same seed, succeeded) is not trained again.
"""
from __future__ import annotations

import dataclasses
import json
import tempfile
import time
from pathlib import Path
from typing import Callable

from ..config import schema
from ..space.arch import canonical, validate_arch
from ..errors import RecordError, RunFailed, UserError
from ..experiment.records import Loaded, trial_records
from ..config.schema import Candidate, Confirmation, Status, TopArch, TrialRecord

CONFIRM_DIR = "confirm"


def top_trials(loaded: list[Loaded], metric: str, k: int) -> list[Loaded]:
    """The ``k`` best scored trials in export's order, one per architecture (a search may train one twice)."""
    from ..experiment.records import rank

    seen, out = set(), []
    for x in sorted((x for x in loaded if x.record.score(metric) is not None), key=rank(metric), reverse=True):
        key = json.dumps(canonical(validate_arch(x.record.arch, fill_legacy=True)), sort_keys=True)
        if key not in seen:
            seen.add(key)
            out.append(x)
        if len(out) == k:
            break
    return out


def _name(x: Loaded) -> str:
    return x.record.trial_id or Path(x.path).parent.name


def repeat(x: Loaded, r: int, folder: Path) -> tuple[TrialRecord, Path]:
    """Trial ``x``'s architecture trained again at its own settings with training seed ``seed + 1 + r``."""
    from ..experiment.trial import run_trial

    rec = x.record
    train = dataclasses.replace(rec.train, seed=rec.train.seed + 1 + r)
    path = folder / f"{_name(x)}_r{r}.json"
    if path.is_file():
        try:
            old = schema.load(TrialRecord, path)
        except RecordError:
            old = None  # a repeat killed mid-write: trained again
        if old is not None and old.status == Status.SUCCEEDED and old.arch == rec.arch and old.train == train:
            return old, path
    with tempfile.TemporaryDirectory() as tmp:
        done = run_trial(rec.arch, rec.data, train, Path(tmp), budget=rec.budget,
                         ids={"experiment_id": rec.experiment_id})
    if done.status != Status.SUCCEEDED:
        raise RunFailed(f"confirm: trial {_name(x)} trained again ended {done.status.value}: {done.reason or done.error}")
    return done, schema.save(done, path)


def confirm_top(exp_dir: Path, top: TopArch, k: int, repeats: int, metric: str = "default",
                log: Callable[[str], None] = print) -> TopArch:
    """``top`` (a plain export of ``exp_dir``) replaced by the best mean ``metric`` among the top ``k``
    trials, each trained ``repeats`` more times; the export's checks and warnings are kept."""
    from ..experiment.records import rank

    if top.source != "trial records":
        raise UserError(f"--confirm needs the trials' own records (settings to train again); this export comes "
                        f"from {top.source}")
    loaded, _ = trial_records(exp_dir)
    chosen = top_trials(loaded, metric, k)
    t0, folder = time.perf_counter(), exp_dir / CONFIRM_DIR
    rows: list[Candidate] = []
    for i, x in enumerate(chosen, 1):
        scores, paths = [x.record.score(metric)], []
        for r in range(repeats):
            log(f"confirm: trial {_name(x)} ({i} of {len(chosen)}), training {r + 1} of {repeats} again")
            rec, path = repeat(x, r, folder)
            score = rec.score(metric)
            scores.append(0.0 if score is None else score)  # the metric absent from a repeat: counted as nothing
            paths.append(str(path))
        rows.append(Candidate(trial_id=_name(x), summary=x.record.summary, mmacs=x.record.mmacs, scores=scores,
                              mean=sum(scores) / len(scores), records=paths))
    best = max(zip(rows, chosen), key=lambda rx: (rx[0].mean, *rank(metric)(rx[1])[1:]))
    row, x = best
    rec = x.record
    single = top.trial_id or (Path(top.record).parent.name if top.record else None)
    conf = Confirmation(metric=metric, repeats=repeats, candidates=rows, best_single=single,
                        seconds=round(time.perf_counter() - t0, 1))
    note = (f"chosen by the mean {metric} of {repeats + 1} trainings among the top {len(rows)} trials: "
            f"{row.mean:.4f} ({', '.join(f'{s:.4f}' for s in row.scores)})"
            + ("" if row.trial_id == single else f"; the best single trial was {single}"))
    return dataclasses.replace(top, arch=rec.arch, summary=rec.summary, trial_id=rec.trial_id,
                               parameter_id=rec.parameter_id, sequence_id=rec.sequence_id, metrics=rec.metrics,
                               dataset=rec.dataset, data=rec.data, train=rec.train, record=x.path, note=note,
                               confirmation=conf)
