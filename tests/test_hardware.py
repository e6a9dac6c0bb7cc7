"""seglab.hardware: the per-machine speed settings are chosen from what the CPU reports,
never blindly, and none of them changes the numbers a model computes."""
import platform

import pytest
import torch
import torch.nn.functional as F

from seglab import hardware
from seglab.engine import prepare_model
from seglab.models import UNet


def test_bf16_autocast_is_chosen_only_where_the_cpu_has_native_bf16(monkeypatch):
    monkeypatch.setattr(hardware, "cpu_bf16_supported", lambda: False)
    avx2 = hardware.choose_settings("cpu")
    assert avx2.amp_dtype is None and avx2.channels_last
    monkeypatch.setattr(hardware, "cpu_bf16_supported", lambda: True)
    amx = hardware.choose_settings("cpu")
    assert amx.amp_dtype == "bfloat16" and amx.channels_last


def test_fast_off_gives_the_plain_fp32_nchw_loop():
    plain = hardware.choose_settings("cpu", fast=False)
    assert plain == hardware.SpeedSettings()
    assert plain.amp_dtype is None and not plain.channels_last and not plain.reuse_memory


def test_cpu_class_names_the_capability_and_bf16_support():
    label = hardware.cpu_class()
    assert torch.backends.cpu.get_cpu_capability() in label
    assert ("bf16" in label) and (("no bf16" in label) != hardware.cpu_bf16_supported())


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc only")
def test_memory_reuse_switches_on_and_back_on_glibc():
    assert hardware.choose_settings("cpu").reuse_memory
    try:
        assert hardware.reuse_freed_memory(True) is True
    finally:
        assert hardware.reuse_freed_memory(False) is True


def test_memory_reuse_does_not_change_what_a_training_step_computes():
    def one_step() -> tuple[float, torch.Tensor]:
        torch.manual_seed(0)
        model = UNet(3, 4, width=4, depth=2)
        opt = torch.optim.Adam(model.parameters(), 1e-2)
        x, y = torch.randn(2, 3, 32, 48), torch.randint(0, 4, (2, 32, 48))
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        return loss.item(), torch.cat([p.detach().flatten() for p in model.parameters()])

    try:
        hardware.reuse_freed_memory(False)
        loss_off, weights_off = one_step()
        hardware.reuse_freed_memory(True)
        loss_on, weights_on = one_step()
    finally:
        hardware.reuse_freed_memory(False)
    assert loss_on == loss_off and torch.equal(weights_on, weights_off)


def test_prepare_model_applies_the_memory_layout():
    settings = hardware.SpeedSettings(channels_last=True)
    model = prepare_model(UNet(3, 4, width=4, depth=2), settings)
    conv = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
