"""The pretrained model shipped inside the package: small, loadable offline, and as good
as its model card says (re-scored on the real test set when it is present)."""
import json
import re

import pytest
import torch

import seglab
from seglab.checkpoint import PRETRAINED_DIR, PRETRAINED_FILE
from seglab.evaluation import evaluate_checkpoint
from seglab.hardware import SpeedSettings


def card_figures() -> dict:
    text = (PRETRAINED_DIR / "MODEL_CARD.md").read_text()
    return json.loads(re.search(r"<!-- measured.*?\n(\{.*\})\n-->", text, re.S).group(1))


def test_the_pretrained_model_ships_inside_the_package_and_is_small():
    assert PRETRAINED_FILE.is_file()
    assert PRETRAINED_FILE.stat().st_size <= 10 * 1024 * 1024


def test_load_pretrained_needs_one_call_and_no_network():
    model, state = seglab.load_pretrained()
    assert state["dataset"] == "camvid" and "test" not in state["train_config"]["train_splits"]
    # stored in fp16 to stay small, handed out in fp32
    assert all(p.dtype == torch.float32 for p in model.parameters())
    with torch.no_grad():
        assert model(torch.randn(1, 3, 180, 240)).shape == (1, 11, 180, 240)


@pytest.mark.realdata
def test_model_card_figures_match_a_fresh_evaluation_on_the_test_set(real_camvid):
    card = card_figures()
    # fp32 on every CPU class, so a bf16-capable CI machine scores what the card measured;
    # folded BatchNorm and channels_last give the same logits about twice as fast
    fp32 = SpeedSettings(channels_last=True, fold_batchnorm=True)
    result = evaluate_checkpoint(PRETRAINED_FILE, "test", str(real_camvid), settings=fp32)
    assert result["images"] == 233 and result["resolution"] == [360, 480]
    assert result["miou"] == pytest.approx(card["test_miou"], abs=0.005)
    assert result["pixel_accuracy"] == pytest.approx(card["test_pixel_accuracy"], abs=0.005)
    for name, value in card["iou"].items():
        assert result["iou"][name] == pytest.approx(value, abs=0.005), name
