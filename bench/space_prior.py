"""The CamVid search's prior: which choices lost on the equal-compute bench's trainings.

    git show 2182c77:bench/strategies_camvid/proxy_cache.json > /tmp/cache413.json   # the cache it was read from
    python -m bench.space_prior /tmp/cache413.json --out bench/results/strategies_camvid/prior \\
        --source "bench/strategies_camvid/proxy_cache.json at 2182c77"

(The shipped prior was read from the cache as it was before the narrowed search's own runs, 413 entries, 270
of them full trainings; the cache has grown since, and the test compares the config with ``samples.json``.)

Reads every architecture the bench trained at the proxy's full epochs (48x64, 3 epochs, CamVid val Dice;
rejected draws left out), compares each label's values over the trainings where the label is active
(:mod:`nni_seg.workflow.prior`: Welch's z against the label's other values, Bonferroni-corrected at alpha 0.05 over
every value tested, >= 15 trainings each side), and
writes ``samples.json`` (the (architecture, score) pairs used: the test that keeps
``experiments/camvid/search_cpu.yml``'s ``exclude`` equal to this derivation reads it), ``prior.md`` (the
evidence per value) and prints the ``exclude`` for the config. No training.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from nni_seg.config import schema
from bench.strategies import read_cache
from nni_seg.workflow.prior import choice_evidence, derive_exclusions, evidence_table
from nni_seg.config.schema import PriorSamples, ScoredArch

ALPHA, MIN_N = 0.05, 15


def samples_of(cache: Path) -> list[tuple[dict, float]]:
    full, entries = read_cache(cache)
    return [(e.arch, e.curve[-1]) for e in entries if e.epochs == full and not e.rejected]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("cache", type=Path)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--source", help="where the cache came from, for samples.json (default: its path)")
    a = ap.parse_args()
    samples = samples_of(a.cache)
    exclude = derive_exclusions(samples, ALPHA, MIN_N)
    a.out.mkdir(parents=True, exist_ok=True)
    source = f"{a.source or a.cache}: CamVid val Dice at the proxy's full epochs"
    schema.save(PriorSamples(source=source, alpha=ALPHA, min_n=MIN_N,
                             samples=[ScoredArch(arch, score) for arch, score in samples]), a.out / "samples.json")
    flow = json.dumps(exclude).replace('"', "")
    (a.out / "prior.md").write_text(
        f"Choices of the CamVid proxy's trainings ({len(samples)} architectures at 48x64, 3 epochs, val Dice; "
        f"from {a.source or a.cache}), each value against the rest of its label over the trainings where the label is active. "
        f"Excluded: worse than the rest of its label at alpha {ALPHA}, Bonferroni over every value tested, "
        f">= {MIN_N} trainings each side.\n\nexclude: {flow}\n\n"
        f"{evidence_table(choice_evidence(samples, ALPHA, MIN_N))}\n")
    print(f"{len(samples)} trainings; exclude: {flow}")


if __name__ == "__main__":
    main()
