"""Through the run engine: train + generate on tiny models, the adapter artifact, exact pixels, resume, NaN steps."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from defectkit.errors import DefectkitError
from defectkit.generated import read_generated
from defectkit.plugins import get_registry
from defectkit.recipe import load_recipe, validate_recipe
from defectkit.run import RunInterrupted, run_recipe
from defectkit.testing import check_component, check_plugin_light, run_recipe_dict
from defectkit_defectfill.tests.helpers import recipe

RECIPES = Path(__file__).resolve().parents[3] / "recipes"


def test_hooks_are_light_and_components_meet_the_contract(registered):
    check_plugin_light("defectkit_defectfill.hooks")
    check_component(registered.get("trainer", "defectfill"))
    check_component(registered.get("generator", "defectfill"))


@pytest.mark.parametrize("name", ["defectfill_mvtec.yaml", "defectfill_tiny.yaml"])
def test_recipes_validate_without_loading_anything(registered, name, monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    # validation looks for the category folder (not its images): an empty layout stands in for MVTec AD
    (tmp_path / "hazelnut" / "test").mkdir(parents=True)
    overrides = [f"data.root={tmp_path}"] if name == "defectfill_mvtec.yaml" else []
    validated = load_recipe(RECIPES / name, registered, overrides=overrides)
    kinds = [(s.kind, s.components[0].name if s.components else None) for s in validated.steps]
    assert ("train", "defectfill") in kinds and ("generate", "defectfill") in kinds


def test_bad_options_name_the_key(registered):
    data = recipe(train={"backend": "sd15"}, with_generate=False)
    with pytest.raises(DefectkitError, match=r"steps\[0\]\.train\.with.*inpainting backend"):
        validate_recipe(data, registered)
    data = recipe(train={"tiny_model": True, "model": "x/y"}, with_generate=False)
    with pytest.raises(DefectkitError, match="leave model empty"):
        validate_recipe(data, registered)


def test_train_then_generate_end_to_end(registered, tmp_path, monkeypatch):
    from defectkit_defectfill.generate import DefectFillGenerator

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    fill = DefectFillGenerator.fill
    calls = []
    interrupt = True

    def interrupted_fill(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 2 and interrupt:
            raise KeyboardInterrupt  # Ctrl-C during the second image
        return fill(self, *args, **kwargs)

    monkeypatch.setattr(DefectFillGenerator, "fill", interrupted_fill)
    with pytest.raises(RunInterrupted):
        run_recipe_dict(recipe(), tmp_path / "run")
    calls.clear()
    interrupt = False
    run = run_recipe(validate_recipe(recipe(), get_registry()), out=tmp_path / "run", resume=True)
    assert len(calls) == 2  # the first image was kept; the second and third are drawn now
    assert not (run / "02_generate" / ".shards").exists()
    metrics = json.loads((run / "metrics.json").read_text())
    train, generate = metrics["train"], metrics["generate"]
    assert train["nonfinite_steps"] == 0 and train["trained_steps"] == 4
    for term in ("defect", "object", "attention"):
        assert np.isfinite(train[f"final_loss_{term}"]) and train[f"final_loss_{term}"] > 0
    tags = {json.loads(line)["tag"] for line in (run / "scalars.jsonl").read_text().splitlines()}
    assert {"train/defectfill/loss_attention", "train/defectfill/loss", "train/defectfill/lr"} <= tags
    assert (run / "01_train" / "attention.png").is_file()
    events = list((run / "tensorboard").glob("events.*"))
    assert events and any(b"attention" in e.read_bytes() for e in events)  # the maps went to TensorBoard

    # the adapter: the finetune format (LoRA + one token per type), loadable by apply_adapter
    from defectkit_diffusion.api import apply_adapter, read_adapter
    from diffusers import StableDiffusionInpaintPipeline

    adapter = read_adapter(run / "01_train" / "adapter")
    assert adapter.family == "sd15" and adapter.lora and set(adapter.tokens) == {"hole", "color"}
    pipe = StableDiffusionInpaintPipeline.from_pretrained(run / "01_train" / "tiny_model", safety_checker=None)
    assert apply_adapter(pipe, adapter, "sd15") == {"hole": "<hole>", "color": "<color>"}
    lora = load_file(run / "01_train" / "adapter" / "pytorch_lora_weights.safetensors")
    assert any(v.abs().sum() > 0 for k, v in lora.items() if "lora_B" in k or "lora.up" in k)  # it trained

    # the pairs: one per type and one combined; outside the mask, the good image's exact pixels
    samples = read_generated(run / "02_generate" / "generated")
    assert [s.defect_type for s in samples] == ["color", "hole", "hole+color"] and generate["generated_images"] == 3
    records = [
        json.loads(line) for line in (run / "02_generate" / "generated" / "metadata.jsonl").read_text().splitlines()
    ]
    data = get_registry().get("dataset", "synthetic").load_factory()
    goods = {
        s.id: s
        for s in data(
            get_registry()
            .get("dataset", "synthetic")
            .build_config({"kind": "mvtec", "category": "carpet", "size": 48, "n_train": 3, "n_test": 3})
        ).samples("train")
    }
    for sample, record in zip(samples, records, strict=True):
        image = np.asarray(Image.open(sample.image_path).convert("RGB"))
        mask = sample.load_mask() > 0
        original = np.asarray(goods[record["source"]].load_image().convert("RGB"))
        assert mask.any() and image.shape == original.shape
        assert np.array_equal(image[~mask], original[~mask])
        assert len(record["lpips_candidates"]) == 2 and record["chosen"] == int(np.argmax(record["lpips_candidates"]))
    assert "<hole> and <color>" in records[2]["prompt"]
    assert (run / "02_generate" / "generated" / "contact_sheet.png").is_file()

    # the web UI's session: a painted mask on an uploaded good image
    generator = get_registry().get("generator", "defectfill").create(recipe()["steps"][1]["generate"]["with"])
    session = generator.open_session(run, "generate", "cpu")
    assert session.labels == ["color", "hole", "hole+color"]
    good = goods[records[0]["source"]].load_image().convert("RGB")
    painted = np.zeros((48, 48), dtype=np.uint8)
    painted[10:20, 12:30] = 255
    out = np.asarray(session.generate("hole", image=good, mask=Image.fromarray(painted), seed=3))
    assert np.array_equal(out[painted == 0], np.asarray(good)[painted == 0])
    assert session.last_attention == {}  # maps only when asked
    with pytest.raises(DefectkitError, match="paint the mask"):
        session.generate("hole", image=good)


def test_sdxl_inpainting_backend_and_saved_attention_maps(registered, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    options = {"backend": "sdxl_inpainting", "steps": 2, "attention_branch": "object", "max_boxes": 3}
    generate = {"mask": {"source": "random", "dilate": 1}, "save_attention": True}
    run = run_recipe_dict(recipe(train=options, generate=generate), tmp_path / "run")
    from defectkit_diffusion.api import read_adapter

    assert read_adapter(run / "01_train" / "adapter").family == "sdxl"
    assert json.loads((run / "metrics.json").read_text())["generate"]["generated_images"] == 3
    # save_attention: one map per image and defect type, named in the metadata, at the image's size
    root = run / "02_generate" / "generated"
    records = [json.loads(line) for line in (root / "metadata.jsonl").read_text().splitlines()]
    assert [sorted(r["attention"]) for r in records] == [["color"], ["hole"], ["color", "hole"]]
    combined = {}
    for record in records:
        for defect, name in record["attention"].items():
            plane = np.asarray(Image.open(root / name))
            assert plane.shape == (48, 48) and plane.max() == 255 and record["attention_max"][defect] > 0
            combined[defect] = plane if len(record["attention"]) == 2 else combined.get(defect)
    assert not np.array_equal(combined["hole"], combined["color"])  # each token's own map
    assert not (run / "02_generate" / ".shards").exists()


def test_extension_losses_train_and_are_logged(registered, tmp_path, monkeypatch):
    from defectkit_defectfill.tiny import LPIPS_FACTORY

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from defectkit_diffusion.tiny import build_tiny_pipeline

    # one model for all three runs: a tiny UNet with cross-attention at both decoder resolutions
    model = {"tiny_model": False, "model": str(build_tiny_pipeline("sd15", tmp_path / "m", True, attention_levels=2))}
    plain = run_recipe_dict(recipe(train=model, with_generate=False), tmp_path / "plain")
    assert "final_loss_lpips" not in json.loads((plain / "metrics.json").read_text())["train"]
    weights = load_file(plain / "01_train" / "adapter" / "pytorch_lora_weights.safetensors")
    cases = {
        "lpips": {"lambda_lpips": 1.0, "lpips_extractor": LPIPS_FACTORY},
        "attention_consistency": {"lambda_attention_consistency": 5.0},
    }
    for term, options in cases.items():
        run = run_recipe_dict(recipe(train={**model, **options}, with_generate=False), tmp_path / term)
        value = json.loads((run / "metrics.json").read_text())["train"][f"final_loss_{term}"]
        assert np.isfinite(value) and value > 0, term
        tags = {json.loads(line)["tag"] for line in (run / "scalars.jsonl").read_text().splitlines()}
        assert f"train/defectfill/loss_{term}" in tags
        # the term reaches the weights: the same seed and data train a different adapter
        other = load_file(run / "01_train" / "adapter" / "pytorch_lora_weights.safetensors")
        assert other.keys() == weights.keys() and any(not torch.allclose(weights[k], other[k]) for k in weights), term


def test_attention_consistency_needs_two_decoder_resolutions(registered, tmp_path, monkeypatch):
    from defectkit_diffusion.tiny import build_tiny_pipeline

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    folder = build_tiny_pipeline("sd15", tmp_path / "one_level", inpainting=True)  # cross-attention at one
    train = {"tiny_model": False, "model": str(folder), "lambda_attention_consistency": 1.0}
    with pytest.raises(DefectkitError, match="cross-attention at 1 .*set it to 0"):
        run_recipe_dict(recipe(train=train, with_generate=False), tmp_path / "run")


def test_resume_equals_uninterrupted(registered, tmp_path, monkeypatch):
    from defectkit_finetune.api import FinetuneTrainer

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    options = {"grad_accumulation": 2, "dropout": 0.1, "augment": {"hflip": 0.5, "cutmix": 0.5}}
    data = recipe(train=options, with_generate=False)
    straight = run_recipe_dict(data, tmp_path / "straight")

    original = FinetuneTrainer.save
    saved = []

    def save_then_interrupt(self, ctx, manager, step, *args):
        original(self, ctx, manager, step, *args)
        saved.append(step)
        raise KeyboardInterrupt  # Ctrl-C right after the checkpoint of step 2

    monkeypatch.setattr(FinetuneTrainer, "save", save_then_interrupt)
    with pytest.raises(RunInterrupted):
        run_recipe_dict(data, tmp_path / "resumed")
    monkeypatch.setattr(FinetuneTrainer, "save", original)
    assert saved == [2]

    resumed = run_recipe(validate_recipe(data, get_registry()), out=tmp_path / "resumed", resume=True)
    assert "resumed from the checkpoint of step 2" in (resumed / "run.log").read_text()
    for name in ("pytorch_lora_weights.safetensors", "hole.safetensors", "color.safetensors"):
        a = load_file(straight / "01_train" / "adapter" / name)
        b = load_file(resumed / "01_train" / "adapter" / name)
        assert a.keys() == b.keys() and len(a) > 0
        for key in a:
            torch.testing.assert_close(a[key], b[key], atol=1e-6, rtol=1e-5)


def test_nonfinite_loss_is_skipped_and_counted(registered, tmp_path, monkeypatch):
    from defectkit_defectfill.trainer import DefectFillObjective

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    forward = DefectFillObjective.forward
    calls = []

    def sometimes_nan(self, *args, **kwargs):
        calls.append(1)
        total, parts, maps = forward(self, *args, **kwargs)
        return (total * float("nan"), parts, maps) if len(calls) == 2 else (total, parts, maps)

    monkeypatch.setattr(DefectFillObjective, "forward", sometimes_nan)
    # with gradient checkpointing: its recompute in backward must repeat the attention capture's ops
    run = run_recipe_dict(recipe(train={"gradient_checkpointing": True}, with_generate=False), tmp_path / "run")
    metrics = json.loads((run / "metrics.json").read_text())["train"]
    assert metrics["nonfinite_steps"] == 1 and np.isfinite(metrics["final_loss"])
    weights = load_file(run / "01_train" / "adapter" / "pytorch_lora_weights.safetensors")
    assert all(torch.isfinite(v).all() for v in weights.values())
    assert "loss is nan, step skipped" in (run / "run.log").read_text()
