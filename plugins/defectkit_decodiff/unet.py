"""The class-conditioned deviation UNet (OpenAI-style), with optional DoD- and skip-gating."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from defectkit_decodiff.config import MODEL_SIZES, DecoDiffModelConfig


@dataclass(frozen=True)
class UNetSettings:
    """Everything that fixes the UNet's parameter shapes."""

    in_channels: int
    num_classes: int
    model_channels: int
    num_heads: int
    context_dim: int
    channel_mult: tuple[int, ...] = (1, 2, 4)
    num_res_blocks: int = 2
    attention_resolutions: tuple[int, ...] = (4, 2, 1)
    dropout: float = 0.0
    dod_gate: bool = False
    skip_gate: bool = False
    conv_padding: str = "zeros"
    attention: str = "transformer"

    @classmethod
    def from_config(cls, config: DecoDiffModelConfig, in_channels: int, num_classes: int) -> UNetSettings:
        channels, heads, context = MODEL_SIZES[config.model_size]
        return cls(
            in_channels=in_channels,
            num_classes=num_classes,
            model_channels=config.model_channels or channels,
            num_heads=config.num_heads or heads,
            context_dim=config.context_dim or context,
            channel_mult=tuple(config.channel_mult),
            num_res_blocks=config.num_res_blocks,
            attention_resolutions=tuple(config.attention_resolutions),
            dropout=config.dropout,
            dod_gate=config.dod_gate,
            skip_gate=config.skip_gate,
            conv_padding=config.conv_padding,
            attention=config.attention,
        )


def _norm(channels: int) -> nn.GroupNorm:
    # 32 groups as in the paper's UNet, fewer for the narrow CPU-sized models
    return nn.GroupNorm(math.gcd(32, channels), channels)


def _conv3(channels: int, out_channels: int, padding_mode: str, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(channels, out_channels, 3, stride=stride, padding=1, padding_mode=padding_mode)


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding of (possibly fractional) timesteps: ``[B] -> [B, dim]``."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = t.float()[:, None] * freqs[None]
    embedding = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    return F.pad(embedding, (0, dim % 2))


class ResBlock(nn.Module):
    """GroupNorm-SiLU-conv twice, with the (timestep + class) embedding added in between."""

    def __init__(self, channels: int, out_channels: int, emb_dim: int, dropout: float, padding_mode: str) -> None:
        super().__init__()
        self.in_layers = nn.Sequential(_norm(channels), nn.SiLU(), _conv3(channels, out_channels, padding_mode))
        self.emb = nn.Sequential(nn.SiLU(), nn.Linear(emb_dim, out_channels))
        self.out_layers = nn.Sequential(
            _norm(out_channels), nn.SiLU(), nn.Dropout(dropout), _conv3(out_channels, out_channels, padding_mode)
        )
        nn.init.zeros_(self.out_layers[-1].weight)  # each block starts as the identity
        nn.init.zeros_(self.out_layers[-1].bias)
        self.skip = nn.Identity() if channels == out_channels else nn.Conv2d(channels, out_channels, 1)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.in_layers(x) + self.emb(emb)[:, :, None, None]
        return self.skip(x) + self.out_layers(h)


class AttentionBlock(nn.Module):
    """Self-attention over the positions, then cross-attention to the class token (the context)."""

    def __init__(self, channels: int, heads: int, context_dim: int) -> None:
        super().__init__()
        # heads of channels // heads each: XL's 320 channels and 12 heads give 12 x 26 (inner 312), projected back
        if channels < heads:
            raise ValueError(f"{channels} channels cannot feed {heads} attention heads")
        self.heads = heads
        inner = heads * (channels // heads)
        self.norm1, self.norm2 = _norm(channels), _norm(channels)
        self.qkv = nn.Linear(channels, 3 * inner)
        self.q = nn.Linear(channels, inner)
        self.kv = nn.Linear(context_dim, 2 * inner)
        self.proj1, self.proj2 = nn.Linear(inner, channels), nn.Linear(inner, channels)
        for proj in (self.proj1, self.proj2):
            nn.init.zeros_(proj.weight)
            nn.init.zeros_(proj.bias)

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, inner = x.shape
        return x.view(batch, length, self.heads, inner // self.heads).transpose(1, 2)

    def _merge(self, x: torch.Tensor) -> torch.Tensor:
        batch, heads, length, head_dim = x.shape
        return x.transpose(1, 2).reshape(batch, length, heads * head_dim)

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        batch, channels, height, width = x.shape
        h = self.norm1(x).flatten(2).transpose(1, 2)
        q, k, v = (self._split(part) for part in self.qkv(h).chunk(3, dim=-1))
        tokens = x.flatten(2).transpose(1, 2) + self.proj1(self._merge(F.scaled_dot_product_attention(q, k, v)))
        h = self.norm2(tokens.transpose(1, 2).reshape(batch, channels, height, width)).flatten(2).transpose(1, 2)
        k, v = (self._split(part) for part in self.kv(context).chunk(2, dim=-1))
        tokens = tokens + self.proj2(self._merge(F.scaled_dot_product_attention(self._split(self.q(h)), k, v)))
        return tokens.transpose(1, 2).reshape(batch, channels, height, width)


class SpatialTransformer(nn.Module):
    """The official DeCo-Diff (latent-diffusion) attention block, one transformer layer deep.

    GroupNorm and a 1x1 projection in; per position self-attention, cross-attention
    to the class context and a GEGLU feed-forward of four times the width, each
    after a LayerNorm and added back; a 1x1 projection out, zero at the start so
    the block begins as the identity. Heads are ``head_dim`` channels wide, so
    wider levels get more heads, as the official code builds them.
    """

    def __init__(self, channels: int, head_dim: int, context_dim: int) -> None:
        super().__init__()
        if channels < head_dim:
            raise ValueError(f"{channels} channels cannot feed attention heads of {head_dim} channels")
        self.heads = channels // head_dim
        inner = self.heads * head_dim
        self.norm = _norm(channels)
        self.proj_in = nn.Conv2d(channels, inner, 1)
        self.norm1, self.norm2, self.norm3 = nn.LayerNorm(inner), nn.LayerNorm(inner), nn.LayerNorm(inner)
        self.qkv = nn.Linear(inner, 3 * inner, bias=False)
        self.out1 = nn.Linear(inner, inner)
        self.q = nn.Linear(inner, inner, bias=False)
        self.kv = nn.Linear(context_dim, 2 * inner, bias=False)
        self.out2 = nn.Linear(inner, inner)
        self.ff_in = nn.Linear(inner, 2 * 4 * inner)  # GEGLU: value and gate halves
        self.ff_out = nn.Linear(4 * inner, inner)
        self.proj_out = nn.Conv2d(inner, channels, 1)
        nn.init.zeros_(self.proj_out.weight)
        nn.init.zeros_(self.proj_out.bias)

    def _attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        batch, length, inner = q.shape

        def split(x: torch.Tensor) -> torch.Tensor:
            return x.view(batch, -1, self.heads, inner // self.heads).transpose(1, 2)

        out = F.scaled_dot_product_attention(split(q), split(k), split(v))
        return out.transpose(1, 2).reshape(batch, length, inner)

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        batch, channels, height, width = x.shape
        h = self.proj_in(self.norm(x)).flatten(2).transpose(1, 2)
        h = h + self.out1(self._attend(*self.qkv(self.norm1(h)).chunk(3, dim=-1)))
        h = h + self.out2(self._attend(self.q(self.norm2(h)), *self.kv(context).chunk(2, dim=-1)))
        value, gate = self.ff_in(self.norm3(h)).chunk(2, dim=-1)
        h = h + self.ff_out(value * F.gelu(gate))
        return x + self.proj_out(h.transpose(1, 2).reshape(batch, -1, height, width))


class SkipGate(nn.Module):
    """Skip-gating: ``(1 - sigmoid(conv1x1(skip))) * skip``; the gate tells where the skip path is distrusted."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 1)
        nn.init.zeros_(self.conv.weight)
        nn.init.constant_(self.conv.bias, -4.0)  # starts nearly open: alpha ~ 0.02

    def forward(self, skip: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        alpha = torch.sigmoid(self.conv(skip))
        return (1 - alpha) * skip, alpha


class _Level(nn.Module):
    def __init__(self, res: ResBlock, attn: nn.Module | None) -> None:
        super().__init__()
        self.res, self.attn = res, attn

    def forward(self, x: torch.Tensor, emb: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        x = self.res(x, emb)
        return x if self.attn is None else self.attn(x, context)


@dataclass
class UNetOutput:
    """The deviation prediction, and with ``return_gate`` the gates that shaped it."""

    deviation: torch.Tensor
    dod_gate: torch.Tensor | None = None
    skip_gates: list[torch.Tensor] = field(default_factory=list)


class DeviationUNet(nn.Module):
    """Predicts the deviation of a latent from normality, conditioned on the timestep and the object class.

    The class enters twice: an embedding added to the timestep embedding (every
    residual block), and as the single context token of the cross-attention.
    """

    def __init__(self, settings: UNetSettings) -> None:
        super().__init__()
        self.settings = s = settings
        mc = s.model_channels
        emb_dim = 4 * mc
        self.time_embed = nn.Sequential(nn.Linear(mc, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        self.class_embed = nn.Embedding(s.num_classes, emb_dim)
        self.context_embed = nn.Embedding(s.num_classes, s.context_dim)
        self.input_conv = _conv3(s.in_channels, mc, s.conv_padding)

        def attention(channels: int) -> nn.Module:
            if s.attention == "light":
                return AttentionBlock(channels, s.num_heads, s.context_dim)
            return SpatialTransformer(channels, max(1, mc // s.num_heads), s.context_dim)

        def level(ch: int, out: int, ds: int) -> _Level:
            attn = attention(out) if ds in s.attention_resolutions else None
            return _Level(ResBlock(ch, out, emb_dim, s.dropout, s.conv_padding), attn)

        self.down = nn.ModuleList()
        self.downsample = nn.ModuleList()
        skip_channels, ch, ds = [mc], mc, 1
        for i, mult in enumerate(s.channel_mult):
            blocks = nn.ModuleList()
            for _ in range(s.num_res_blocks):
                blocks.append(level(ch, mult * mc, ds))
                ch = mult * mc
                skip_channels.append(ch)
            self.down.append(blocks)
            if i < len(s.channel_mult) - 1:
                self.downsample.append(_conv3(ch, ch, s.conv_padding, stride=2))
                skip_channels.append(ch)
                ds *= 2
        self.middle = nn.ModuleList(
            [level(ch, ch, ds), _Level(ResBlock(ch, ch, emb_dim, s.dropout, s.conv_padding), None)]
        )
        self.middle[0].attn = attention(ch)

        self.up = nn.ModuleList()
        self.upsample = nn.ModuleList()
        self.skip_gates = nn.ModuleList()
        for i, mult in reversed(list(enumerate(s.channel_mult))):
            blocks = nn.ModuleList()
            for _ in range(s.num_res_blocks + 1):
                skip = skip_channels.pop()
                if s.skip_gate:
                    self.skip_gates.append(SkipGate(skip))
                blocks.append(level(ch + skip, mult * mc, ds))
                ch = mult * mc
            self.up.append(blocks)
            if i > 0:
                self.upsample.append(_conv3(ch, ch, s.conv_padding))
                ds //= 2
        self.out = nn.Sequential(_norm(ch), nn.SiLU(), _conv3(ch, s.in_channels, s.conv_padding))
        nn.init.zeros_(self.out[-1].weight)
        nn.init.zeros_(self.out[-1].bias)
        self.gate_head = (
            nn.Sequential(_norm(ch), nn.SiLU(), _conv3(ch, s.in_channels, s.conv_padding), nn.Sigmoid())
            if s.dod_gate
            else None
        )

    def forward(
        self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor, return_gate: bool = False
    ) -> torch.Tensor | UNetOutput:
        """``x [B, C, H, W]``, timesteps ``t [B]``, class indices ``y [B]`` -> deviation ``[B, C, H, W]``."""
        emb = self.time_embed(timestep_embedding(t, self.settings.model_channels)) + self.class_embed(y)
        context = self.context_embed(y)[:, None, :]
        h = self.input_conv(x)
        skips = [h]
        for i, blocks in enumerate(self.down):
            for block in blocks:
                h = block(h, emb, context)
                skips.append(h)
            if i < len(self.downsample):
                h = self.downsample[i](h)
                skips.append(h)
        for block in self.middle:
            h = block(h, emb, context)
        alphas: list[torch.Tensor] = []
        gates = iter(self.skip_gates)
        for i, blocks in enumerate(self.up):
            for block in blocks:
                skip = skips.pop()
                if self.settings.skip_gate:
                    skip, alpha = next(gates)(skip)
                    alphas.append(alpha)
                h = block(torch.cat([h, skip], dim=1), emb, context)
            if i < len(self.upsample):
                h = self.upsample[i](F.interpolate(h, scale_factor=2.0, mode="nearest"))
        deviation = self.out(h)
        gate = None
        if self.gate_head is not None:
            gate = self.gate_head(h)
            deviation = gate * deviation
        if return_gate:
            return UNetOutput(deviation, gate, alphas)
        return deviation
