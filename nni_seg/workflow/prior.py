"""A narrower search space from measured trainings: the choices that lose, found the way design-space
refinement does it (Radosavovic et al., "Designing Network Design Spaces", 2020: sample models, compare the
score distributions of each design choice, keep the good region).

For every label, only the trainings where the label changes the network count (an inert label, e.g.
``enc_join`` when ``enc_op2`` is ``none``, is left out). Each value is compared with the rest of its
label's values (Welch's z of the gap between their mean scores; at least ``min_n`` trainings on each side),
and excluded when it is significantly worse after a Bonferroni correction over every (label, value) tested:
z above the normal quantile of 1 - ``alpha`` / tests. (Comparing with the label's *best* value instead
excluded values on synthetic scores with no effect at all: picking the best of five inflates the gap.)
Many noisy trainings of many architectures then say the choice costs score on average, so random draws that avoid it find good
networks sooner. It is a statement about the data and proxy the trainings used (a CamVid prior at 48x64 x 3
epochs is no rule for other images or a longer training), and the trainings need not be random draws (a
tuner's proposals are correlated), which the test does not model.

:func:`derive_exclusions` is what ``experiments/camvid/search_cpu.yml``'s ``exclude`` is made from
(``bench/space_prior.py`` re-creates it from the bench's cache; a test keeps the two equal), and
:class:`nni_seg.experiment.tuners.GuidedTuner` applies an ``exclude`` to any tuner's search space.
"""
from __future__ import annotations

import dataclasses
import math
import statistics
from dataclasses import dataclass

from ..space.arch import CHOICES, Arch, active_labels


@dataclass(frozen=True)
class ChoiceEvidence:
    """One value of one label against the rest of that label's values, over the trainings where it is active."""
    label: str
    value: object
    n: int
    mean: float
    rest_n: int
    rest_mean: float
    z: float  # (rest's mean - this mean) / Welch's standard error: > 0 when the value scores lower
    tested: bool  # enough trainings on both sides
    excluded: bool = False


def choice_evidence(samples: list[tuple[Arch, float]], alpha: float = 0.05, min_n: int = 15) -> list[ChoiceEvidence]:
    """Per (label, value) with trainings: its evidence against the rest of the label, excluded or not."""
    from statistics import NormalDist

    out = []
    scored = [(arch, score, set(active_labels(arch))) for arch, score in samples]  # once per architecture
    for label in CHOICES:
        groups: dict = {}
        for arch, score, active in scored:
            if label in active:
                groups.setdefault(arch[label], []).append(score)
        for value, scores in groups.items():
            rest = [s for other, group in groups.items() if other != value for s in group]
            tested = len(scores) >= min_n and len(rest) >= min_n
            z = _welch_z(rest, scores) if tested else 0.0
            out.append(ChoiceEvidence(label, value, len(scores), statistics.mean(scores), len(rest),
                                      statistics.mean(rest) if rest else math.nan, z, tested))
    tests = sum(e.tested for e in out)
    threshold = NormalDist().inv_cdf(1 - alpha / tests) if tests else math.inf
    return [dataclasses.replace(e, excluded=e.tested and e.z > threshold) for e in out]


def _welch_z(a: list[float], b: list[float]) -> float:
    """(mean a - mean b) / Welch's standard error."""
    gap = statistics.mean(a) - statistics.mean(b)
    se = math.sqrt(statistics.variance(a) / len(a) + statistics.variance(b) / len(b))
    return gap / se if se > 0 else (math.inf if gap > 0 else 0.0)


def derive_exclusions(samples: list[tuple[Arch, float]], alpha: float = 0.05, min_n: int = 15) -> dict[str, list]:
    """label -> values to leave out of the search, in the space's order (labels with none left out). A
    label never loses all its values (each is tested against the others, so not all can be worse)."""
    excluded: dict[str, set] = {}
    for e in choice_evidence(samples, alpha, min_n):
        if e.excluded:
            excluded.setdefault(e.label, set()).add(e.value)
    return {label: [v for v in CHOICES[label] if v in excluded[label]] for label in CHOICES if label in excluded}


def evidence_table(evidence: list[ChoiceEvidence]) -> str:
    """Markdown: every value of every label with its count, mean, gap to the rest of its label and z."""
    lines = ["| label | value | trainings | mean score | the label's other values: trainings, mean | gap | z | excluded |",
             "|---|---|---|---|---|---|---|---|"]
    for e in evidence:
        z = f"{e.z:.1f}" if e.tested else "too few"
        lines.append(f"| {e.label} | {e.value} | {e.n} | {e.mean:.4f} | {e.rest_n}, {e.rest_mean:.4f} | "
                     f"{e.rest_mean - e.mean:.4f} | {z} | {'yes' if e.excluded else ''} |")
    return "\n".join(lines)


