"""Deciding between training settings from repeated runs (notebook 04's optimizer study).

The rule: a setting *beats* another only when the gap between their mean scores exceeds
the larger of their two spreads over seeds (best minus worst run). A gap smaller than what
a change of seed alone produces is not evidence. :func:`decide` applies it to a claim
("Adam at 1e-3") and returns one of three verdicts: confirmed, corrected or undecided.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

Setting = tuple[str, float]   # (optimizer name, learning rate)
OUTCOMES = ("confirmed", "corrected", "undecided")


@dataclass(frozen=True)
class Verdict:
    """What the study decided, and the optimizer and learning rate the main run uses."""

    outcome: str                 # one of OUTCOMES
    optimizer: str
    lr: float
    beaten_by: tuple[Setting, ...] = ()   # settings that beat the claim (corrected)
    claim_beats: tuple[Setting, ...] = ()  # settings the claim beats (confirmed)


def mean(scores: list[float]) -> float:
    return sum(scores) / len(scores)


def spread(scores: list[float]) -> float:
    """Best minus worst score over the seeds of one setting."""
    return max(scores) - min(scores)


def beats(a: list[float], b: list[float]) -> bool:
    """True when scores ``a`` beat scores ``b``: the gap between the means exceeds the
    larger of the two spreads over seeds."""
    return mean(a) - mean(b) > max(spread(a), spread(b))


def decide(scores: dict[Setting, list[float]], claim: Setting, range_test_lr: float) -> Verdict:
    """The verdict on ``claim`` from ``scores`` (each setting's score per seed, higher is better):

    - **corrected**: some settings beat the claim; the main run takes the one of them with
      the highest mean;
    - **confirmed**: nothing beats the claim and the claim beats at least one setting (the
      study can tell settings apart at this budget, and the claim holds);
    - **undecided**: the claim neither beats nor is beaten by any setting: at this budget the
      seed noise hides every difference. The claim's optimizer stays, and the learning rate
      is ``range_test_lr`` (the range test's suggestion), kept within the rates the study
      tried for that optimizer, so the main run never uses a rate no run has tried.
    """
    if claim not in scores:
        raise ValueError(f"the claim {claim} is not among the settings studied")
    for setting, values in scores.items():
        if len(values) < 2 or not all(math.isfinite(v) for v in values):
            raise ValueError(f"{setting}: need finite scores from at least two seeds to measure the spread "
                             f"(got {values})")
    others = {s: v for s, v in scores.items() if s != claim}
    beaten_by = tuple(s for s, v in others.items() if beats(v, scores[claim]))
    claim_beats = tuple(s for s, v in others.items() if beats(scores[claim], v))
    if beaten_by:
        best = max(beaten_by, key=lambda s: mean(scores[s]))
        return Verdict("corrected", best[0], best[1], beaten_by=beaten_by)
    if claim_beats:
        return Verdict("confirmed", claim[0], claim[1], claim_beats=claim_beats)
    tried = [lr for name, lr in scores if name == claim[0]]
    return Verdict("undecided", claim[0], min(max(range_test_lr, min(tried)), max(tried)))
