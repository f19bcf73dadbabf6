"""What the trainers write loads into a plain diffusers pipeline and reproduces the trained model."""

import json

import pytest
import torch
from safetensors.torch import load_file

from defectkit.testing import run_recipe_dict
from defectkit_finetune import adapters
from defectkit_finetune.config import AdaLoraTrainConfig, TextualInversionConfig
from defectkit_finetune.models import backbone_from_pipeline
from defectkit_finetune.tests.helpers import recipe


def _pipe(folder, family="sd15"):
    import diffusers

    cls = diffusers.StableDiffusionXLPipeline if family == "sdxl" else diffusers.StableDiffusionPipeline
    pipe = cls.from_pretrained(folder)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _unet_out(pipe, seed=0):
    generator = torch.Generator().manual_seed(seed)
    latents = torch.randn(1, 4, 16, 16, generator=generator)
    text = torch.randn(1, 77, pipe.unet.config.cross_attention_dim, generator=generator)
    with torch.no_grad():
        return pipe.unet(latents, torch.tensor([500]), text).sample


def _randomise(module, prefix_filter=("lora_",)):
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, param in module.named_parameters():
            if any(f in name for f in prefix_filter):
                param.copy_(torch.randn(param.shape, generator=generator) * 0.3)


@pytest.mark.parametrize("use_dora", [False, True])
def test_lora_and_dora_with_alpha_reload_exactly(tiny_pipelines, tmp_path, use_dora):
    folder = tiny_pipelines("sd15")
    trained = _pipe(folder)
    backbone = backbone_from_pipeline(trained, "sd15")
    config = adapters.lora_config(4, 2.0, 0.0, ["to_q", "to_k", "to_v", "to_out.0"], use_dora)
    adapters.add_lora(backbone.denoiser, config, "test")
    _randomise(backbone.denoiser)
    expected = _unet_out(trained)
    state = {"denoiser": adapters.lora_state_dict(backbone.denoiser, adalora=False)}
    from defectkit_finetune.trainer import _metadata

    state["denoiser_metadata"] = _metadata(config)
    adapters.save_adapter(tmp_path / "adapter", backbone, state, None, {})

    plain = _pipe(folder)
    base = _unet_out(plain)
    plain.load_lora_weights(tmp_path / "adapter", weight_name=adapters.LORA_FILE)
    loaded = _unet_out(plain)
    assert not torch.allclose(base, expected, atol=1e-3)
    torch.testing.assert_close(loaded, expected, atol=1e-5, rtol=1e-4)
    if use_dora:
        assert any("lora_magnitude_vector" in k for k in load_file(tmp_path / "adapter" / adapters.LORA_FILE))


def test_adalora_exports_a_plain_lora_of_the_kept_ranks(tiny_pipelines, tmp_path):
    folder = tiny_pipelines("sd15")
    trained = _pipe(folder)
    backbone = backbone_from_pipeline(trained, "sd15")
    options = AdaLoraTrainConfig(steps=100, init_r=6, target_r=3)
    adapters.add_adalora(backbone.denoiser, options, options.steps)
    _randomise(backbone.denoiser)
    with torch.no_grad():  # prune as the budget allocator does: zero some singular values
        for name, param in backbone.denoiser.named_parameters():
            if "lora_E" in name:
                param[: 2 + len(name) % 3] = 0.0
    expected = _unet_out(trained)
    state = adapters.adalora_as_lora(backbone.denoiser)
    ranks = adapters.adapter_ranks(state)
    assert set(ranks.values()) <= {1, 2, 3, 4} and len(set(ranks.values())) > 1
    from diffusers.utils import convert_state_dict_to_diffusers

    adapters.save_adapter(tmp_path / "a", backbone, {"denoiser": convert_state_dict_to_diffusers(state)}, None, {})
    plain = _pipe(folder)
    plain.load_lora_weights(tmp_path / "a", weight_name=adapters.LORA_FILE)
    torch.testing.assert_close(_unet_out(plain), expected, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("family", ["sd15", "sdxl"])
def test_textual_inversion_embeddings_load_with_load_textual_inversion(tiny_pipelines, tmp_path, family):
    folder = tiny_pipelines(family)
    trained = _pipe(folder, family)
    backbone = backbone_from_pipeline(trained, family)
    options = TextualInversionConfig(num_vectors=3, initializer_tokens={"rolled-in_scale": "scale"})
    tokens = adapters.TokenEmbeddings(backbone, ["rolled-in_scale", "scratches"], options)
    with torch.no_grad():
        for vectors in tokens.vectors:
            vectors.normal_()
    prompt = "a photo of <scratches> on steel"
    expected = backbone.encode_prompts([prompt], "cpu")
    base = backbone_from_pipeline(_pipe(folder, family), family).encode_prompts(
        [prompt.replace("<scratches>", "x")], "cpu"
    )
    adapters.save_adapter(tmp_path / "adapter", backbone, None, tokens, {})
    manifest = json.loads((tmp_path / "adapter" / "adapter.json").read_text())
    assert manifest["embeddings"][1] == {
        "file": "scratches.safetensors",
        "token": "<scratches>",
        "defect_type": "scratches",
    }

    plain = _pipe(folder, family)
    for entry in manifest["embeddings"]:
        state = load_file(tmp_path / "adapter" / entry["file"])
        if family == "sdxl":
            assert set(state) == {"clip_l", "clip_g"}
            plain.load_textual_inversion(
                state["clip_l"], token=entry["token"], text_encoder=plain.text_encoder, tokenizer=plain.tokenizer
            )
            plain.load_textual_inversion(
                state["clip_g"], token=entry["token"], text_encoder=plain.text_encoder_2, tokenizer=plain.tokenizer_2
            )
        else:
            assert state[entry["token"]].shape == (3, 32)
            plain.load_textual_inversion(tmp_path / "adapter" / entry["file"])
    loaded = backbone_from_pipeline(plain, family).encode_prompts([prompt], "cpu")
    for key in expected:
        torch.testing.assert_close(loaded[key], expected[key], atol=1e-5, rtol=1e-4)
        assert not torch.allclose(loaded[key], base[key], atol=1e-3)


def test_trained_ti_lora_adapter_changes_a_plain_pipeline(registered, tiny_pipelines, tmp_path):
    folder = tiny_pipelines("sd15")
    options = {
        "model": str(folder),
        "lr": 5e-2,
        "embedding_lr": 5e-2,
        "num_vectors": 2,
        "use_dora": True,
        "validation_images": False,
    }
    run = run_recipe_dict(recipe("ti_lora", options), tmp_path / "run")
    adapter = run / "01_train" / "adapter"
    manifest = json.loads((adapter / "adapter.json").read_text())
    assert manifest["trainer"] == "ti_lora" and [e["token"] for e in manifest["embeddings"]] == [
        "<patches>",
        "<scratches>",
    ]
    prompt = manifest["prompts"]["scratches"]
    assert "<scratches>" in prompt

    def image(pipe):
        return pipe(
            prompt,
            num_inference_steps=2,
            height=32,
            width=32,
            generator=torch.Generator().manual_seed(0),
            output_type="np",
        ).images

    plain = _pipe(folder)
    for entry in manifest["embeddings"]:
        plain.load_textual_inversion(adapter / entry["file"])
    before = image(plain)
    plain.load_lora_weights(adapter, weight_name=manifest["lora"])
    after = image(plain)
    assert abs(after - before).mean() > 1e-4


def test_a_growing_rank_goes_from_rank_to_final_rank_and_the_adapter_loads_in_diffusers(registered, tiny_pipelines, tmp_path):
    folder = tiny_pipelines("sd15")
    options = {"model": str(folder), "rank": 2, "final_rank": 4, "rank_growth_share": 0.5, "steps": 4, "lr": 5e-2,
               "validation_images": False}
    run = run_recipe_dict(recipe("lora", options), tmp_path / "run")
    scalars = [json.loads(line) for line in (run / "scalars.jsonl").read_text().splitlines()]
    ranks = [r["value"] for r in sorted(scalars, key=lambda r: r["step"]) if r["tag"].endswith("/rank")]
    assert ranks == [3, 4, 4, 4]  # int(2 + 2 * step / 2) after steps 1-4: full rank at half the steps
    adapter = run / "01_train" / "adapter"
    weights = load_file(adapter / adapters.LORA_FILE)
    downs = [w for name, w in weights.items() if "lora_A" in name or "lora.down" in name]
    assert downs and all(w.shape[0] == 4 for w in downs)
    assert all(bool((w.abs().sum(dim=1) > 0).all()) for w in downs)  # every component is live at the end
    ups = [w for name, w in weights.items() if "lora_B" in name or "lora.up" in name]
    assert any(bool(w[:, 3].abs().sum() > 0) for w in ups)  # the last one trained after it came on
    plain = _pipe(folder)
    base = _unet_out(plain)
    plain.load_lora_weights(adapter, weight_name=adapters.LORA_FILE)
    assert not torch.allclose(_unet_out(plain), base, atol=1e-5)


def test_growing_rank_components_stay_off_until_their_step():
    from defectkit_finetune.adapters import GrowingRank

    class Layer(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lora_A = torch.nn.ModuleDict({"default": torch.nn.Linear(6, 4, bias=False)})
            self.lora_B = torch.nn.ModuleDict({"default": torch.nn.Linear(4, 5, bias=False)})

    layer = Layer()
    torch.nn.init.zeros_(layer.lora_B["default"].weight)
    growth = GrowingRank(layer, start=1, final=4, steps=6, seed=0)
    live = lambda: int((layer.lora_A["default"].weight.abs().sum(dim=1) > 0).sum())  # noqa: E731
    seen = [live()]
    for done in range(1, 7):
        growth.after_step(done)
        seen.append(live())
    assert seen == [1, 1, 2, 2, 3, 3, 4]
