"""benchmarks/precision.py: the fp32 / bf16 comparison trains each seed once per precision,
under the settings it names, and scores every model the same way."""
import os
from pathlib import Path

from script_import import load_script

from seglab import hardware

precision = load_script(Path(__file__).resolve().parents[1] / "benchmarks" / "precision.py")


def test_training_comparison_trains_every_seed_in_fp32_and_in_bf16(synthetic_camvid, tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("SEGLAB_CPU_BF16", raising=False)
    chosen = []
    real_fit = precision.fit

    def recording_fit(config):
        run = real_fit(config)
        chosen.append((config.seed, run.settings.amp_dtype))
        return run

    monkeypatch.setattr(precision, "fit", recording_fit)
    scores = precision.compare_training(1, [0, 1], str(synthetic_camvid), tmp_path, recipe_name="quick")
    assert chosen == [(0, None), (0, "bfloat16"), (1, None), (1, "bfloat16")]
    assert [len(scores["fp32"]), len(scores["bf16"])] == [2, 2]
    assert all(r["split"] == "val" and 0 <= r["miou"] <= 1 for runs in scores.values() for r in runs)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bf16-seed0", "bf16-seed1", "fp32-seed0", "fp32-seed1"]
    out = capsys.readouterr().out
    assert "bf16 - fp32 per seed" in out and "fp32 between seeds" in out
    assert "SEGLAB_CPU_BF16" not in os.environ   # the override is not left behind
    hardware.bf16_choice.cache_clear()
