"""``openai``: captions from any OpenAI-compatible vision API (OpenAI, a local vLLM or Ollama server).

- The API key is read from the environment variable ``api_key_env`` when the
  first request is made; it is never stored in the options, the run directory,
  the cache or a log line, and it is scrubbed from server error messages.
- Retries: the ``openai`` client's own (``max_retries``). It retries 408, 409,
  429, 5xx, time-outs and connection errors with exponential back-off
  (0.5 s doubling to 8 s, with jitter) and honours ``Retry-After``; writing our
  own loop around it would either double the retries or duplicate that policy.
- ``concurrency`` requests run at once in a thread pool (the client is thread-safe).
- Answers are cached on disk under sha256(image bytes sent, instruction,
  model, decoding options), so a re-run, or a second recipe over the same
  images, never pays twice.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import logging
import os
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from defectkit.errors import DefectkitError
from defectkit.io import write_json
from defectkit_captions.base import CaptionProvider
from defectkit_captions.config import OpenAICaptionConfig
from defectkit_captions.templates import render, sample_fields

if TYPE_CHECKING:
    from PIL import Image

    from defectkit.data.sample import Sample

log = logging.getLogger("defectkit.captions.openai")


class FailedAnswer(Exception):
    """A request that produced no usable caption: skippable under ``on_error: skip``."""


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/defectkit/captions``, else ``~/.cache/defectkit/captions``."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "defectkit" / "captions"


def encode_image(image: Image.Image, image_format: str, max_side: int | None) -> bytes:
    """The bytes sent (and hashed for the cache): shrunk to ``max_side`` and encoded as PNG or JPEG."""
    image = image.convert("RGB")
    if max_side is not None and max(image.size) > max_side:
        image = image.copy()
        image.thumbnail((max_side, max_side))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG" if image_format == "png" else "JPEG", quality=95)
    return buffer.getvalue()


class AnswerCache:
    """Answers on disk, one small JSON file per key (written atomically, safe across threads and runs)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    @staticmethod
    def key(image_bytes: bytes, prompt: str, model: str, options: dict[str, Any]) -> str:
        identity = {"image": hashlib.sha256(image_bytes).hexdigest(), "prompt": prompt, "model": model, **options}
        return hashlib.sha256(json.dumps(identity, sort_keys=True).encode("utf-8")).hexdigest()

    def _path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.json"

    def get(self, key: str) -> str | None:
        path = self._path(key)
        if not path.exists():
            return None
        try:
            text = json.loads(path.read_text(encoding="utf-8")).get("text")
        except (json.JSONDecodeError, AttributeError):  # a foreign or damaged file: ask again
            return None
        return text if isinstance(text, str) else None

    def put(self, key: str, text: str, model: str, prompt: str) -> None:
        write_json(self._path(key), {"text": text, "model": model, "prompt": prompt})


class OpenAICaptioner(CaptionProvider):
    """Captions from a chat-completions vision model, one request per image (cached)."""

    name = "openai"
    config: OpenAICaptionConfig

    def __init__(self, config: OpenAICaptionConfig) -> None:
        super().__init__(config)
        self._lock = threading.Lock()
        # set when a request fails for good (a refused key) or on Ctrl-C: queued images send nothing more
        self._stop = threading.Event()

    @property
    def model_id(self) -> str:
        return self.config.model

    @property
    def chunk_size(self) -> int:
        # a few waves of requests per chunk: the pool stays busy, and an interrupted step loses little
        return self.config.concurrency * 4

    @cached_property
    def _api_key(self) -> str:
        key = os.environ.get(self.config.api_key_env, "")
        if not key:
            raise DefectkitError(
                f"openai captions: the environment variable {self.config.api_key_env} is not set; export your API key "
                "there (a local vLLM or Ollama server accepts any non-empty value), or name another with api_key_env"
            )
        return key

    @cached_property
    def client(self) -> Any:
        """The ``openai.OpenAI`` client (created on first use, after the key is found)."""
        from openai import OpenAI

        return OpenAI(
            api_key=self._api_key,
            base_url=self.config.base_url,
            timeout=self.config.timeout,
            max_retries=self.config.max_retries,
        )

    @cached_property
    def cache(self) -> AnswerCache | None:
        if not self.config.cache:
            return None
        return AnswerCache(Path(self.config.cache_dir).expanduser() if self.config.cache_dir else default_cache_dir())

    def instruction(self, sample: Sample) -> str:
        return render(self.config.instruction_for(sample.defect_type), sample_fields(sample))

    def _decoding_options(self) -> dict[str, Any]:
        options: dict[str, Any] = {self.config.token_limit_param: self.config.max_tokens}
        if self.config.temperature is not None:
            options["temperature"] = self.config.temperature
        return options

    def _count(self, name: str) -> None:
        with self._lock:
            self.stats[name] += 1

    def _scrub(self, text: str) -> str:
        """``text`` without the key: some servers quote the key they refused."""
        return text.replace(self._api_key, "***")

    def _request(self, image_bytes: bytes, prompt: str) -> str:
        import openai

        mime = "image/png" if self.config.image_format == "png" else "image/jpeg"
        image_url: dict[str, str] = {"url": f"data:{mime};base64,{base64.b64encode(image_bytes).decode('ascii')}"}
        if self.config.detail is not None:
            image_url["detail"] = self.config.detail
        messages = [
            {
                "role": "user",
                "content": [{"type": "text", "text": prompt}, {"type": "image_url", "image_url": image_url}],
            }
        ]
        where = f"{self.config.base_url or 'the OpenAI API'} (model {self.config.model})"
        self._count("api_requests")
        try:
            response = self.client.chat.completions.create(
                model=self.config.model, messages=messages, **self._decoding_options()
            )
        except openai.APITimeoutError:
            raise FailedAnswer(
                f"{where} did not answer within {self.config.timeout:g} s, {self.config.max_retries} retries included"
            ) from None
        except openai.AuthenticationError:
            raise DefectkitError(
                f"openai captions: {where} refused the key in ${self.config.api_key_env} (401); check the key"
            ) from None
        except (openai.RateLimitError, openai.InternalServerError, openai.APIConnectionError) as error:
            raise FailedAnswer(
                f"{where} failed after {self.config.max_retries} retries: {self._scrub(str(error))}"
            ) from None
        except openai.APIStatusError as error:  # 400, 403, 404 ...: the request itself is wrong, for every image
            raise DefectkitError(
                f"openai captions: {where} answered {error.status_code}: {self._scrub(str(error))}"
            ) from None
        except (ValueError, openai.APIResponseValidationError) as error:  # JSONDecodeError is a ValueError
            raise FailedAnswer(f"{where} sent a malformed answer ({type(error).__name__}: {error})") from None
        choices = getattr(response, "choices", None)
        message = choices[0].message if choices else None
        text = getattr(message, "content", None)
        if not isinstance(text, str) or not text.strip():
            refusal = getattr(message, "refusal", None)
            reason = f"the model refused: {refusal}" if refusal else "no text in choices[0].message.content"
            raise FailedAnswer(f"{where} sent a malformed answer ({reason})")
        return text.strip()

    def caption_one(self, image: Image.Image, sample: Sample) -> str | None:
        """The caption of one image: from the cache, else from the API (``None`` if skipped)."""
        prompt = self.instruction(sample)
        image_bytes = encode_image(image, self.config.image_format, self.config.max_side)
        options = {**self._decoding_options(), "detail": self.config.detail}
        key = AnswerCache.key(image_bytes, prompt, self.config.model, options)
        if self.cache is not None:
            cached = self.cache.get(key)
            if cached is not None:
                self._count("cache_hits")
                return cached
        try:
            text = self._request(image_bytes, prompt)
        except FailedAnswer as error:
            if self.config.on_error == "raise":
                raise DefectkitError(
                    f"openai captions: image {sample.id}: {error}; set on_error: skip to leave such images out"
                ) from None
            log.warning("openai captions: skipped image %s: %s", sample.id, error)
            return None
        if self.cache is not None:
            self.cache.put(key, text, self.config.model, prompt)
        return text

    def caption_images(self, images: Sequence[Image.Image], samples: Sequence[Sample]) -> list[str | None]:
        """Captions for ``images``, ``concurrency`` requests at a time; ``None`` for skipped images."""
        _ = self._api_key  # a missing key is one clear error, raised before any thread starts
        self._stop.clear()
        with ThreadPoolExecutor(max_workers=max(1, min(self.config.concurrency, len(images)))) as pool:
            pairs = zip(images, samples, strict=True)
            futures = [pool.submit(self._caption_unless_stopped, image, sample) for image, sample in pairs]
            try:
                return [future.result() for future in futures]
            except BaseException:
                self._stop.set()
                raise

    def _caption_unless_stopped(self, image: Image.Image, sample: Sample) -> str | None:
        """:meth:`caption_one` in a worker thread, skipped once another request failed for good.

        A stopped image's ``None`` is never seen: the failure it follows is raised first.
        """
        if self._stop.is_set():
            return None
        try:
            return self.caption_one(image, sample)
        except BaseException:
            self._stop.set()
            raise
