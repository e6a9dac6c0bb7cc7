"""Named training recipes: the settings behind each figure the course quotes.

A recipe is a set of :class:`seglab.TrainConfig` overrides; ``seglab train --recipe NAME``
starts from it and any option given on the command line wins. A key that is not a
training option is refused. Why each value is what it is, and the runs that decided it:
``benchmarks/RESULTS.md``, section "The recipes' settings and the runs behind them".
"""
from __future__ import annotations

from .errors import SeglabError

RECIPES: dict[str, dict] = {
    # The course's CamVid recipe (notebook 04): small enough for a laptop CPU (benchmarks/RESULTS.md).
    "course": dict(dataset="camvid", size=(180, 240), crop=(176, 240), width=16, epochs=30,
                   batch_size=8, optimizer="adam", lr=1e-3),
    # The best model a 2-core CPU trains in 15 minutes: cheap steps (a stride-2 stem), sqrt class
    # weights partly taken back, three test-time scales; every value chosen on val (benchmarks/RESULTS.md).
    # The budget picks the input size from the machine's measured pace (seglab/sizing.py).
    "budget15": dict(dataset="camvid", size=(240, 320), crop=(224, 320), stem_stride=2, width=16,
                     budget=900.0, sizing="auto", epochs=1000, batch_size=8, optimizer="adam", lr=2e-3,
                     class_weights="sqrt", rebalance=0.75, scale=(0.9, 1.2), color_jitter=0.1,
                     val_every=10, eval_scales=(0.75, 0.875, 1.0)),
    # The shipped model (seglab/pretrained/MODEL_CARD.md): the labels' own resolution, width 24,
    # the training split only so that val stays held out (widths compared in benchmarks/RESULTS.md).
    "pretrained": dict(dataset="camvid", size=(360, 480), crop=(352, 480), width=24, epochs=112,
                       batch_size=8, optimizer="adam", lr=2e-3, class_weights="sqrt", rebalance=0.75,
                       train_splits=("train",), val_every=10),
    # ISBI 2012 EM membranes (notebook 07): the U-Net paper's augmentation (benchmarks/RESULTS.md).
    "isbi-em": dict(dataset="isbi-em", size=(256, 256), crop=(256, 256), width=16, epochs=60,
                    batch_size=4, optimizer="adam", lr=1e-3, loss="ce+dice", rotate=90.0, vflip=True,
                    elastic=40.0, color_jitter=0.1, scale=(0.8, 1.25)),
    # A smoke test: a few steps on a few images (CI, quick mode).
    "quick": dict(dataset="camvid", size=(90, 120), crop=(88, 120), width=8, epochs=1, max_steps=4,
                  batch_size=4, subset=16, val_subset=8),
}


def get_recipe(name: str) -> dict:
    """The overrides of recipe ``name`` (a copy), or a one-line error naming the choices."""
    if name not in RECIPES:
        raise SeglabError(f"unknown recipe {name!r}: choose one of {', '.join(RECIPES)}")
    return dict(RECIPES[name])
