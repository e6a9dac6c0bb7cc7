"""benchmarks/speed.py: its convolution ceiling counts the convolutions' own time, and only
theirs, so the ceiling it prints is what the convolutions allow, not a guess."""
import os
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

from script_import import load_script

speed = load_script(Path(__file__).resolve().parents[1] / "benchmarks" / "speed.py")


def test_convolution_time_counts_forward_and_backward_convolutions_and_nothing_else():
    x = torch.randn(2, 8, 64, 64)
    w = torch.randn(8, 8, 3, 3, requires_grad=True)
    big = torch.randn(2_000_000)

    def no_convolution():
        (big.exp() * 2).sum()

    def convolution_and_more():
        F.conv2d(x, w, padding=1).square().sum().backward()
        (big.exp() * 2).sum()

    conv, total = speed.convolution_seconds(no_convolution)
    assert conv == 0 and total > 0
    conv, total = speed.convolution_seconds(convolution_and_more)
    assert 0 < conv < total
    forward_only, _ = speed.convolution_seconds(lambda: F.conv2d(x, w.detach(), padding=1))
    assert conv > forward_only   # the backward convolutions are counted too


def test_the_profilers_log_lines_are_silenced_and_stderr_comes_back(capfd):
    with speed.quiet_stderr():
        os.write(2, b"profiler noise\n")
    os.write(2, b"after\n")
    print("visible", file=sys.stderr)
    err = capfd.readouterr().err
    assert "profiler noise" not in err and "after" in err and "visible" in err
