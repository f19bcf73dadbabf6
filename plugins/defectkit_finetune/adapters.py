"""Adapters on the frozen model (peft LoRA / DoRA / AdaLoRA, new token embeddings) and their export
in the formats diffusers loads (``load_lora_weights``, ``load_textual_inversion``)."""

from __future__ import annotations

from pathlib import Path

import torch

from defectkit import io as dkio
from defectkit.errors import DefectkitError
from defectkit_finetune.models import Backbone

ADAPTER_FILE = "adapter.json"
LORA_FILE = "pytorch_lora_weights.safetensors"
TEXT_ENCODER_TARGETS = ["q_proj", "k_proj", "v_proj", "out_proj"]


def lora_config(rank: int, alpha: float | None, dropout: float, targets: list[str], use_dora: bool):
    from peft import LoraConfig

    return LoraConfig(
        r=rank,
        lora_alpha=alpha or rank,
        lora_dropout=dropout,
        init_lora_weights="gaussian",  # as diffusers' LoRA scripts: B starts at zero, the model is unchanged
        target_modules=targets,
        use_dora=use_dora,
    )


def add_lora(module: torch.nn.Module, config, where: str) -> None:
    """peft adapters on ``module`` in place (diffusers/transformers ``add_adapter``)."""
    try:
        module.add_adapter(config)
    except ValueError as exc:
        raise DefectkitError(f"{where}: target_modules {sorted(config.target_modules)} do not fit: {exc}") from None


def add_adalora(denoiser: torch.nn.Module, options, steps: int):
    """AdaLoRA on the denoiser; the returned peft tuner allocates the rank budget during training."""
    from peft import AdaLoraConfig
    from peft.tuners.adalora import AdaLoraModel

    tinit, tfinal = options.schedule
    config = AdaLoraConfig(
        init_r=options.init_r,
        target_r=options.target_r,
        tinit=tinit,
        tfinal=tfinal,
        deltaT=options.delta_t,
        total_step=steps,
        orth_reg_weight=options.orth_reg_weight,
        lora_alpha=options.alpha or options.init_r,
        lora_dropout=options.dropout,
        target_modules=options.target_modules,
    )
    try:
        return AdaLoraModel(denoiser, config, "default")
    except ValueError as exc:
        raise DefectkitError(f"adalora: target_modules {options.target_modules} do not fit: {exc}") from None


class GrowingRank:
    """A LoRA whose rank grows from ``start`` to ``final`` during training (seed 000 §3.3's linear schedule).

    peft fixes a LoRA's rank when it is made, so the adapters are made at
    ``final`` and the components past the current rank are held at zero: a
    component whose A row and B column are both zero gets zero gradients, so it
    stays off without masks. When the schedule reaches a component, its A row
    is drawn as peft's "gaussian" init draws it (B stays zero), so growing
    leaves the model's output unchanged at that step, as a new LoRA does.
    """

    def __init__(self, module: torch.nn.Module, start: int, final: int, steps: float, seed: int) -> None:
        self.layers = [m for m in module.modules() if hasattr(m, "lora_A") and "default" in getattr(m, "lora_A", {})]
        #: steps: over how many optimizer steps the rank grows (then it stays at final)
        self.start, self.final, self.steps, self.seed = start, final, steps, seed
        self.active = final
        self.set_active(start)

    def rank_at(self, done: int) -> int:
        """The seed's ``int(r0 + (r1 - r0) * step / steps)``, held at the final rank once ``steps`` are done."""
        return max(self.start, min(self.final, int(self.start + (self.final - self.start) * done / self.steps)))

    @torch.no_grad()
    def set_active(self, rank: int) -> None:
        """Switch components on or off so that exactly ``rank`` are live (on: drawn afresh, off: zeroed)."""
        for index, layer in enumerate(self.layers):
            a, b = layer.lora_A["default"].weight, layer.lora_B["default"].weight
            if rank < self.active:
                a[rank:] = 0
                b[:, rank:] = 0
            for k in range(self.active, rank):
                # one generator per (layer, component): a resumed run draws what an uninterrupted one drew
                generator = torch.Generator().manual_seed(self.seed * 1_000_003 + index * 1_009 + k)
                row = torch.randn(a.shape[1], generator=generator) / self.final
                a[k] = row.to(a.device, a.dtype)
        self.active = rank

    def after_step(self, done: int) -> int:
        rank = self.rank_at(done)
        if rank > self.active:
            self.set_active(rank)
        return self.active


def orthogonal_penalty(module: torch.nn.Module) -> torch.Tensor | float:
    """AdaLoRA's orthogonality regulariser of P (lora_A) and Q (lora_B).

    Written out because peft adds it only inside ``AdaLoraModel.forward`` to a
    model output's ``.loss``, which a diffusers denoiser does not return.
    """
    total, count = 0.0, 0
    for name, param in module.named_parameters():
        if "lora_A" in name or "lora_B" in name:
            cov = param @ param.T if "lora_A" in name else param.T @ param
            total = total + torch.linalg.matrix_norm(cov - torch.eye(cov.shape[0], device=cov.device), "fro")
            count += 1
    return total / max(count, 1)


class TokenEmbeddings(torch.nn.Module):
    """Trainable vectors of new tokens, substituted into each CLIP encoder's embedding output.

    diffusers' textual_inversion.py trains the whole 49408-row embedding matrix
    and restores the old rows after every step; here only the new rows are
    parameters (a forward hook swaps them in), so the optimizer state is a few
    kilobytes instead of twice the matrix, and weight decay never touches the
    vocabulary.
    """

    def __init__(self, backbone: Backbone, classes: list[str], options) -> None:
        super().__init__()
        self.classes = classes
        self.num_vectors = options.num_vectors
        self.tokens = {c: options.token_template.format(defect=c) for c in classes}
        names = [n for c in classes for n in self.expanded(self.tokens[c], self.num_vectors)]
        self.vectors = torch.nn.ParameterList()
        self._first_ids: list[int] = []
        self._hooks = []
        for encoder, tokenizer in backbone.clip_encoders:
            clash = [n for n in names if n in tokenizer.get_vocab()]
            if clash:
                raise DefectkitError(
                    f"token_template: {clash[0]!r} is already a word of the tokenizer; choose another template"
                )
            added = tokenizer.add_tokens(names)
            ids = tokenizer.convert_tokens_to_ids(names)
            if added != len(names) or ids != list(range(ids[0], ids[0] + len(names))):
                raise DefectkitError(f"textual inversion: the tokenizer did not add {names} as new tokens")
            encoder.resize_token_embeddings(len(tokenizer))
            table = encoder.get_input_embeddings()
            init = torch.stack(
                [self._initial(tokenizer, table, options.initializer_tokens.get(c, c)) for c in classes]
            )  # [classes, dim]
            vectors = init.repeat_interleave(self.num_vectors, dim=0).float().clone()
            self.vectors.append(torch.nn.Parameter(vectors))
            self._first_ids.append(ids[0])
            self._hooks.append(table.register_forward_hook(self._hook(len(self.vectors) - 1)))

    @staticmethod
    def expanded(token: str, count: int | None = None) -> list[str]:
        """``<x>``, ``<x>_1``, ...: the names diffusers gives a multi-vector embedding's tokens."""
        return [token] + [f"{token}_{i}" for i in range(1, count)] if count else [token]

    def _initial(self, tokenizer, table, words: str) -> torch.Tensor:
        ids = tokenizer(words, add_special_tokens=False).input_ids
        if not ids:
            raise DefectkitError(f"initializer_tokens: {words!r} gives no tokens")
        # several sub-words (e.g. rolled-in_scale) are averaged: diffusers' script wants one token
        return table.weight[ids].detach().mean(0)

    def _hook(self, index: int):
        def swap(module, args, output):
            ids = args[0]
            first = self._first_ids[index]
            vectors = self.vectors[index]
            new = (ids >= first) & (ids < first + vectors.shape[0])
            # every row takes part in the graph, so DDP sees all vectors used on every step
            picked = vectors[(ids - first).clamp(0, vectors.shape[0] - 1)].to(output.dtype)
            return torch.where(new[..., None], picked, output)

        return swap

    def remove_hooks(self) -> None:
        for hook in self._hooks:
            hook.remove()

    def write_into_tables(self, backbone: Backbone) -> None:
        """Copy the vectors into the embedding matrices (for a pipeline used without the hook)."""
        with torch.no_grad():
            for (encoder, _), first, vectors in zip(backbone.clip_encoders, self._first_ids, self.vectors, strict=True):
                table = encoder.get_input_embeddings().weight
                table[first : first + vectors.shape[0]] = vectors.to(table.dtype)

    def class_vectors(self, encoder: int, defect: str) -> torch.Tensor:
        i = self.classes.index(defect)
        return self.vectors[encoder][i * self.num_vectors : (i + 1) * self.num_vectors].detach().float().cpu()


def names_for(tokens: TokenEmbeddings) -> list[str]:
    return [n for c in tokens.classes for n in TokenEmbeddings.expanded(tokens.tokens[c], tokens.num_vectors)]


def lora_state_dict(module: torch.nn.Module, adalora: bool) -> dict[str, torch.Tensor]:
    """diffusers-format LoRA weights of ``module`` (AdaLoRA converted to plain LoRA of its kept ranks)."""
    from diffusers.utils import convert_state_dict_to_diffusers
    from peft.utils import get_peft_model_state_dict

    if adalora:
        return convert_state_dict_to_diffusers(adalora_as_lora(module))
    # the new token rows go to the embedding files, never into the LoRA file (peft would add the whole
    # resized matrix)
    return convert_state_dict_to_diffusers(get_peft_model_state_dict(module, save_embedding_layers=False))


def adalora_as_lora(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """AdaLoRA's B·diag(E)·A, keeping only the singular values the budget left non-zero.

    The result is an ordinary LoRA whose rank differs per layer (diffusers reads
    each layer's rank from its weights) with the scale folded into B, so any
    ``load_lora_weights`` reproduces the trained model exactly.
    """
    from peft.tuners.adalora.layer import SVDLinear

    state = {}
    for name, layer in module.named_modules():
        if not isinstance(layer, SVDLinear) or "default" not in layer.lora_A:
            continue
        a, e, b = layer.lora_A["default"], layer.lora_E["default"], layer.lora_B["default"]
        keep = e.detach()[:, 0] != 0
        if not bool(keep.any()):
            continue  # the whole layer was pruned: it adds nothing
        scale = layer.scaling["default"] / (layer.ranknum["default"] + 1e-5)
        state[f"{name}.lora_A.weight"] = (a * e).detach()[keep].float().cpu().contiguous()
        state[f"{name}.lora_B.weight"] = (b.detach()[:, keep] * scale).float().cpu().contiguous()
    return state


def adapter_ranks(state: dict[str, torch.Tensor]) -> dict[str, int]:
    return {k[: -len(".lora_A.weight")]: int(v.shape[0]) for k, v in state.items() if k.endswith("lora_A.weight")}


def save_adapter(
    folder: Path,
    backbone: Backbone,
    lora: dict | None,
    tokens: TokenEmbeddings | None,
    info: dict,
) -> Path:
    """Write the ``adapter`` artifact atomically: LoRA safetensors, one embedding file per class, adapter.json.

    ``lora`` maps ``denoiser``/``text_encoder``/``text_encoder_2`` to diffusers-format state dicts, with
    optional ``*_metadata`` (the peft config: alpha, DoRA) that diffusers reads back.
    """
    from safetensors.torch import save_file

    with dkio.atomic_dir(folder) as tmp:
        lora_file = None
        if lora:
            _save_lora(tmp, backbone, lora)
            lora_file = LORA_FILE
        embeddings = []
        if tokens is not None:
            for defect in tokens.classes:
                if backbone.family == "sdxl":
                    # the keys diffusers' SDXL textual-inversion loading documents: one vector set per encoder
                    state = {"clip_l": tokens.class_vectors(0, defect), "clip_g": tokens.class_vectors(1, defect)}
                else:
                    state = {tokens.tokens[defect]: tokens.class_vectors(0, defect)}
                file = f"{_file_stem(defect)}.safetensors"
                save_file({k: v.contiguous() for k, v in state.items()}, str(tmp / file))
                embeddings.append({"file": file, "token": tokens.tokens[defect], "defect_type": defect})
        dkio.write_json(
            tmp / ADAPTER_FILE, {"family": backbone.family, "lora": lora_file, "embeddings": embeddings, **info}
        )
    return folder


def _file_stem(defect: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in defect) or "class"


def _save_lora(folder: Path, backbone: Backbone, lora: dict) -> None:
    from diffusers import StableDiffusion3Pipeline, StableDiffusionPipeline, StableDiffusionXLPipeline

    te, te_meta = lora.get("text_encoder"), lora.get("text_encoder_metadata")
    kwargs = {"save_directory": str(folder), "weight_name": LORA_FILE, "safe_serialization": True}
    if backbone.family == "sd3":
        StableDiffusion3Pipeline.save_lora_weights(
            transformer_lora_layers=lora["denoiser"],
            transformer_lora_adapter_metadata=lora.get("denoiser_metadata"),
            text_encoder_lora_layers=te,
            text_encoder_lora_adapter_metadata=te_meta,
            text_encoder_2_lora_layers=lora.get("text_encoder_2"),
            text_encoder_2_lora_adapter_metadata=lora.get("text_encoder_2_metadata"),
            **kwargs,
        )
    elif backbone.family == "sdxl":
        StableDiffusionXLPipeline.save_lora_weights(
            unet_lora_layers=lora["denoiser"],
            unet_lora_adapter_metadata=lora.get("denoiser_metadata"),
            text_encoder_lora_layers=te,
            text_encoder_lora_adapter_metadata=te_meta,
            text_encoder_2_lora_layers=lora.get("text_encoder_2"),
            text_encoder_2_lora_adapter_metadata=lora.get("text_encoder_2_metadata"),
            **kwargs,
        )
    else:
        StableDiffusionPipeline.save_lora_weights(
            unet_lora_layers=lora["denoiser"],
            unet_lora_adapter_metadata=lora.get("denoiser_metadata"),
            text_encoder_lora_layers=te,
            text_encoder_lora_adapter_metadata=te_meta,
            **kwargs,
        )
