"""defectkit serve without a browser: the run reader, upload checks, inspectors, the model cache, batch CSV,
the Generate back end with a fake generator, and the CLI's errors."""

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from defectkit_patchknn.predictor import PatchKNNPredictor
from PIL import Image

from defectkit.cli import main
from defectkit.testing import check_plugin_light, run_recipe_dict
from defectkit_serve.app import InspectTab, ServeOptions, _editor_image_and_mask, build_app, find_servable
from defectkit_serve.inspectors import MODELS, get_predictor
from defectkit_serve.runinfo import read_run
from defectkit_serve.tests import fake_generator
from defectkit_serve.uploads import UploadError, UploadLimits, open_upload


def test_hooks_are_light():
    check_plugin_light("defectkit_serve.hooks")


def cli_error(args, capsys) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    assert exit_info.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


def test_cli_refuses_a_folder_that_is_not_a_run(tmp_path, capsys):
    (tmp_path / "photos").mkdir()
    line = cli_error(["serve", str(tmp_path / "photos")], capsys)
    assert "not a defectkit run directory (no recipe.resolved.yaml)" in line and "photos" in line


def test_cli_refuses_a_run_with_nothing_to_serve(tmp_path, capsys):
    run = tmp_path / "run"
    (run / "01_train").mkdir(parents=True)
    (run / "recipe.resolved.yaml").write_text("name: x\nsteps:\n  - train: {use: patch_knn, with: {}}\n")
    (run / "01_train" / "manifest.json").write_text(
        json.dumps({"id": "train", "kind": "train", "status": "done", "components": [{"name": "patch_knn"}]})
    )
    line = cli_error(["serve", str(run)], capsys)
    assert "nothing to serve" in line and "01_train (train: patch_knn)" in line


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def test_upload_checks_name_the_file_and_the_problem(tmp_path):
    limits = UploadLimits(max_bytes=2000)
    good = tmp_path / "part.png"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(good)
    assert open_upload(good, limits).size == (8, 8)
    with pytest.raises(UploadError, match=r"report\.pdf: not an accepted image type; upload one of PNG, JPG"):
        open_upload(write(tmp_path / "report.pdf", b"%PDF"), limits)
    with pytest.raises(UploadError, match=r"big\.png: .* MB is over the 0\.0019\d* MB upload limit"):
        open_upload(write(tmp_path / "big.png", b"x" * 3000), limits)
    with pytest.raises(UploadError, match=r"notes\.jpg: cannot be read as an image \(not an image file"):
        open_upload(write(tmp_path / "notes.jpg", b"hello"), limits)
    noise = tmp_path / "noise.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(noise)
    truncated = write(tmp_path / "cut.png", noise.read_bytes()[:-2000])
    with pytest.raises(UploadError, match=r"cut\.png: cannot be read as an image \(the file is damaged or truncated\)"):
        open_upload(truncated, UploadLimits())
    wide = tmp_path / "wide.png"
    Image.new("L", (4000, 20)).save(wide)
    with pytest.raises(UploadError, match=r"wide\.png: 4000 x 20 pixels is over the limit"):
        open_upload(wide, UploadLimits(max_pixels=10_000))


def test_read_run_finds_steps_options_and_artifacts(patchknn_run):
    run = read_run(patchknn_run)
    assert [s.dirname for s in run.steps] == [
        "01_train",
        "02_detect",
        "03_detect_patchcore",
        "04_evaluate",
        "05_report",
    ]
    detect = run.detect_steps()[0]
    assert detect.component == "patch_knn" and detect.options["blur_sigma"] == 2.0
    assert run.report is not None and "image_auroc" in run.metrics["evaluate"]


def test_patchknn_inspector_is_loaded_once_and_the_threshold_needs_no_model(patchknn_run, carpet_images, monkeypatch):
    MODELS.clear()
    servable = find_servable(patchknn_run)
    tab = InspectTab(servable, ServeOptions(device="cpu"))
    step_id = servable.detect_steps[0].step.id
    good = carpet_images / "carpet" / "test" / "good" / "000.png"
    defect = next((carpet_images / "carpet" / "test").glob("[!g]*/000.png"))

    calls = []
    predict = PatchKNNPredictor.predict
    monkeypatch.setattr(PatchKNNPredictor, "predict", lambda s, *a: calls.append(a) or predict(s, *a))
    inspector = tab.inspector(step_id)
    low, high = inspector.score_range
    assert low <= inspector.threshold <= high and "f1_adaptive" in inspector.threshold_source

    state, heat, second, verdict, _ = tab.inspect(str(defect), step_id, inspector.threshold)
    state_good, *_ = tab.inspect(str(good), step_id, inspector.threshold)
    analysis = state["analysis"]
    assert heat.shape == (448, 448, 3) and second.label == "Input, as the model sees it"
    assert f"{analysis.score:.4f}" in verdict
    print(f"patch_knn scores: defect {analysis.score:.3f}, good {state_good['analysis'].score:.3f}")

    # the verdict follows the threshold; no model call, no reload
    _, above = tab.redraw(state, analysis.score + 1e-3)
    _, at = tab.redraw(state, analysis.score)
    assert 'data-verdict="normal"' in above and 'data-verdict="anomalous"' in at
    assert len(calls) == 2 and MODELS.loads == 1
    assert get_predictor(servable.run, servable.detect_steps[0], "cpu") is inspector


def test_batch_scores_a_folder_into_a_csv_that_follows_the_threshold(patchknn_run, carpet_images, tmp_path):
    servable = find_servable(patchknn_run)
    tab = InspectTab(servable, ServeOptions(device="cpu"))
    step_id = servable.detect_steps[0].step.id
    folder = [str(p) for p in (carpet_images / "carpet" / "test").rglob("*.png")]
    junk = write(tmp_path / "broken.png", b"garbage")
    state, table, csv_path, gallery, note = tab.batch([*folder, str(junk), str(tmp_path / "readme.txt")], step_id, 0.0)
    with open(csv_path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == len(folder) and all(r["verdict"] == "anomalous" for r in rows)  # threshold 0: all flagged
    assert "Skipped 1: broken.png: cannot be read as an image" in note
    assert len(gallery) == len(folder)
    scores = sorted(float(r["anomaly_score"]) for r in rows)
    middle = (scores[0] + scores[-1]) / 2
    _, csv_path, _ = tab.redraw_batch(state, middle)
    with open(csv_path, newline="") as handle:
        verdicts = [(float(r["anomaly_score"]) >= middle, r["verdict"]) for r in csv.DictReader(handle)]
    assert {v for v in verdicts} == {(True, "anomalous"), (False, "normal")}


def test_decodiff_run_shows_category_and_reconstruction(tmp_path, carpet_images):
    from defectkit_decodiff.tests.test_recipe import full, recipe

    steps = full(train={"classifier_steps": 30})[:2]
    run_dir = run_recipe_dict(recipe(steps, category=["carpet", "bottle"], n_test=1), tmp_path / "run")
    servable = find_servable(run_dir)
    tab = InspectTab(servable, ServeOptions(device="cpu"))
    inspector = tab.inspector(servable.detect_steps[0].step.id)
    assert inspector.threshold_source.startswith("percentile_99_of_normal")
    image = Image.open(next((carpet_images / "carpet" / "test").glob("[!g]*/000.png")))
    analysis = inspector.predict([image], ["x.png"])[0]
    assert analysis.category in ("carpet", "bottle") and analysis.category_source.startswith("recognised")
    assert analysis.reconstruction.shape == analysis.image.shape == (32, 32, 3)
    assert analysis.anomaly_map.shape == (32, 32) and analysis.score == pytest.approx(float(analysis.anomaly_map.max()))
    card = __import__("defectkit_serve.render", fromlist=["verdict_card"]).verdict_card(analysis, 0.0, "anomaly score")
    assert f"category <b>{analysis.category}</b>" in card


def test_dinov3_run_shows_class_probabilities_and_mask(tmp_path):
    from defectkit_dinov3.tests.test_recipe import recipe
    from defectkit_dinov3.tests.tiny import tiny_train_options

    steps = [
        {"train": {"use": "dinov3_multitask", "with": tiny_train_options()}},
        {"detect": {"use": "dinov3_multitask"}},
    ]
    run_dir = run_recipe_dict(recipe(steps, n_train=2, n_test=1), tmp_path / "run")
    servable = find_servable(run_dir)
    tab = InspectTab(servable, ServeOptions(device="cpu"))
    step_id = servable.detect_steps[0].step.id
    picture = tmp_path / "steel.png"
    Image.fromarray((np.random.default_rng(0).random((40, 40, 3)) * 255).astype(np.uint8)).save(picture)
    state, heat, second, verdict, probabilities = tab.inspect(str(picture), step_id, 0.5)
    analysis = state["analysis"]
    assert set(analysis.probabilities) == set(tab.inspector(step_id).loaded.classes)
    assert sum(analysis.probabilities.values()) == pytest.approx(1.0, abs=1e-4)
    assert analysis.mask.shape == (32, 32) and 0 <= analysis.score <= 1
    assert f"class <b>{analysis.predicted_class}</b>" in verdict and probabilities.visible
    assert second.label == "Predicted defect mask"


def test_generate_tab_opens_the_session_once_and_passes_the_inputs(register_plugin, tmp_path):
    register_plugin(fake_generator, "fake-generators")
    recipe = {
        "version": 1,
        "name": "gen",
        "device": "cpu",
        "steps": [
            {"generate": {"use": "fake_paint", "with": {"labels": ["scratch", "stain"]}}},
            {"generate": {"id": "batch", "use": "fake_batch_only"}},
        ],
    }
    run_dir = run_recipe_dict(recipe, tmp_path / "run")
    servable = find_servable(run_dir)
    assert [g.step.id for g in servable.generators] == ["generate"]
    assert any("fake_batch_only offers no interactive session" in n for n in servable.notes)

    from defectkit_serve.app import GenerateTab
    from defectkit_serve.generate import label_hint

    MODELS.clear()
    fake_generator.FakeSession.opened = 0
    tab = GenerateTab(servable, ServeOptions(device="cpu"))
    assert label_hint(servable.run, servable.generators[0]) == ["scratch", "stain"]
    one, info, _ = tab.generate("generate", "scratch", "", "", 3, None, None, None, None)
    two, *_ = tab.generate("generate", "scratch", " a long scratch ", "", 3, 7.5, 20, None, None)
    assert np.array_equal(np.asarray(one), np.asarray(two)), "same seed, same image"
    assert fake_generator.FakeSession.opened == 1, "the session is opened once and reused"
    session = MODELS.get((str(servable.run.run_dir), "generate", "cpu"), lambda: None)
    assert session.calls[1] == {"label": "scratch", "prompt": "a long scratch", "seed": 3, "guidance": 7.5,
                                "steps": 20, "control": False, "image": None, "mask": None}  # fmt: skip

    # DefectFill style: a good image and a painted region -> the defect lands in the region
    good = Image.new("RGBA", (32, 32), (128, 128, 128, 255))
    layer = np.zeros((32, 32, 4), np.uint8)
    layer[2:10, 20:30] = (255, 32, 32, 255)
    editor = {"background": good, "layers": [Image.fromarray(layer)], "composite": None}
    picture, info, _ = tab.generate("generate", "stain", "", "", 0, None, None, None, editor)
    painted = np.asarray(picture)
    assert (painted[2:10, 20:30] == (30, 30, 220)).all() and (painted[20:, :10] == 128).all()
    assert "inpainted in the painted region" in info

    import gradio as gr

    with pytest.raises(gr.Error, match="unknown defect class 'crack': choose one of scratch, stain"):
        tab.generate("generate", "crack", "", "", 0, None, None, None, None)

    demo = build_app(servable, ServeOptions(device="cpu"))
    tabs = [b.label for b in demo.blocks.values() if isinstance(b, gr.Tab)]
    assert tabs == ["Generate", "Run"], "no detect step: no Inspect tab"


def test_editor_without_paint_gives_no_mask():
    assert _editor_image_and_mask(None) == (None, None)
    image, mask = _editor_image_and_mask({"background": Image.new("RGB", (4, 4)), "layers": [], "composite": None})
    assert image.size == (4, 4) and mask is None


def test_cli_listens_locally_without_a_share_link_unless_asked(patchknn_run, monkeypatch, capsys):
    import gradio as gr

    from defectkit_serve import app

    launched = []

    def fake_launch(demo, servable, options, host, port, share):
        launched.append({"host": host, "port": port, "share": share, "max_bytes": options.limits.max_bytes})
        return None, f"http://{host}:{port or 7860}/", "https://example.gradio.live" if share else None

    monkeypatch.setattr(app, "launch", fake_launch)
    monkeypatch.setattr(gr.Blocks, "block_thread", lambda self: None)
    for args in ([], ["--host", "0.0.0.0", "--port", "8080", "--share", "--max-upload-mb", "2"]):
        with pytest.raises(SystemExit) as exit_info:
            main(["serve", str(patchknn_run), "--device", "cpu", *args])
        assert exit_info.value.code == 0
    assert launched == [
        {"host": "127.0.0.1", "port": None, "share": False, "max_bytes": 20 * 1024 * 1024},
        {"host": "0.0.0.0", "port": 8080, "share": True, "max_bytes": 2 * 1024 * 1024},
    ]
    printed = capsys.readouterr().out
    assert "defectkit serve: http://127.0.0.1:7860/" in printed
    assert "anyone who can reach this machine can use the UI" in printed and "public link https://example" in printed


def test_a_second_detect_step_is_a_choice_with_its_own_threshold(patchknn_run):
    MODELS.clear()
    servable = find_servable(patchknn_run)
    assert [s.step.id for s in servable.detect_steps] == ["detect", "detect_patchcore"]
    tab = InspectTab(servable, ServeOptions(device="cpu"))
    first, second = tab.inspector("detect"), tab.inspector("detect_patchcore")
    assert first is not second and first.threshold != second.threshold
    slider, state, *_ = tab.switch("detect_patchcore")
    assert slider.value == pytest.approx(second.threshold, abs=1e-6) and state is None
    assert MODELS.loads == 2


def test_cli_refuses_a_device_the_machine_lacks(patchknn_run, capsys):
    line = cli_error(["serve", str(patchknn_run), "--device", "cuda:7"], capsys)
    assert line.startswith("defectkit: error: --device cuda:7: this machine has") and "use auto or cpu" in line
    line = cli_error(["serve", str(patchknn_run), "--device", "gpu"], capsys)
    assert "--device gpu: not a torch device" in line


def test_the_page_is_built_before_the_detector_loads_and_its_load_event_brings_the_threshold(patchknn_run, monkeypatch):
    # serve answers its first request without waiting for torch and the model: they load in the background
    import threading

    MODELS.clear()
    release = threading.Event()
    original = PatchKNNPredictor.__init__

    def slow_load(self, *args, **kwargs):
        assert release.wait(timeout=60), "the test never let the model load"
        original(self, *args, **kwargs)

    monkeypatch.setattr(PatchKNNPredictor, "__init__", slow_load)
    servable = find_servable(patchknn_run)
    demo = build_app(servable, ServeOptions(device="cpu"))  # returns while the model is still held back
    assert MODELS.loads == 0
    release.set()
    tab = InspectTab(servable, ServeOptions(device="cpu"))
    slider, ready, *_ = tab.first_load(servable.detect_steps[0].step.id)
    inspector = tab.inspector(servable.detect_steps[0].step.id)
    assert ready is True and slider.value == pytest.approx(inspector.threshold, abs=1e-6)
    assert MODELS.loads == 1  # the background warm-up and the load event share one load
    demo.close()


def test_decodiff_sampling_controls_change_the_scores_and_come_back_to_the_runs(tmp_path, carpet_images):
    # seed 003's interface: the DDIM steps and the start step of the deviation correction, per request
    from defectkit_serve.app import _sampling_options

    train = {"latent": "pixel", "pixel_patch": 2, "image_size": 32, "crop_size": 32, "model_size": "XS",
             "model_channels": 16, "num_heads": 2, "context_dim": 8, "channel_mult": [1, 2],
             "attention_resolutions": [2], "steps": 2, "batch_size": 4, "warmup_steps": 1}
    run = run_recipe_dict(
        {
            "version": 1, "name": "dd", "device": "cpu",
            "data": {"format": "mvtec", "root": str(carpet_images), "category": "carpet"},
            "steps": [{"train": {"use": "decodiff", "with": train}}, {"detect": {"use": "decodiff"}}],
        },
        tmp_path / "run",
    )
    MODELS.clear()
    servable = find_servable(run)
    tab = InspectTab(servable, ServeOptions(device="cpu"))
    step_id = servable.detect_steps[0].step.id
    inspector = tab.inspector(step_id)
    assert inspector.sampling() == {"sample_steps": 5, "start_t": 5}  # no DoD gate trained: no fusion switch
    box, gated, steps, start = tab._sampling(inspector)
    assert box.visible and gated.visible is False and steps.value == 5 and start.maximum == 9
    image = next((carpet_images / "carpet" / "test").glob("[!g]*/000.png"))
    base = tab.inspect(str(image), step_id, inspector.threshold)[0]["analysis"].score
    changed = tab.inspect(str(image), step_id, inspector.threshold, True, None, 2, 8)[0]["analysis"].score
    assert inspector.scorer.config.sample_steps == 2 and inspector.scorer.config.start_t == 8
    assert changed != base
    again = tab.inspect(str(image), step_id, inspector.threshold, True, None, 5, 5)[0]["analysis"].score
    assert again == pytest.approx(base)
    assert _sampling_options(True, 3, 4) == {"fusion": "gated", "sample_steps": 3, "start_t": 4}
    MODELS.clear()


EXAMPLE_SRC = Path(__file__).resolve().parents[3] / "examples" / "defectkit-example" / "src"


@pytest.fixture
def example_run(register_plugin, defectkit_registry, monkeypatch, tiny_mvtec, tmp_path) -> Path:
    """A finished run of the example package's pixel_zscore: a third-party detector serve knows nothing of."""
    monkeypatch.syspath_prepend(str(EXAMPLE_SRC))
    from defectkit_example import hooks

    if "example" not in defectkit_registry.plugins:  # a source checkout: the example is not pip-installed
        register_plugin(hooks, "example")
    recipe = {
        "version": 1,
        "name": "example",
        "data": {"format": "mvtec", "root": str(tiny_mvtec), "category": "carpet"},
        "steps": [{"detect": {"use": "pixel_zscore", "with": {"size": 32}}}],
    }
    return run_recipe_dict(recipe, tmp_path / "run")


def test_a_third_party_detector_is_served_and_its_verdict_follows_the_threshold(example_run, tiny_mvtec, monkeypatch):
    from defectkit_example.predictor import PixelZScorePredictor

    MODELS.clear()
    servable = find_servable(example_run)
    assert [(s.name, s.step.id) for s in servable.detect_steps] == [("pixel_zscore", "detect")]
    calls = []
    predict = PixelZScorePredictor.predict
    monkeypatch.setattr(PixelZScorePredictor, "predict", lambda s, *a: calls.append(a) or predict(s, *a))
    tab = InspectTab(servable, ServeOptions(device="cpu"))
    predictor = tab.inspector("detect")
    assert "on the run's test scores" in predictor.threshold_source
    defect = next((tiny_mvtec / "carpet" / "test").glob("[!g]*/000.png"))
    state, heat, second, verdict, probabilities = tab.inspect(str(defect), "detect", predictor.threshold)
    record = state["analysis"]
    assert heat.shape == (448, 448, 3) and record.anomaly_map.shape == (32, 32)
    assert record.score == pytest.approx(float(record.anomaly_map.max())) and f"{record.score:.4f}" in verdict
    assert probabilities.visible is False
    _, above = tab.redraw(state, record.score + 1e-3)
    _, at = tab.redraw(state, record.score)
    heat_low, _ = tab.redraw(state, 0.0)
    assert 'data-verdict="normal"' in above and 'data-verdict="anomalous"' in at
    assert not np.array_equal(heat_low, heat), "the outlined region follows the threshold"
    assert len(calls) == 1 and MODELS.loads == 1, "moving the threshold never predicts again"
