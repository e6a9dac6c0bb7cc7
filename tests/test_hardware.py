"""seglab.hardware: the per-machine speed settings are chosen from what the CPU reports,
never blindly, and none of them changes the numbers a model computes."""
import platform

import pytest
import torch
import torch.nn.functional as F

from seglab import hardware
from seglab.evaluation import evaluate
from seglab.inference import prepare_model
from seglab.errors import SeglabError
from seglab.models import UNet, fold_batchnorm


@pytest.fixture
def fresh_bf16_choice(monkeypatch):
    """bf16_choice is decided once per process; these tests decide it again."""
    monkeypatch.delenv("SEGLAB_CPU_BF16", raising=False)
    hardware.bf16_choice.cache_clear()
    yield
    hardware.bf16_choice.cache_clear()


def _fake_cpu(monkeypatch, bf16: bool, amx: bool, fp32_s: float = 1.0, bf16_s: float = 1.0) -> list:
    timed = []
    monkeypatch.setattr(hardware, "cpu_bf16_supported", lambda: bf16)
    monkeypatch.setattr(hardware, "cpu_amx_supported", lambda: amx)
    monkeypatch.setattr(hardware, "time_conv_block", lambda: timed.append(1) or {"fp32": fp32_s, "bf16": bf16_s})
    return timed


@pytest.mark.parametrize("bf16, amx, fp32_s, bf16_s, expected", [
    (False, False, 1.0, 0.1, None),         # AVX2: emulated bf16 (11x slower), never timed
    (True, True, 0.1, 1.0, "bfloat16"),     # AMX: about 3x faster, not timed
    (True, False, 0.36, 0.58, None),        # AVX512-BF16, timed slower (the Xeon: 359 vs 577 ms)
    (True, False, 0.54, 0.28, "bfloat16"),  # AVX512-BF16, timed faster (the AMD EPYC: 539 vs 283 ms)
    (True, False, 1.1, 1.0, None),          # a 10 % edge is within timing noise: stay in fp32
])
def test_bf16_autocast_is_chosen_only_where_it_makes_convolutions_faster(
        monkeypatch, fresh_bf16_choice, bf16, amx, fp32_s, bf16_s, expected):
    timed = _fake_cpu(monkeypatch, bf16, amx, fp32_s, bf16_s)
    for training in (True, False):
        settings = hardware.choose_settings("cpu", training=training)
        assert settings.amp_dtype == expected and settings.channels_last and settings.fold_batchnorm
    assert len(timed) == (1 if bf16 and not amx else 0)     # timed once per process, only when undecided


@pytest.mark.parametrize("bf16, amx, fp32_s, bf16_s, words", [
    (False, False, 1.0, 1.0, "fp32: no native bf16"),
    (True, True, 1.0, 1.0, "bf16: AMX"),
    (True, False, 0.54, 0.28, "bf16: a small convolution block took 540.0 ms in fp32, 280.0 ms in bf16 (1.93x"),
    (True, False, 0.36, 0.58, "fp32: a small convolution block took 360.0 ms in fp32"),
])
def test_seglab_info_says_why_it_chose_its_cpu_precision(monkeypatch, fresh_bf16_choice, bf16, amx, fp32_s, bf16_s,
                                                          words):
    _fake_cpu(monkeypatch, bf16, amx, fp32_s, bf16_s)
    assert hardware.bf16_reason().startswith(words)
    monkeypatch.setenv("SEGLAB_CPU_BF16", "0")
    hardware.bf16_choice.cache_clear()
    assert hardware.bf16_reason() == "fp32: set by SEGLAB_CPU_BF16"


def test_a_misspelt_bf16_override_is_an_error_that_names_the_variable(monkeypatch, fresh_bf16_choice):
    monkeypatch.setenv("SEGLAB_CPU_BF16", "ture")
    with pytest.raises(SeglabError, match="SEGLAB_CPU_BF16='ture'.*1.*0"):
        hardware.choose_settings("cpu")


@pytest.mark.parametrize("value, expected", [("1", "bfloat16"), ("on", "bfloat16"), ("0", None), ("off", None)])
def test_the_environment_overrides_the_timed_bf16_choice(monkeypatch, fresh_bf16_choice, value, expected):
    timed = _fake_cpu(monkeypatch, True, False, fp32_s=0.5, bf16_s=1.0 if expected else 0.1)
    monkeypatch.setenv("SEGLAB_CPU_BF16", value)
    assert hardware.choose_settings("cpu").amp_dtype == expected
    assert not timed


def test_the_bf16_timing_measures_both_precisions_on_this_cpu():
    seconds = hardware.time_conv_block(repeats=1)
    assert set(seconds) == {"fp32", "bf16"} and all(0 < s < 60 for s in seconds.values())


@pytest.mark.parametrize("context", [torch.no_grad, torch.inference_mode])
def test_the_bf16_timing_works_when_first_asked_while_scoring(context):
    # evaluation code often meets choose_settings first inside no_grad or inference_mode,
    # where a backward pass would fail
    with context():
        seconds = hardware.time_conv_block(repeats=1)
    assert all(s > 0 for s in seconds.values())


@pytest.mark.parametrize("bf16, expected", [(True, "bfloat16"), (False, "float16")])
def test_cuda_gets_mixed_precision_and_the_cudnn_autotuner(monkeypatch, bf16, expected):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: bf16)
    settings = hardware.choose_settings("cuda")
    assert settings.amp_dtype == expected and settings.channels_last and settings.cudnn_benchmark
    assert not settings.fold_batchnorm and not settings.reuse_memory     # CPU-only measures
    assert not hardware.choose_settings("cuda", fast=False).cudnn_benchmark


def test_prepare_model_switches_the_cudnn_autotuner_on_only_when_asked(monkeypatch):
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)
    prepare_model(UNet(3, 4, width=4, depth=2), hardware.SpeedSettings(channels_last=True))
    assert torch.backends.cudnn.benchmark is False
    prepare_model(UNet(3, 4, width=4, depth=2), hardware.SpeedSettings(cudnn_benchmark=True))
    assert torch.backends.cudnn.benchmark is True


def test_fast_off_gives_the_plain_fp32_nchw_loop():
    plain = hardware.choose_settings("cpu", fast=False)
    assert plain == hardware.SpeedSettings()
    assert plain.amp_dtype is None and not plain.channels_last and not plain.reuse_memory
    assert not plain.fold_batchnorm


def test_cpu_class_names_the_capability_and_bf16_support():
    label = hardware.cpu_class()
    assert torch.backends.cpu.get_cpu_capability() in label
    assert ("bf16" in label) and (("no bf16" in label) != hardware.cpu_bf16_supported())
    assert ("AMX" in label) == hardware.cpu_bf16_supported()   # '+AMX' or ', no AMX' once bf16 is there


def test_cpu_info_names_the_x86_generation_of_the_first_processor(tmp_path, monkeypatch):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nvendor_id\t: AuthenticAMD\ncpu family\t: 26\nmodel\t\t: 2\n"
                       "model name\t: AMD EPYC\nflags\t\t: fpu avx512f\n\n"
                       "processor\t: 1\ncpu family\t: 99\nmodel\t\t: 9\nmodel name\t: Other\n")
    read = hardware.read_cpuinfo
    assert read(tmp_path / "missing") == {}
    monkeypatch.setattr(hardware, "read_cpuinfo", lambda: read(cpuinfo))
    info = hardware.cpu_info()
    assert (info["model"], info["generation"]) == ("AMD EPYC", "x86 family 26 model 2")
    assert hardware.cpu_class().startswith("AMD EPYC, x86 family 26 model 2 (")
    monkeypatch.setattr(hardware, "read_cpuinfo", lambda: {})   # no /proc/cpuinfo (macOS, Windows)
    assert hardware.cpu_info()["generation"] == ""
    assert ", x86" not in hardware.cpu_class()


@pytest.mark.skipif(not hardware.read_cpuinfo().get("flags"), reason="needs a Linux /proc/cpuinfo with flags")
def test_amx_is_detected_as_the_kernel_reports_it():
    # torch moved its AMX probe between releases; seglab once looked in the old place only and
    # called an AMX Xeon 'no AMX' (bf16 was still chosen, by timing, but the label was wrong)
    assert hardware.cpu_amx_supported() == ("amx_tile" in hardware.read_cpuinfo()["flags"].split())


def test_amx_falls_back_to_the_cpu_flags_where_torch_has_no_probe(tmp_path, monkeypatch):
    cpuinfo = tmp_path / "cpuinfo"
    read = hardware.read_cpuinfo
    monkeypatch.delattr(torch.cpu, "_is_amx_tile_supported", raising=False)
    for flags, expected in (("fpu avx512f avx512_bf16 amx_bf16 amx_tile", True), ("fpu avx512f avx512_bf16", False)):
        cpuinfo.write_text(f"processor\t: 0\nflags\t\t: {flags}\n")
        monkeypatch.setattr(hardware, "read_cpuinfo", lambda: read(cpuinfo))
        assert hardware.cpu_amx_supported() is expected


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


def _model_with_trained_batchnorm(stem_stride: int = 1) -> UNet:
    torch.manual_seed(0)
    model = UNet(3, 5, width=4, depth=2, stem_stride=stem_stride)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):   # statistics and scales far from their defaults
                m.running_mean.normal_(0, 0.5)
                m.running_var.uniform_(0.2, 3.0)
                m.weight.normal_(1.0, 0.3)
                m.bias.normal_(0.0, 0.3)
    return model


@pytest.mark.parametrize("stem_stride", [1, 2])
def test_folding_batchnorm_keeps_the_logits_and_leaves_the_model_alone(stem_stride):
    model = _model_with_trained_batchnorm(stem_stride).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    folded = fold_batchnorm(model)
    assert model.training and not folded.training
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    x = torch.randn(2, 3, 33, 47)
    with torch.no_grad():
        assert torch.allclose(folded(x), model.eval()(x), atol=1e-4)


def test_inference_settings_score_a_model_as_the_plain_loop_does():
    model = _model_with_trained_batchnorm()
    dataset = [(torch.randn(3, 24, 32), torch.randint(0, 5, (24, 32))) for _ in range(4)]
    fast = hardware.SpeedSettings(channels_last=True, fold_batchnorm=True)
    plain = evaluate(model, dataset, 5, None, batch_size=2)
    folded = evaluate(prepare_model(model, fast), dataset, 5, None, batch_size=2, settings=fast)
    assert folded["confusion"] == plain["confusion"] and abs(folded["loss"] - plain["loss"]) < 1e-4
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())   # still trainable
