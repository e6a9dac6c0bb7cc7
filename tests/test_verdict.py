"""seglab.verdict, the rule behind notebook 04's optimizer study: a setting beats another
only when the gap between their means exceeds the larger of their spreads over seeds."""
import pytest

from seglab.verdict import beats, decide, mean, spread

CLAIM = ("adam", 1e-3)


def test_a_gap_smaller_than_the_seed_spread_is_not_a_win():
    assert not beats([0.30, 0.40], [0.28, 0.29])    # gap 0.065, spread 0.10
    assert beats([0.40, 0.41], [0.30, 0.32])         # gap 0.095, spread 0.02


def test_the_larger_of_the_two_spreads_is_the_yardstick():
    steady, noisy = [0.40, 0.40], [0.20, 0.36]       # gap 0.12, spreads 0 and 0.16
    assert not beats(steady, noisy)


def test_mean_and_spread_of_seeds():
    assert mean([0.2, 0.4]) == pytest.approx(0.3)
    assert spread([0.3, 0.1, 0.2]) == pytest.approx(0.2)


def test_confirmed_when_nothing_beats_the_claim_and_it_beats_something():
    scores = {CLAIM: [0.40, 0.42], ("adam", 2e-3): [0.41, 0.43], ("sgd-momentum", 0.03): [0.20, 0.22]}
    verdict = decide(scores, CLAIM, range_test_lr=0.02)
    assert verdict.outcome == "confirmed"
    assert (verdict.optimizer, verdict.lr) == CLAIM
    assert verdict.claim_beats == (("sgd-momentum", 0.03),)


def test_corrected_names_the_best_setting_that_beats_the_claim():
    scores = {CLAIM: [0.30, 0.31], ("adam", 2e-3): [0.40, 0.41], ("adam", 4e-3): [0.44, 0.45],
              ("sgd-momentum", 0.03): [0.10, 0.50]}  # highest spread: beats nothing
    verdict = decide(scores, CLAIM, range_test_lr=0.02)
    assert verdict.outcome == "corrected"
    assert (verdict.optimizer, verdict.lr) == ("adam", 4e-3)
    assert set(verdict.beaten_by) == {("adam", 2e-3), ("adam", 4e-3)}


def test_undecided_lets_the_range_test_choose_within_the_rates_tried():
    scores = {CLAIM: [0.20, 0.40], ("adam", 2e-3): [0.25, 0.45], ("sgd-momentum", 0.03): [0.22, 0.38]}
    verdict = decide(scores, CLAIM, range_test_lr=1.5e-3)
    assert verdict.outcome == "undecided"
    assert (verdict.optimizer, verdict.lr) == ("adam", 1.5e-3)
    # a suggestion above every Adam rate the study tried is held to the highest one
    assert decide(scores, CLAIM, range_test_lr=0.02).lr == 2e-3
    assert decide(scores, CLAIM, range_test_lr=1e-5).lr == 1e-3


def test_one_seed_cannot_measure_a_spread():
    with pytest.raises(ValueError, match="at least two seeds"):
        decide({CLAIM: [0.3], ("adam", 2e-3): [0.4, 0.5]}, CLAIM, 1e-3)


def test_the_claim_must_be_studied():
    with pytest.raises(ValueError, match="not among the settings"):
        decide({("adam", 2e-3): [0.4, 0.5]}, CLAIM, 1e-3)
