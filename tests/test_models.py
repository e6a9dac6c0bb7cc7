"""The U-Net: shapes, switches, parameter counts."""
import pytest
import torch

from seglab.models import DoubleConv, UNet, count_parameters, match_and_concat


@pytest.mark.parametrize("size", [(64, 64), (45, 61), (33, 97), (17, 17)])
def test_output_has_the_input_size_for_any_height_and_width(size):
    model = UNet(3, 11, width=4, depth=3).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, *size)).shape == (1, 11, *size)


@pytest.mark.parametrize("switch", [dict(bilinear=False), dict(skip=False), dict(batchnorm=False),
                                    dict(stem_stride=2), dict(depth=1)])
def test_every_switch_builds_a_working_network(switch):
    model = UNet(1, 2, width=4, depth=switch.pop("depth", 2), **switch).eval()
    with torch.no_grad():
        assert model(torch.randn(2, 1, 30, 41)).shape == (2, 2, 30, 41)


def test_config_rebuilds_the_same_architecture():
    model = UNet(3, 11, width=8, depth=3, bilinear=False, skip=False)
    clone = UNet.from_config(model.config)
    clone.load_state_dict(model.state_dict())
    assert count_parameters(clone) == count_parameters(model)


def test_skip_connections_add_decoder_parameters():
    assert count_parameters(UNet(width=8, skip=True)) > count_parameters(UNet(width=8, skip=False))


def test_double_conv_keeps_height_and_width():
    assert DoubleConv(3, 8)(torch.randn(2, 3, 13, 17)).shape == (2, 8, 13, 17)


def test_match_and_concat_pads_or_crops_to_the_skip_size():
    skip = torch.randn(1, 4, 45, 61)
    assert match_and_concat(torch.randn(1, 4, 44, 60), skip).shape == (1, 8, 45, 61)
    assert match_and_concat(torch.randn(1, 4, 46, 62), skip).shape == (1, 8, 45, 61)


def test_course_unet_has_the_parameter_count_the_notebooks_quote():
    # width 16, depth 4, bilinear, BatchNorm: the lessons recipe (notebook 03 builds it)
    assert count_parameters(UNet(3, 11, width=16)) == 1_812_187


def test_stride2_model_upsamples_its_logits_in_fp32_under_bf16_autocast():
    # The upsampling of the logits runs in fp32 (cheaper there than in bf16 channels_last),
    # so the output is fp32 at the input's size and agrees with the same model in fp32.
    torch.manual_seed(0)
    model = UNet(width=8, depth=2, stem_stride=2).eval()
    x = torch.randn(2, 3, 48, 64).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        reference = model(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            logits = model(x)
    assert logits.dtype == torch.float32 and logits.shape == (2, 11, 48, 64)
    assert (logits - reference).abs().max() < 0.1 * reference.abs().max()
