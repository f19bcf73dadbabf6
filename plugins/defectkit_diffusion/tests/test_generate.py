import json

import numpy as np
import pytest
from PIL import Image

from defectkit.errors import DefectkitError, RecipeError
from defectkit.generated import read_generated
from defectkit.plugins import get_registry
from defectkit.recipe import validate_recipe
from defectkit.testing import run_recipe_dict
from defectkit_diffusion.tiny import build_tiny_adapter

T = "defectkit_metrics.tiny"  # offline stand-ins for the extractors
NEU = {"format": "synthetic", "category": "steel", "with": {"kind": "neu", "size": 64, "n_train": 3, "n_test": 1}}
CLASSES = ["crazing", "inclusion", "patches", "pitted_surface", "rolled-in_scale", "scratches"]


def recipe(steps, data=NEU):
    return {"version": 1, "name": "tiny_generate", "seed": 3, "device": "cpu", "data": data, "steps": steps}


def generate_step(model, **options):
    return {
        "generate": {
            "use": "stable_diffusion",
            "with": {
                "backend": {"use": "sd15", "with": {"model": str(model), "dtype": "fp32"}},
                "scheduler": {"use": "unipc"},
                "images_per_class": 2,
                "steps": 2,
                "width": 32,
                "height": 32,
                "batch_size": 2,
                **options,
            },
        }
    }


def test_end_to_end_generate_and_evaluate(registered, tiny_models, tmp_path):
    options = {"image_size": 32, "batch_size": 8}
    steps = [
        {"caption": {"use": "keywords"}},
        generate_step(
            tiny_models["sd15"],
            controlnets=[
                {"use": "softedge", "scale": 0.5, "with": {"controlnet": str(tiny_models["sd15_controlnet"])}},
                {
                    "use": "depth",
                    "scale": 0.4,
                    "with": {"controlnet": str(tiny_models["sd15_controlnet"]), "estimator": str(tiny_models["depth"])},
                },
            ],
            guidance_per_class={"scratches": 9.0},
            guidance_rescale=0.7,
            defect_types=["scratches", "patches"],
        ),
        {
            "evaluate": {
                "use": ["fid", "kid", "lpips", "edge_ssim", "lbp"],
                "with": {
                    "fid": {**options, "extractor": f"{T}:tiny_features"},
                    "kid": {**options, "extractor": f"{T}:tiny_features", "subsets": 2},
                    "lpips": {**options, "extractor": f"{T}:tiny_pyramid"},
                    "edge_ssim": options,
                    "lbp": options,
                },
            }
        },
    ]
    run = run_recipe_dict(recipe(steps), tmp_path / "run")
    folder = run / "02_generate" / "generated"
    records = [json.loads(line) for line in (folder / "metadata.jsonl").read_text().splitlines()]
    assert [r["defect_type"] for r in records] == ["scratches", "scratches", "patches", "patches"]
    assert [r["seed"] for r in records] == [3, 4, 5, 6]  # the recipe seed, one per image
    assert [r["guidance"] for r in records] == [9.0, 9.0, 7.5, 7.5]
    first = records[0]
    assert first["scheduler"]["name"] == "unipc" and first["steps"] == 2 and first["guidance_rescale"] == 0.7
    assert [c["modality"] for c in first["controls"]] == ["softedge", "depth"]
    assert first["controls"][0]["annotator_used"] == "sobel"  # no HED weights offline: the weight-free fallback
    assert [c["scale"] for c in first["controls"]] == [0.5, 0.4]
    assert first["source"].startswith("steel") or "/" in first["source"]
    # prompts come from the captions artifact of the caption step
    captions = {
        json.loads(line)["id"]: json.loads(line)["caption"]
        for line in next(run.glob("01_*/captions.jsonl")).read_text().splitlines()
    }
    # the source (gen_train) is not among the captioned train images: the class's captions are used in turn
    assert first["prompt"] in {c for i, c in captions.items() if "/scratches/" in i}
    samples = read_generated(folder)
    assert len(samples) == 4 and Image.open(samples[0].image_path).size == (32, 32)
    assert (folder / "contact_sheet.png").is_file() and not (run / "02_generate" / ".shards").exists()
    manifest = json.loads((run / "02_generate" / "manifest.json").read_text())
    assert manifest["artifacts"]["generated_images"] == "02_generate/generated"
    figures = json.loads((run / "metrics.json").read_text())["evaluate"]
    assert figures["fid"] > 0 and figures["kid_mean"] == figures["kid_mean"] and figures["lpips"] > 0
    assert figures["lpips_pairing"] == "source"
    assert -1 <= figures["edge_ssim"] <= 1 and 0 < figures["lbp_intersection"] <= 1


def test_same_seed_same_image_and_batching_does_not_change_it(registered, tiny_models, tmp_path):
    one = run_recipe_dict(
        recipe([generate_step(tiny_models["sd15"], batch_size=1, defect_types=["crazing"])]), tmp_path / "a"
    )
    two = run_recipe_dict(
        recipe([generate_step(tiny_models["sd15"], batch_size=2, defect_types=["crazing"])]), tmp_path / "b"
    )
    a, b = (read_generated(r / "01_generate" / "generated") for r in (one, two))
    for x, y in zip(a, b, strict=True):
        difference = np.abs(np.asarray(x.load_image(), float) - np.asarray(y.load_image(), float))
        assert difference.max() <= 2  # batched vs single matmuls: rounding only
    assert not np.array_equal(np.asarray(a[0].load_image()), np.asarray(a[1].load_image()))
    record = json.loads((one / "01_generate" / "generated" / "metadata.jsonl").read_text().splitlines()[0])
    assert record["prompt"] == "a photo of crazing defect on steel surface, industrial inspection image"
    assert "source" not in record  # nothing real conditioned a template prompt without ControlNets


def test_each_controlnet_gets_its_own_control_image_in_a_batch(registered, tiny_models, tmp_path):
    nets = [
        {"use": "softedge", "scale": 0.8, "with": {"controlnet": str(tiny_models["sd15_controlnet"])}},
        {"use": "canny", "scale": 0.6, "with": {"controlnet": str(tiny_models["sd15_controlnet"])}},
    ]
    images = {}
    for batch in (1, 2):
        step = generate_step(tiny_models["sd15"], batch_size=batch, controlnets=nets, defect_types=["patches"])
        run = run_recipe_dict(recipe([step]), tmp_path / f"b{batch}")
        images[batch] = [np.asarray(s.load_image(), float) for s in read_generated(run / "01_generate" / "generated")]
    for alone, batched in zip(images[1], images[2], strict=True):
        assert np.abs(alone - batched).max() <= 2


def test_adapter_tokens_and_lora_change_the_output(registered, tiny_models, tmp_path):
    adapter = build_tiny_adapter(tiny_models["sd15"], tmp_path / "adapter", ["scratches"])
    runs = {}
    for name, choice in (("with", str(adapter)), ("without", "off")):
        step = generate_step(tiny_models["sd15"], adapter=choice, defect_types=["scratches"], images_per_class=1)
        runs[name] = run_recipe_dict(recipe([step]), tmp_path / name)
    with_, without = (read_generated(runs[n] / "01_generate" / "generated")[0] for n in ("with", "without"))
    assert with_.caption == "a photo of <scratches> scratches defect on steel surface, industrial inspection image"
    assert without.caption == "a photo of scratches defect on steel surface, industrial inspection image"
    assert np.abs(np.asarray(with_.load_image(), float) - np.asarray(without.load_image(), float)).mean() > 1


def test_sdxl_adapter_and_session(registered, tiny_models, tmp_path):
    adapter = build_tiny_adapter(tiny_models["sdxl"], tmp_path / "adapter", ["scratches", "patches"], family="sdxl")
    component = registered.get("generator", "stable_diffusion")
    generator = component.create(
        {
            "backend": {"use": "sdxl", "with": {"model": str(tiny_models["sdxl"]), "dtype": "fp32"}},
            "scheduler": {"use": "dpmpp_2m"},
            "guidance_rescale": 0.7,
            "adapter": str(adapter),
            "width": 32,
            "height": 32,
            "steps": 2,
        }
    )
    run_dir = tmp_path / "run"
    (run_dir / "01_generate").mkdir(parents=True)
    (run_dir / "recipe.resolved.yaml").write_text("version: 1\nname: t\nsteps: []\n")  # what marks a run folder
    session = generator.open_session(run_dir, "generate", "cpu")
    assert session.labels == ["patches", "scratches"]
    image = session.generate("scratches", seed=1)
    again = session.generate("scratches", seed=1)
    other = session.generate("scratches", seed=2, steps=3, guidance=3.0, prompt="<scratches> on steel")
    assert image.size == (32, 32) and np.array_equal(np.asarray(image), np.asarray(again))
    assert not np.array_equal(np.asarray(image), np.asarray(other))
    with pytest.raises(DefectkitError, match="unknown class 'dents'"):
        session.generate("dents")


def test_session_finds_the_runs_adapter_through_the_manifests(registered, tiny_models, tmp_path):
    run_dir = tmp_path / "run"
    adapter = build_tiny_adapter(tiny_models["sd15"], run_dir / "01_dora" / "adapter", ["crazing", "scratches"])
    manifest = {"id": "dora", "status": "done", "artifacts": {"adapter": "01_dora/adapter"}}
    (run_dir / "01_dora" / "manifest.json").write_text(json.dumps(manifest))
    (run_dir / "02_generate").mkdir()
    (run_dir / "recipe.resolved.yaml").write_text("version: 1\nname: t\nsteps: []\n")  # what marks a run folder
    options = {"backend": {"use": "sd15", "with": {"model": str(tiny_models["sd15"]), "dtype": "fp32"}}}
    generator = registered.get("generator", "stable_diffusion").create(
        {**options, "width": 32, "height": 32, "steps": 2}
    )
    session = generator.open_session(run_dir, "generate", "cpu")
    assert session.labels == ["crazing", "scratches"] and session.loaded.adapter.folder == adapter
    assert session.generate("crazing").size == (32, 32)
    with pytest.raises(DefectkitError, match="no step 'nowhere'"):
        generator.open_session(run_dir, "nowhere", "cpu")


@pytest.mark.parametrize("family", ["sdxl", "sd3"])
def test_other_families_with_controlnet(registered, tiny_models, tmp_path, family):
    scheduler = "flow_match_euler" if family == "sd3" else "euler_ancestral"
    step = generate_step(
        tiny_models[family],
        backend={"use": family, "with": {"model": str(tiny_models[family]), "dtype": "fp32"}},
        scheduler={"use": scheduler},
        controlnets=[{"use": "canny", "with": {"controlnet": str(tiny_models[f"{family}_controlnet"])}}],
        defect_types=["inclusion"],
        prompts="template",
    )
    run = run_recipe_dict(recipe([step]), tmp_path / "run")
    samples = read_generated(run / "01_generate" / "generated")
    assert len(samples) == 2 and np.asarray(samples[0].load_image()).std() > 0


def test_inpainting_backend_repaints_the_defect_mask(registered, tiny_models, tmp_path):
    data = {
        "format": "synthetic",
        "category": "carpet",
        "with": {"kind": "mvtec", "size": 64, "n_train": 1, "n_test": 3},
    }
    step = generate_step(
        tiny_models["sd15_inpainting"],
        backend={"use": "sd15_inpainting", "with": {"model": str(tiny_models["sd15_inpainting"]), "dtype": "fp32"}},
        source_split="test",
        images_per_class=1,
    )
    run = run_recipe_dict(recipe([step], data=data), tmp_path / "run")
    samples = read_generated(run / "01_generate" / "generated")
    assert samples and all(s.mask_path is not None and s.mask_path.is_file() for s in samples)


def test_recipe_mistakes_are_one_line(registered, tiny_models):
    def check(match, **options):
        with pytest.raises(RecipeError, match=match):
            validate_recipe(recipe([generate_step(tiny_models["sd15"], **options)]), get_registry())

    check(r"steps\[0\]\.generate\.with\.backend: .*did you mean 'sdxl'", backend={"use": "sdx"})
    check(r"with\.controlnets: .*\[0\]\.use: unknown controlnet modality 'heed'.*did you mean 'hed'", controlnets=[{"use": "heed"}])
    check(
        r"with\.scheduler: .*with\.use_karras_sigmas", scheduler={"use": "dpmpp_2m", "with": {"use_karras_sigmas": 3}}
    )
    check(r"unknown placeholder \{class\}", template="a {class}")


def test_runtime_mistakes_are_one_line(registered, tiny_models, tmp_path):
    cases = [
        (
            {"guidance_per_class": {"scrathes": 5.0}, "defect_types": ["scratches"]},
            "name scrathes, which is not a class",
        ),
        (
            {
                "controlnets": [{"use": "normal"}],
                "backend": {"use": "sdxl", "with": {"model": str(tiny_models["sdxl"])}},
            },
            r"controlnet_modality normal: no ControlNet weights known for the sdxl family .* --set steps\[0\]\.generate\.with\.controlnets\[0\]\.with\.controlnet=/local/folder",
        ),
        (
            {"backend": {"use": "sd15", "with": {"model": str(tmp_path / "missing")}}},
            r"--set steps\[0\]\.generate\.with\.backend\.with\.model=/local/folder",
        ),
    ]
    for number, (options, match) in enumerate(cases):
        with pytest.raises(DefectkitError, match=match):
            run_recipe_dict(recipe([generate_step(tiny_models["sd15"], **options)]), tmp_path / f"run{number}")


def test_per_class_guidance_and_cfg_rescale_reach_the_pipeline_call(registered, tiny_models, tmp_path, monkeypatch):
    # a spy on the diffusers pipeline itself: the metadata could say 9.0 while the pipeline ran at 7.5
    import functools

    import diffusers

    calls = []
    original = diffusers.StableDiffusionPipeline.__call__

    @functools.wraps(original)  # the generator reads the pipeline's signature: the spy keeps it
    def spy(self, *args, **kwargs):
        calls.append({k: kwargs.get(k) for k in ("prompt", "guidance_scale", "guidance_rescale")})
        return original(self, *args, **kwargs)

    monkeypatch.setattr(diffusers.StableDiffusionPipeline, "__call__", spy)
    step = generate_step(
        tiny_models["sd15"], guidance_per_class={"scratches": 9.0}, guidance_rescale=0.7, defect_types=["scratches", "patches"]
    )
    run_recipe_dict(recipe([step]), tmp_path / "run")
    by_class = {("scratches" if "scratches" in call["prompt"][0] else "patches"): call for call in calls}
    assert by_class["scratches"]["guidance_scale"] == 9.0 and by_class["patches"]["guidance_scale"] == 7.5
    assert all(call["guidance_rescale"] == 0.7 for call in calls)  # SD 1.5 pipelines rescale natively
