"""The cross-attention map of the [V*] token, captured from the UNet's decoder (up-block ``attn2`` layers).

diffusers' fused attention (``scaled_dot_product_attention``) never materialises
the softmax probabilities, so the decoder's cross-attention layers get
:class:`RecordingProcessor`: it runs diffusers' own ``AttnProcessor`` (explicit
softmax) and, while a capture is active, keeps each layer's probabilities for
the selected token positions. Once a selection is set the same recording ops run
on every call (kept only while active), so that gradient checkpointing's
recompute in backward repeats the forward pass exactly. The processor only replaces how attention is
computed; the projections it calls (``attn.to_q`` ...) stay the modules peft
put LoRA layers into, so the adapters train through it.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


class AttentionStore:
    """Per-layer probabilities of the selected tokens, brought to latent size and summed per resolution.

    ``selection`` is ``[B, K]`` (one token per sample: the maps are ``[B, h, w]``) or ``[B, T, K]`` (T tokens:
    ``[B, T, h, w]``); a batch dimension of 1 applies the same selection to every sample of the UNet call
    (inference, where classifier-free guidance doubles the batch).
    """

    def __init__(self) -> None:
        self.active = False
        self.selection: torch.Tensor | None = None  # [B or 1, T, K] weights over key positions (sum 1 per row)
        self.single = True  # a [B, K] selection: maps without the token dimension
        self.latent_size: tuple[int, int] = (0, 0)
        # native (h, w) of the layers -> [sum of their maps at latent size, how many]; summed, not listed, so a
        # 50-step inference capture holds one map per resolution
        self.sums: dict[tuple[int, int], list] = {}

    def start(self, selection: torch.Tensor, latent_size: tuple[int, int]) -> None:
        """Capture the next forward passes: ``selection`` weighs the key positions of each sample's token(s)."""
        self.active = True
        self.single = selection.ndim == 2
        self.selection = selection[:, None, :] if self.single else selection
        self.latent_size = latent_size
        self.sums = {}

    def stop(self) -> torch.Tensor:
        """The captured map: every decoder layer's map (each upsampled to latent size) averaged over layers and calls."""
        # the selection stays: a gradient-checkpointing recompute in backward replays the same recording ops
        self.active = False
        if not self.sums:
            raise RuntimeError("no decoder cross-attention layer ran while capturing: is this a UNet with attn2?")
        total = sum(entry[0] for entry in self.sums.values())
        count = sum(entry[1] for entry in self.sums.values())
        return self._shape(total / count)

    def scale_maps(self) -> list[torch.Tensor]:
        """The last capture's map per decoder resolution (finest first), each averaged over its layers, at latent size."""
        ordered = sorted(self.sums.items(), key=lambda item: -item[0][0] * item[0][1])
        return [self._shape(total / count) for _, (total, count) in ordered]

    def _shape(self, maps: torch.Tensor) -> torch.Tensor:
        return maps[:, 0] if self.single else maps

    def record(self, probs: torch.Tensor, heads: int) -> None:
        selection = self.selection
        tokens = probs.shape[-1]
        batch = probs.shape[0] // heads
        per_head = probs.reshape(batch, heads, -1, tokens).mean(1)  # [B, N, K]
        weights = selection[..., :tokens].to(per_head.dtype)  # [B or 1, T, K]
        values = torch.matmul(per_head, weights.transpose(-1, -2)).transpose(1, 2)  # [B, T, N]
        h0, w0 = self.latent_size
        factor = math.sqrt(h0 * w0 / values.shape[-1])
        h, w = round(h0 / factor), round(w0 / factor)
        grid = values.reshape(batch, values.shape[1], h, w).float()
        if (h, w) != (h0, w0):
            grid = F.interpolate(grid, size=(h0, w0), mode="bilinear", align_corners=False)
        if self.active:  # else a recompute of the forward pass: same ops, nothing kept
            entry = self.sums.get((h, w))
            self.sums[(h, w)] = [grid, 1] if entry is None else [entry[0] + grid, entry[1] + 1]


class RecordingProcessor:
    """diffusers' ``AttnProcessor`` with the attention probabilities handed to an :class:`AttentionStore`."""

    def __init__(self, store: AttentionStore) -> None:
        from diffusers.models.attention_processor import AttnProcessor

        self.store = store
        # always the explicit path (also when not capturing), so that a gradient-checkpointing recompute
        # repeats exactly the computation of the forward pass
        self.inner = AttnProcessor()

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, **kwargs):
        if self.store.selection is None or encoder_hidden_states is None:
            return self.inner(attn, hidden_states, encoder_hidden_states, attention_mask, temb)
        original = attn.get_attention_scores
        store = self.store

        def scores(query, key, mask=None):
            probs = original(query, key, mask)
            store.record(probs, attn.heads)
            return probs

        # an instance attribute shadows the method for this one call; AttnProcessor calls attn.get_attention_scores
        attn.get_attention_scores = scores
        try:
            return self.inner(attn, hidden_states, encoder_hidden_states, attention_mask, temb)
        finally:
            del attn.get_attention_scores


def install(unet: torch.nn.Module) -> AttentionStore:
    """Put a :class:`RecordingProcessor` on every decoder cross-attention layer of ``unet``; return the store."""
    store = AttentionStore()
    found = 0
    for name, module in unet.named_modules():
        if name.startswith("up_blocks.") and name.endswith(".attn2") and hasattr(module, "set_processor"):
            module.set_processor(RecordingProcessor(store))
            found += 1
    if not found:
        raise RuntimeError("the UNet has no cross-attention layer in its up blocks (up_blocks.*.attn2)")
    return store


def decoder_attention_levels(unet: torch.nn.Module) -> int:
    """At how many resolutions the UNet's decoder has cross-attention (each up block works at one resolution)."""
    return sum("CrossAttn" in kind for kind in unet.config.up_block_types)


def token_selection(input_ids: torch.Tensor, first_id: int, count: int) -> torch.Tensor:
    """``[B, K]`` weights: 1/n on each of the n positions holding a token id in ``[first_id, first_id + count)``."""
    hit = ((input_ids >= first_id) & (input_ids < first_id + count)).float()
    total = hit.sum(1, keepdim=True)
    if bool((total == 0).any()):
        raise RuntimeError("a prompt does not contain its defect token (was it cut off by the tokenizer?)")
    return hit / total
