"""Class weights and losses against CamVid's imbalance."""
import pytest
import torch

from seglab.losses import DiceLoss, class_weights, logit_offsets

# pixel shares in the order: two common classes, the median one, two rare ones
FREQUENCIES = torch.tensor([0.40, 0.30, 0.20, 0.08, 0.02])


def test_median_weights_give_every_class_the_same_total_weight():
    w = class_weights(FREQUENCIES, "median", clip=None)
    totals = w * FREQUENCIES
    assert torch.allclose(totals, torch.full_like(totals, 0.20))


def test_sqrt_weights_are_the_square_root_of_median_weights():
    assert torch.allclose(class_weights(FREQUENCIES, "sqrt", clip=None),
                          class_weights(FREQUENCIES, "median", clip=None).sqrt())


def test_a_class_absent_from_the_data_gets_weight_zero():
    frequencies = torch.tensor([0.5, 0.5, 0.0])
    for method in ("median", "sqrt", "inverse", "none"):
        assert class_weights(frequencies, method)[2] == 0.0, method


def test_clip_caps_the_weight_of_a_nearly_absent_class():
    w = class_weights(torch.tensor([0.5, 0.4999, 0.0001]), "median", clip=10.0)
    assert w.max() == pytest.approx(10.0)


def test_an_unknown_weighting_is_refused_with_the_choices():
    with pytest.raises(ValueError, match="sqrt"):
        class_weights(FREQUENCIES, "sqaure")


def test_void_pixels_do_not_change_the_dice_loss():
    logits = torch.randn(1, 3, 4, 4)
    target = torch.randint(0, 3, (1, 4, 4))
    with_void = target.clone()
    with_void[0, 0] = 255
    masked_logits = logits.clone()
    masked_logits[0, :, 0] = torch.randn(3, 4) * 10  # whatever the model says on void rows
    loss = DiceLoss(ignore_index=255)
    assert loss(logits, with_void) == pytest.approx(loss(masked_logits, with_void).item())



def test_full_rebalance_turns_weighted_logits_back_into_unweighted_ones():
    # The weighted loss's optimum is the unweighted logits plus log(weight); the offsets remove it.
    weights = class_weights(FREQUENCIES, "sqrt", clip=None)
    plain = torch.randn(4, 5)
    weighted = plain + weights.log()
    assert torch.allclose(weighted + logit_offsets(weights, 1.0), plain, atol=1e-6)
    assert torch.allclose(weighted + logit_offsets(weights, 0.5), plain + 0.5 * weights.log(), atol=1e-6)
    assert torch.equal(logit_offsets(weights, 0.0), torch.zeros(5))


def test_rebalance_moves_pixels_from_rare_classes_to_common_ones():
    weights = class_weights(FREQUENCIES, "median", clip=None)
    offsets = logit_offsets(weights, 0.75)
    assert offsets[0] > 0 > offsets[-1]               # common class up, rare class down
    assert offsets[2] == pytest.approx(0.0)           # the median class keeps its logits


def test_an_absent_class_gets_no_logit_offset():
    offsets = logit_offsets(torch.tensor([0.5, 2.0, 0.0]), 1.0)
    assert torch.isfinite(offsets).all() and offsets[2] == 0.0


def test_a_rebalance_outside_zero_to_one_is_refused():
    with pytest.raises(ValueError, match="between 0 and 1"):
        logit_offsets(torch.ones(3), 1.5)
