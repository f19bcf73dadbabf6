"""The keywords provider, and the caption step every provider shares: templates, captions.jsonl, resume."""

import json
from dataclasses import replace

import pytest

from defectkit.plugins import get_registry
from defectkit.recipe import validate_recipe
from defectkit.run import run_recipe
from defectkit.testing import run_recipe_dict
from defectkit_captions.config import KeywordsConfig
from defectkit_captions.keywords import KeywordCaptioner, count_mentions
from defectkit_captions.tests.helpers import CLASSES, recipe, samples


def read_lines(path):
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_count_mentions_matches_whole_words_only():
    texts = ["Pits, pits and more PITS", "a pitstop; fine cracks", "fine  cracks"]
    assert count_mentions("pits", texts) == 3
    assert count_mentions("fine cracks", texts) == 1  # "fine  cracks" (two spaces) is not the keyword


def test_keywords_are_ranked_by_frequency_class_first_then_paper():
    captioner = KeywordCaptioner(
        KeywordsConfig(
            paper_keywords=["grayscale", "steel surface", "macro photography"],
            class_keywords={"crazing": ["crazed texture", "fine cracks", "network of cracks"]},
            corpus=[
                "fine cracks, fine cracks and a network of cracks on the steel surface",
                "a grayscale steel surface",
            ],
            class_top_k=2,
            paper_top_k=2,
        )
    )
    crazing = replace(samples(1)[0], defect_type="crazing")
    assert captioner.keywords_for(crazing) == ["fine cracks", "network of cracks", "steel surface", "grayscale"]
    # a sample's own caption counts too: three mentions lift "crazed texture" above "fine cracks" (two in the corpus)
    described = replace(crazing, caption="crazed texture, crazed texture, crazed texture")
    assert captioner.keywords_for(described)[:2] == ["crazed texture", "fine cracks"]
    # a class without a keyword list is described by its own name
    unknown = replace(crazing, defect_type="oil_stain")
    assert captioner.keywords_for(unknown)[0] == "oil stain"


def test_default_lists_give_each_neu_class_its_own_caption():
    captioner = KeywordCaptioner(KeywordsConfig())
    base = samples(1)[0]
    neu = ["crazing", "inclusion", "patches", "pitted_surface", "rolled-in_scale", "scratches"]
    captions = {t: captioner.caption_images([None], [replace(base, defect_type=t)])[0] for t in neu}
    assert len(set(captions.values())) == 6
    assert (
        captions["crazing"] == "fine cracks, network of cracks, crazed texture, steel surface, hot-rolled steel strip"
    )
    assert captioner.caption_images([None], [replace(base, defect_type="crazing")]) == [captions["crazing"]]


def test_caption_step_writes_templated_captions_jsonl(registered, tmp_path):
    options = {
        "template": "a photo of {trigger} {caption} on {object_class}",
        "triggers": {"crazing": "<neu-crazing>"},
        "default_trigger": "sks {defect_name}",
        "class_top_k": 1,
        "paper_top_k": 0,
    }
    run_dir = run_recipe_dict(recipe("keywords", options), tmp_path / "run")
    manifest = json.loads((run_dir / "01_caption" / "manifest.json").read_text())
    assert manifest["artifacts"] == {"captions": "01_caption/captions.jsonl"}
    lines = read_lines(run_dir / "01_caption" / "captions.jsonl")
    assert [line["id"] for line in lines] == [s.id for s in samples(2)]
    assert set(lines[0]) == {"id", "defect_type", "object_class", "caption", "raw", "provider", "model"}
    by_type = {line["defect_type"]: line for line in lines}
    assert set(by_type) == set(CLASSES)
    assert by_type["crazing"]["caption"] == "a photo of <neu-crazing> fine cracks on steel"
    assert by_type["pitted_surface"]["caption"] == "a photo of sks pitted surface pits on steel"
    assert by_type["scratches"]["raw"] == "scratches" and by_type["scratches"]["provider"] == "keywords"
    metrics = json.loads((run_dir / "metrics.json").read_text())["caption"]
    assert metrics["captions"] == 6 and metrics["reused"] == 0 and metrics["skipped"] == 0
    assert not (run_dir / "01_caption" / ".captions.partial.jsonl").exists()


def test_max_images_and_split(registered, tmp_path):
    run_dir = run_recipe_dict(recipe("keywords", {"split": "test", "max_images": 4}), tmp_path / "run")
    lines = read_lines(run_dir / "01_caption" / "captions.jsonl")
    assert [line["id"] for line in lines] == [s.id for s in samples(2, "test")][:4]
    assert lines[0]["caption"].startswith("<crazing>, fine cracks")


def test_resume_reuses_written_lines_and_captions_the_rest(registered, tmp_path, monkeypatch):
    run_dir = run_recipe_dict(recipe("keywords"), tmp_path / "run")
    step = run_dir / "01_caption"
    lines = (step / "captions.jsonl").read_text().splitlines(keepends=True)
    # an interrupted step: no manifest, no final file, a partial file whose last line was cut short
    (step / "manifest.json").unlink()
    (step / "captions.jsonl").unlink()
    marked = [line.replace('"provider": "keywords"', '"provider": "from-before"') for line in lines[:2]]
    (step / ".captions.partial.jsonl").write_text("".join(marked) + lines[2][:25])

    seen = []
    original = KeywordCaptioner.caption_images
    monkeypatch.setattr(
        KeywordCaptioner,
        "caption_images",
        lambda self, images, chunk: seen.extend(s.id for s in chunk) or original(self, images, chunk),
    )
    validated = validate_recipe(recipe("keywords"), get_registry(), source="<test recipe>")
    run_recipe(validated, out=run_dir, resume=True)

    resumed = read_lines(step / "captions.jsonl")
    assert [line["provider"] for line in resumed] == ["from-before"] * 2 + ["keywords"] * 4
    assert seen == [s.id for s in samples(2)][2:]  # the cut line's image is captioned again
    assert json.loads((run_dir / "metrics.json").read_text())["caption"]["reused"] == 2


def test_an_empty_split_is_a_clear_error(registered, tmp_path):
    from defectkit.errors import DefectkitError

    with pytest.raises(DefectkitError, match="split 'val' has no samples"):
        run_recipe_dict(recipe("keywords", {"split": "val"}), tmp_path / "run")


def test_only_the_main_process_captions(tmp_path):
    class OtherProcess:
        """The parts of a StepContext a non-main process's caption step touches."""

        is_main_process = False
        step_dir = tmp_path
        artifacts: dict = {}

        def add_artifact(self, name, path):
            self.artifacts[name] = path

        def samples(self, split):
            raise AssertionError("a non-main process must not caption")

    ctx = OtherProcess()
    KeywordCaptioner(KeywordsConfig()).caption(ctx)
    assert ctx.artifacts == {"captions": tmp_path / "captions.jsonl"}
    assert list(tmp_path.iterdir()) == []
