"""The openai provider with the real ``openai`` client against a scripted OpenAI-compatible server on 127.0.0.1."""

import base64
import io
import json
import logging
import uuid

import pytest
from PIL import Image

from defectkit.errors import DefectkitError
from defectkit.testing import run_recipe_dict
from defectkit_captions.config import OpenAICaptionConfig
from defectkit_captions.openai_api import OpenAICaptioner
from defectkit_captions.tests.fake_openai import FakeOpenAI
from defectkit_captions.tests.helpers import recipe, samples

KEY_ENV = "DEFECTKIT_TEST_OPENAI_KEY"


@pytest.fixture
def key(monkeypatch) -> str:
    secret = f"sk-test-{uuid.uuid4().hex}"
    monkeypatch.setenv(KEY_ENV, secret)
    return secret


@pytest.fixture
def server():
    with FakeOpenAI() as fake:
        yield fake


def options(server: FakeOpenAI, tmp_path, **extra) -> dict:
    return {
        "model": "test-vision-model",
        "base_url": server.base_url,
        "api_key_env": KEY_ENV,
        "cache_dir": str(tmp_path / "cache"),
        "timeout": 5.0,
        **extra,
    }


def captioner(server, tmp_path, **extra) -> OpenAICaptioner:
    return OpenAICaptioner(OpenAICaptionConfig(**options(server, tmp_path, **extra)))


def caption_one(provider: OpenAICaptioner) -> str | None:
    sample = samples(1)[0]
    return provider.caption_images([sample.load_image()], [sample])[0]


def lines(run_dir) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "01_caption" / "captions.jsonl").read_text().splitlines()]


def test_captions_come_from_the_server(registered, server, key, tmp_path):
    extra = {"concurrency": 2, "max_side": 32, "instructions": {"scratches": "Name the {defect_name} defect briefly."}}
    run_dir = run_recipe_dict(recipe("openai", options(server, tmp_path, **extra)), tmp_path / "run")

    assert len(server.requests) == 6
    request = server.requests[0]
    assert request["authorization"] == f"Bearer {key}"
    body = request["body"]
    assert body["model"] == "test-vision-model" and body["max_completion_tokens"] == 150
    assert "temperature" not in body and len(body["messages"]) == 1
    text, image = body["messages"][0]["content"]
    assert text["text"].startswith("Describe the crazing defect in this grayscale image of a steel surface")
    mime, data = image["image_url"]["url"].split(",", 1)
    assert mime == "data:image/png;base64" and "detail" not in image["image_url"]
    assert Image.open(io.BytesIO(base64.b64decode(data))).size == (32, 32)  # shrunk from 40 px to max_side
    prompts = {r["body"]["messages"][0]["content"][0]["text"] for r in server.requests}
    assert "Name the scratches defect briefly." in prompts

    written = lines(run_dir)
    assert [line["id"] for line in written] == [s.id for s in samples(2)]
    for line in written:
        assert line["raw"].startswith("steel ") and line["model"] == "test-vision-model"
        assert line["caption"] == f"<{line['defect_type']}>, {line['raw']}"
    assert len({line["raw"] for line in written}) == 6  # one answer per image
    metrics = json.loads((run_dir / "metrics.json").read_text())["caption"]
    assert metrics["api_requests"] == 6 and "cache_hits" not in metrics


def test_the_cache_means_a_rerun_never_pays_twice(registered, server, key, tmp_path):
    first = run_recipe_dict(recipe("openai", options(server, tmp_path)), tmp_path / "run1")
    assert len(server.requests) == 6
    second = run_recipe_dict(recipe("openai", options(server, tmp_path)), tmp_path / "run2")
    assert len(server.requests) == 6  # not one request more
    assert lines(second) == lines(first)
    assert json.loads((second / "metrics.json").read_text())["caption"]["cache_hits"] == 6
    # another instruction, model or image is another question
    changed = options(server, tmp_path, instruction="List the visible {defect_name} features.")
    run_recipe_dict(recipe("openai", changed), tmp_path / "run3")
    assert len(server.requests) == 12
    run_recipe_dict(recipe("openai", options(server, tmp_path, cache=False)), tmp_path / "run4")
    assert len(server.requests) == 18
    assert len(list((tmp_path / "cache").rglob("*.json"))) == 12


def test_429_and_500_are_retried_with_back_off(server, key, tmp_path):
    server.script = ["429", "500"]
    assert caption_one(captioner(server, tmp_path, max_retries=2)).startswith("steel ")
    times = [r["time"] for r in server.requests]
    assert len(times) == 3
    assert times[1] - times[0] >= 0.05  # the server's retry-after-ms
    assert times[2] - times[1] >= 0.5 * 0.75  # the client's exponential back-off (0.5 s, up to 25 % jitter)


def test_retries_run_out(server, key, tmp_path):
    server.script = ["500", "500"]
    with pytest.raises(DefectkitError, match=r"image train/crazing/000.png: .* failed after 1 retries: .*500"):
        caption_one(captioner(server, tmp_path, max_retries=1))
    assert len(server.requests) == 2


def test_a_slow_answer_times_out_and_is_retried(server, key, tmp_path):
    server.script = ["slow"]
    assert caption_one(captioner(server, tmp_path, timeout=0.5, max_retries=1)).startswith("steel ")
    assert len(server.requests) == 2

    server.script = ["slow"]
    with pytest.raises(DefectkitError, match=r"did not answer within 0.5 s, 0 retries included"):
        caption_one(captioner(server, tmp_path, timeout=0.5, max_retries=0, cache=False))


@pytest.mark.parametrize(("behaviour", "reason"), [("malformed", "JSONDecodeError"), ("empty", "no text in choices")])
def test_a_malformed_answer_is_a_clear_error(server, key, tmp_path, behaviour, reason):
    server.script = [behaviour]
    with pytest.raises(DefectkitError, match=f"sent a malformed answer .*{reason}.*set on_error: skip"):
        caption_one(captioner(server, tmp_path, max_retries=0))


def test_malformed_answers_can_be_skipped_and_counted(registered, server, key, tmp_path):
    server.script = ["malformed", "empty"]
    extra = {"concurrency": 1, "max_retries": 0, "on_error": "skip"}
    run_dir = run_recipe_dict(recipe("openai", options(server, tmp_path, **extra)), tmp_path / "run")
    written = lines(run_dir)
    assert [line["id"] for line in written] == [s.id for s in samples(2)][2:]
    metrics = json.loads((run_dir / "metrics.json").read_text())["caption"]
    assert metrics["skipped"] == 2 and metrics["captions"] == 4 and metrics["api_requests"] == 6
    log = (run_dir / "run.log").read_text()
    assert log.count("skipped image train/crazing/") == 2 and "malformed answer" in log


def test_requests_run_concurrently_up_to_the_limit(key, tmp_path):
    with FakeOpenAI(delay=0.3) as server:
        provider = captioner(server, tmp_path, concurrency=3)
        items = samples(2)
        texts = provider.caption_images([s.load_image() for s in items], items)
    assert len(texts) == 6 and all(t.startswith("steel ") for t in texts)
    assert server.max_in_flight == 3


def test_a_missing_key_names_the_variable(server, monkeypatch, tmp_path):
    monkeypatch.delenv(KEY_ENV, raising=False)
    with pytest.raises(DefectkitError, match=f"environment variable {KEY_ENV} is not set") as raised:
        caption_one(captioner(server, tmp_path))
    assert "\n" not in str(raised.value)
    assert server.requests == []


def test_the_key_is_never_written_or_logged(registered, server, key, tmp_path, caplog, capsys):
    caplog.set_level(logging.DEBUG)  # everything: defectkit, openai, httpx
    server.script = ["429", "malformed"]
    extra = {"concurrency": 1, "max_retries": 1, "on_error": "skip"}
    run_dir = run_recipe_dict(recipe("openai", options(server, tmp_path, **extra)), tmp_path / "run")
    assert len(lines(run_dir)) == 5 and server.requests[0]["authorization"] == f"Bearer {key}"

    server.script = ["401"]  # the server quotes the key it refused
    with pytest.raises(DefectkitError, match=f"refused the key in \\${KEY_ENV} \\(401\\)") as refused:
        caption_one(captioner(server, tmp_path, cache=False))
    assert key not in str(refused.value)

    written = [p for root in (run_dir, tmp_path / "cache") for p in root.rglob("*") if p.is_file()]
    assert len(written) > 10
    for path in written:
        assert key.encode() not in path.read_bytes(), path
    output = capsys.readouterr()
    assert key not in caplog.text and key not in output.out and key not in output.err


def test_a_failed_step_resumes_without_asking_twice(registered, server, key, tmp_path):
    from defectkit.plugins import get_registry
    from defectkit.recipe import validate_recipe
    from defectkit.run import run_recipe

    server.script = ["ok"] * 4 + ["401"]  # the second wave (4 x concurrency images) fails
    config = recipe("openai", options(server, tmp_path, concurrency=1, cache=False))
    with pytest.raises(DefectkitError, match="401"):
        run_recipe_dict(config, tmp_path / "run")
    assert len(server.requests) == 5 and not (tmp_path / "run" / "01_caption" / "manifest.json").exists()

    run_recipe(validate_recipe(config, get_registry(), source="<test recipe>"), out=tmp_path / "run", resume=True)
    assert len(server.requests) == 5 + 2  # only the images of the failed wave
    assert [line["id"] for line in lines(tmp_path / "run")] == [s.id for s in samples(2)]
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["caption"]["reused"] == 4
