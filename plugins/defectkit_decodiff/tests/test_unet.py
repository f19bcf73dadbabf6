"""The deviation UNet: the issue's sizes, shapes, class conditioning and gating outputs."""

import pytest
import torch

from defectkit_decodiff.config import DecoDiffModelConfig
from defectkit_decodiff.unet import DeviationUNet, UNetOutput, UNetSettings


def settings(**options) -> UNetSettings:
    return UNetSettings.from_config(DecoDiffModelConfig(**options), in_channels=4, num_classes=3)


@pytest.mark.parametrize(
    ("size", "channels", "heads", "context"),
    [("XS", 64, 4, 128), ("S", 128, 4, 256), ("M", 192, 6, 384), ("L", 256, 8, 512), ("XL", 320, 12, 640)],
)
def test_sizes_match_the_issue(size, channels, heads, context):
    s = settings(model_size=size)
    assert (s.model_channels, s.num_heads, s.context_dim) == (channels, heads, context)
    assert (s.channel_mult, s.attention_resolutions) == ((1, 2, 4), (4, 2, 1))


@pytest.mark.parametrize("size", ["XS", "S"])
def test_small_sizes_run_on_a_tiny_latent(size):
    torch.manual_seed(0)
    model = DeviationUNet(settings(model_size=size, dropout=0.1)).eval()
    x = torch.randn(2, 4, 8, 8)
    out = model(x, torch.tensor([0, 9]), torch.tensor([0, 2]))
    assert out.shape == x.shape
    # the output convolution starts at zero (deviation 0: an untrained model changes nothing) ...
    assert out.abs().max() == 0
    # ... and with weights as after some training, the class changes the prediction
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.05)
    a = model(x, torch.tensor([3, 3]), torch.tensor([0, 0]))
    b = model(x, torch.tensor([3, 3]), torch.tensor([1, 1]))
    assert not torch.allclose(a, b)


def tiny(**options) -> DeviationUNet:
    base = {"model_size": "XS", "model_channels": 16, "num_heads": 2, "context_dim": 8, "channel_mult": [1, 2]}
    return DeviationUNet(settings(**base, **options))


def test_gating_outputs_have_the_right_shapes():
    torch.manual_seed(0)
    x = torch.randn(2, 4, 8, 8)
    t, y = torch.tensor([1, 2]), torch.tensor([0, 1])
    plain = tiny()(x, t, y, return_gate=True)
    assert isinstance(plain, UNetOutput) and plain.dod_gate is None and plain.skip_gates == []

    model = tiny(dod_gate=True, skip_gate=True)
    out = model(x, t, y, return_gate=True)
    assert out.deviation.shape == out.dod_gate.shape == x.shape
    assert ((out.dod_gate > 0) & (out.dod_gate < 1)).all()
    # one gate per skip connection: the input conv, 2 blocks x 2 levels, 1 downsample
    assert [a.shape[1:] for a in out.skip_gates] == [
        (32, 4, 4),
        (32, 4, 4),
        (16, 4, 4),
        (16, 8, 8),
        (16, 8, 8),
        (16, 8, 8),
    ]
    assert torch.equal(model(x, t, y), out.deviation)  # the gate multiplies the output either way


def test_dod_gate_multiplies_the_deviation():
    torch.manual_seed(0)
    model = tiny(dod_gate=True)
    torch.nn.init.normal_(model.out[-1].weight, std=0.1)
    x, t, y = torch.randn(1, 4, 8, 8), torch.tensor([1]), torch.tensor([0])
    with torch.no_grad():
        model.gate_head[2].weight.zero_()
        model.gate_head[2].bias.fill_(-30.0)  # gate ~ 0: the deviation is suppressed
        assert model(x, t, y).abs().max() < 1e-9


def test_reflect_padding_reaches_every_three_by_three_convolution():
    model = tiny(conv_padding="reflect")
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d) and m.kernel_size == (3, 3)]
    assert len(convs) > 10 and {c.padding_mode for c in convs} == {"reflect"}
    assert model(torch.randn(1, 4, 8, 8), torch.tensor([1]), torch.tensor([0])).shape == (1, 4, 8, 8)


def test_skip_gating_feeds_each_up_block_one_minus_alpha_times_its_skip():
    torch.manual_seed(0)
    model = tiny(skip_gate=True).eval()
    with torch.no_grad():
        for gate in model.skip_gates:
            torch.nn.init.normal_(gate.conv.weight, std=1.0)  # alphas that differ from place to place
            torch.nn.init.zeros_(gate.conv.bias)
    x, t, y = torch.randn(2, 4, 8, 8), torch.tensor([1, 2]), torch.tensor([0, 1])
    seen_gates, seen_inputs = [], []
    hooks = [g.register_forward_hook(lambda m, args, out: seen_gates.append((args[0], *out))) for g in model.skip_gates]
    blocks = [b for level in model.up for b in level]
    hooks += [b.register_forward_pre_hook(lambda m, args: seen_inputs.append(args[0])) for b in blocks]
    out = model(x, t, y, return_gate=True)
    for hook in hooks:
        hook.remove()
    assert len(seen_gates) == len(seen_inputs) == len(out.skip_gates)
    for (skip, gated, alpha), block_input, returned in zip(seen_gates, seen_inputs, out.skip_gates, strict=True):
        assert alpha.min() < 0.3 and alpha.max() > 0.7  # a real spread, not the near-open start
        torch.testing.assert_close(gated, (1 - alpha) * skip)
        torch.testing.assert_close(block_input[:, -skip.shape[1] :], gated)  # what the block gets is the gated skip
        assert torch.equal(alpha, returned)
    # a closed gate (alpha ~ 1) removes the skip path entirely
    with torch.no_grad():
        for gate in model.skip_gates:
            torch.nn.init.zeros_(gate.conv.weight)
            torch.nn.init.constant_(gate.conv.bias, 30.0)
    seen_inputs.clear()
    hooks = [b.register_forward_pre_hook(lambda m, args: seen_inputs.append(args[0])) for b in blocks]
    model(x, t, y)
    skips = [gate.conv.in_channels for gate in model.skip_gates]
    assert all(inp[:, -c:].abs().max() < 1e-6 for inp, c in zip(seen_inputs, skips, strict=True))


#: parameters of the official DeCo-Diff UNets (github farzad-bz/DeCo-Diff, models.py, 4 latent channels,
#: 15 classes), counted by building them; ours adds only the class embedding on the timestep embedding
OFFICIAL_PARAMETERS = {"XS": 24_749_636, "S": 98_831_492, "M": 222_245_572, "L": 394_991_876, "XL": 612_717_564}


@pytest.mark.parametrize("size", list(OFFICIAL_PARAMETERS))
def test_parameter_counts_match_the_official_unets(size):
    with torch.device("meta"):  # shapes only: XL's 613 M parameters need no memory
        model = DeviationUNet(UNetSettings.from_config(DecoDiffModelConfig(model_size=size), 4, 15))
    count = sum(p.numel() for p in model.parameters())
    assert count == pytest.approx(OFFICIAL_PARAMETERS[size], rel=0.01)


def test_light_attention_is_the_smaller_block():
    with torch.device("meta"):
        light = DeviationUNet(UNetSettings.from_config(DecoDiffModelConfig(model_size="XS", attention="light"), 4, 15))
    # 17.8 M against the official 24.7 M: no feed-forward, no 1x1 projections
    assert sum(p.numel() for p in light.parameters()) == pytest.approx(17_792_388, rel=0.001)
