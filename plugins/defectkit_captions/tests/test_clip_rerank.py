"""clip_rerank with tiny open_clip models built from a config dict and loaded as ``local-dir:`` models."""

import json

import pytest
import torch

from defectkit.errors import DefectkitError
from defectkit.testing import run_recipe_dict
from defectkit_captions.clip_rerank import ClipRerankCaptioner
from defectkit_captions.config import ClipRerankConfig
from defectkit_captions.tests.helpers import recipe, samples


def config(folders, **options) -> ClipRerankConfig:
    models = [{"name": f"local-dir:{folder}", "pretrained": None} for folder in folders]
    return ClipRerankConfig(models=models, **options)


def test_keywords_are_ranked_by_clip_similarity(tiny_clips):
    captioner = ClipRerankCaptioner(config(tiny_clips[:1], top_k=3))
    items = samples(1)
    images = [s.load_image() for s in items]
    scores = captioner.scores(images, items)
    for sample, ranked in zip(items, scores, strict=True):
        assert list(ranked) == captioner.candidates(sample)
        assert sum(ranked.values()) == pytest.approx(1.0, abs=1e-5)

    # the same probabilities by hand: the mean text embedding over the scoring templates, softmax of scaled cosines
    clip = captioner.models[0]
    crazing = items[0]
    texts = [
        [t.format(keyword=w, defect_name="crazing", object_class="steel") for t in captioner.config.scoring_templates]
        for w in captioner.candidates(crazing)
    ]
    with torch.no_grad():
        text = clip.model.encode_text(clip.tokenizer([t for group in texts for t in group]))
        text = torch.nn.functional.normalize(text, dim=-1).view(len(texts), len(texts[0]), -1).mean(1)
        text = torch.nn.functional.normalize(text, dim=-1)
        image = torch.nn.functional.normalize(clip.model.encode_image(clip.preprocess(images[0])[None]), dim=-1)
        expected = (clip.model.logit_scale.exp() * image @ text.T).softmax(-1)[0]
    assert list(scores[0].values()) == pytest.approx(expected.tolist(), abs=1e-5)

    captions = captioner.caption_images(images, items)
    best = sorted(scores[0], key=scores[0].get, reverse=True)[:3]
    assert captions[0] == ", ".join(best)
    assert all(len(caption.split(", ")) == 3 for caption in captions)


def test_an_ensemble_averages_the_models_probabilities(tiny_clips):
    items = samples(1)
    images = [s.load_image() for s in items]
    single = [ClipRerankCaptioner(config([folder])).scores(images, items) for folder in tiny_clips]
    ensemble = ClipRerankCaptioner(config(tiny_clips))
    assert ensemble.model_id == "+".join(f"local-dir:{folder}" for folder in tiny_clips)
    averaged = ensemble.scores(images, items)
    for row in range(len(items)):
        assert single[0][row] != pytest.approx(single[1][row])  # two different models
        for word, value in averaged[row].items():
            assert value == pytest.approx((single[0][row][word] + single[1][row][word]) / 2, abs=1e-6)


def test_paper_keywords_can_be_left_out(tiny_clips):
    captioner = ClipRerankCaptioner(config(tiny_clips[:1], use_paper_keywords=False, top_k=10))
    crazing = samples(1)[0]
    assert captioner.candidates(crazing) == captioner.config.class_keywords["crazing"]
    assert set(captioner.caption_images([crazing.load_image()], [crazing])[0].split(", ")) == set(
        captioner.config.class_keywords["crazing"]
    )


def test_an_unknown_model_is_a_clear_error():
    captioner = ClipRerankCaptioner(ClipRerankConfig(models=[{"name": "ViT-Q-99", "pretrained": None}]))
    with pytest.raises(DefectkitError, match="cannot load open_clip model 'ViT-Q-99'"):
        _ = captioner.models


def test_clip_rerank_caption_step(registered, tiny_clips, tmp_path):
    options = {
        "models": [{"name": f"local-dir:{tiny_clips[0]}", "pretrained": None}],
        "template": "a photo of {trigger} {caption}",
        "top_k": 2,
        "batch_size": 4,
    }
    run_dir = run_recipe_dict(recipe("clip_rerank", options), tmp_path / "run")
    lines = [json.loads(line) for line in (run_dir / "01_caption" / "captions.jsonl").read_text().splitlines()]
    assert len(lines) == 6
    for line in lines:
        assert line["caption"] == f"a photo of <{line['defect_type']}> {line['raw']}"
        assert len(line["raw"].split(", ")) == 2 and line["provider"] == "clip_rerank"


def test_the_seed_template_mixes_caption_keywords_class_keywords_and_trigger():
    from defectkit_captions.config import KeywordsConfig
    from defectkit_captions.keywords import KeywordCaptioner

    options = KeywordsConfig(
        template="{caption}, {keywords}, {class_keywords}, {trigger}",
        paper_keywords=["steel surface", "industrial inspection"],
        class_keywords={"crazing": ["fine cracks", "network of cracks"]},
    )
    record = KeywordCaptioner(options).record("a cracked plate", samples(1)[0])
    assert record["caption"] == "a cracked plate, steel surface, industrial inspection, fine cracks, network of cracks, <crazing>"


def test_prompt_variants_are_ranked_by_clip_and_the_closest_kept(tiny_clips):
    from defectkit_captions.config import KeywordsConfig
    from defectkit_captions.keywords import KeywordCaptioner

    variants = ["{prompt}, high detail, macro photography", "{prompt}, steel defect, {defect_name}"]
    options = KeywordsConfig(
        prompt_variants=variants, variant_model={"name": f"local-dir:{tiny_clips[0]}", "pretrained": None}
    )
    captioner = KeywordCaptioner(options)
    sample = samples(1)[0]
    image = sample.load_image()
    record = captioner.record("fine cracks", sample, image)
    scores = record["variant_scores"]
    base = captioner.final_caption("fine cracks", sample)
    assert list(scores) == [base, f"{base}, high detail, macro photography", f"{base}, steel defect, crazing"]
    assert record["caption"] == max(scores, key=scores.get)
    # the scores are CLIP cosines, computed here by hand
    clip = captioner._variant_clip
    with torch.no_grad():
        text = torch.nn.functional.normalize(clip.model.encode_text(clip.tokenizer(list(scores))), dim=-1)
        picture = torch.nn.functional.normalize(clip.model.encode_image(clip.preprocess(image)[None]), dim=-1)
    assert list(scores.values()) == pytest.approx((picture @ text.T)[0].tolist(), abs=1e-4)


def test_a_variant_without_the_prompt_is_refused():
    from pydantic import ValidationError

    from defectkit_captions.config import KeywordsConfig

    with pytest.raises(ValidationError, match=r"must contain \{prompt\}"):
        KeywordsConfig(prompt_variants=["macro photography"])
