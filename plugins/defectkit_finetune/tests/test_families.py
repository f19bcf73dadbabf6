"""SDXL (two encoders, size/crop conditioning) and SD3 (flow matching), optimisers and user mistakes."""

import json

import pytest
from safetensors.torch import load_file

from defectkit.errors import DefectkitError
from defectkit.testing import run_recipe_dict
from defectkit_finetune.tests.helpers import recipe

FAST = {"steps": 2, "checkpoint_every": 100, "validation_inference_steps": 1}


def test_sdxl_textual_inversion_with_text_encoder_lora(registered, tiny_pipelines, tmp_path):
    options = {**FAST, "backend": "sdxl", "model": str(tiny_pipelines("sdxl")), "train_text_encoder": True}
    run = run_recipe_dict(recipe("ti_lora", options), tmp_path / "run")
    adapter = run / "01_train" / "adapter"
    manifest = json.loads((adapter / "adapter.json").read_text())
    assert manifest["family"] == "sdxl"
    assert set(load_file(adapter / "scratches.safetensors")) == {"clip_l", "clip_g"}
    keys = load_file(adapter / manifest["lora"]).keys()
    assert {k.split(".")[0] for k in keys} == {"unet", "text_encoder", "text_encoder_2"}
    assert not any("embed" in k for k in keys)  # the token rows live in the embedding files only


def test_sd3_lora_with_flow_matching_and_onecycle(registered, tiny_pipelines, tmp_path):
    options = {**FAST, "backend": "sd3", "model": str(tiny_pipelines("sd3")), "lr_scheduler": "onecycle"}
    run = run_recipe_dict(recipe("lora", options), tmp_path / "run")
    manifest = json.loads((run / "01_train" / "adapter" / "adapter.json").read_text())
    assert manifest["family"] == "sd3"
    keys = load_file(run / "01_train" / "adapter" / manifest["lora"]).keys()
    assert keys and all(k.startswith("transformer.") for k in keys)


def test_textual_inversion_on_sd3_is_refused(registered, tiny_pipelines, tmp_path):
    options = {**FAST, "backend": "sd3", "model": str(tiny_pipelines("sd3"))}
    with pytest.raises(DefectkitError, match="SD 1.5 and SDXL"):
        run_recipe_dict(recipe("textual_inversion", options), tmp_path / "run")


@pytest.mark.parametrize("optimizer", ["adamw_fused", "adamw_8bit"])
def test_optimizers(registered, tiny_pipelines, tmp_path, optimizer):
    options = {**FAST, "model": str(tiny_pipelines("sd15")), "optimizer": optimizer, "validation_images": False}
    options.update(lr_scheduler="cosine", warmup_steps=1, gradient_checkpointing=True, mixed_precision="bf16")
    run = run_recipe_dict(recipe("textual_inversion", options), tmp_path / "run")
    metrics = json.loads((run / "metrics.json").read_text())["train"]
    assert metrics["precision"] == "bfloat16" and metrics["trainable_parameters"] == 2 * 4 * 32


def test_missing_bitsandbytes_is_one_clear_line(monkeypatch):
    import sys

    import torch

    from defectkit_finetune.config import LoraTrainConfig
    from defectkit_finetune.optim import build_optimizer

    monkeypatch.setitem(sys.modules, "bitsandbytes", None)
    params = [torch.nn.Parameter(torch.zeros(2))]
    with pytest.raises(DefectkitError, match="adamw_8bit needs bitsandbytes"):
        build_optimizer([{"params": params, "lr": 1.0}], LoraTrainConfig(optimizer="adamw_8bit"), torch.device("cpu"))


def test_user_mistakes_name_the_option(registered, tiny_pipelines, tmp_path):
    base = {**FAST, "model": str(tiny_pipelines("sd15"))}
    with pytest.raises(DefectkitError, match="classes \\['rust'\\] have no images"):
        run_recipe_dict(recipe("lora", {**base, "classes": ["rust"]}), tmp_path / "a")
    with pytest.raises(DefectkitError, match="steps\\[0\\].train.with.rank"):
        run_recipe_dict(recipe("lora", {**base, "rank": "big"}), tmp_path / "b")
    with pytest.raises(DefectkitError, match="cache_latents"):
        run_recipe_dict(recipe("lora", {**base, "cache_latents": True}), tmp_path / "c")
    with pytest.raises(DefectkitError, match="no such folder"):
        run_recipe_dict(recipe("dora", {**base, "model": str(tmp_path / "missing")}), tmp_path / "d")
    with pytest.raises(DefectkitError, match="inpainting"):
        run_recipe_dict(recipe("dora", {**base, "backend": "sd15_inpainting"}), tmp_path / "e")
    with pytest.raises(DefectkitError, match="tinit"):
        run_recipe_dict(recipe("adalora", {**base, "tinit": 1, "tfinal": 1}), tmp_path / "f")


def test_adamw_8bit_holds_its_moments_in_8_bits():
    # a silent fallback to torch's AdamW would keep float32 exp_avg / exp_avg_sq instead
    import torch

    from defectkit_finetune.config import LoraTrainConfig
    from defectkit_finetune.optim import build_optimizer

    weight = torch.nn.Parameter(torch.randn(64, 128))  # above bitsandbytes' min_8bit_size (4096 elements)
    optimizer = build_optimizer([{"params": [weight], "lr": 1e-3}], LoraTrainConfig(optimizer="adamw_8bit"), torch.device("cpu"))
    weight.grad = torch.randn_like(weight)
    before = weight.detach().clone()
    optimizer.step()
    state = optimizer.state[weight]
    assert state["state1"].dtype == torch.uint8 and state["state2"].dtype == torch.uint8
    assert state["state1"].numel() == weight.numel() and "exp_avg" not in state
    assert not torch.equal(weight, before)
