"""An OpenAI-compatible chat-completions server on 127.0.0.1 for tests, scripted answer by answer.

Each request takes the next behaviour from :attr:`FakeOpenAI.script` (``ok``
once the script is used up):

- ``ok``: a normal answer, ``"steel <8 hex digits of the image's sha256> <defect name>"``;
- ``429``: rate limited, with ``retry-after-ms: 50``;
- ``500``: an internal server error;
- ``401``: the key is refused, and the error body quotes the key (as some servers do);
- ``slow``: a normal answer after 1.5 s (longer than the tests' time-out);
- ``malformed``: ``200 OK`` with a body that is not JSON;
- ``empty``: valid JSON whose message has no content.

Every request is recorded (time, Authorization header, JSON body), and the
greatest number of requests in flight at once is kept.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class FakeOpenAI:
    def __init__(self, delay: float = 0.0) -> None:
        self.script: list[str] = []
        self.delay = delay  # seconds every answer waits: lets concurrent requests overlap
        self.requests: list[dict[str, Any]] = []
        self.max_in_flight = 0
        self._in_flight = 0
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.handle_error = lambda request, address: None  # a client that hung up on a slow answer
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_port}/v1"

    def __enter__(self) -> FakeOpenAI:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _next(self, record: dict[str, Any]) -> str:
        with self._lock:
            self.requests.append(record)
            self._in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self._in_flight)
            return self.script.pop(0) if self.script else "ok"

    def _done(self) -> None:
        with self._lock:
            self._in_flight -= 1

    @staticmethod
    def answer_for(body: dict[str, Any]) -> str:
        content = body["messages"][0]["content"]
        text = next(part["text"] for part in content if part["type"] == "text")
        url = next(part["image_url"]["url"] for part in content if part["type"] == "image_url")
        digest = hashlib.sha256(base64.b64decode(url.split(",", 1)[1])).hexdigest()[:8]
        name = re.search(r"the (.+?) defect", text)
        return f"steel {digest} {name.group(1) if name else ''}".strip()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:  # keep test output clean
                pass

            def _send(self, status: int, payload: bytes, headers: dict[str, str] | None = None) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(payload)

            def _error(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
                self._send(status, json.dumps({"error": {"message": message, "type": "test"}}).encode(), headers)

            def do_POST(self) -> None:
                if self.path != "/v1/chat/completions":
                    self._error(404, f"no route {self.path}")
                    return
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                auth = self.headers.get("Authorization", "")
                behaviour = fake._next({"time": time.monotonic(), "authorization": auth, "body": body})
                try:
                    time.sleep(fake.delay)
                    if behaviour == "429":
                        self._error(429, "rate limited", {"retry-after-ms": "50"})
                    elif behaviour == "500":
                        self._error(500, "internal error")
                    elif behaviour == "401":
                        self._error(401, f"Incorrect API key provided: {auth.removeprefix('Bearer ')}")
                    elif behaviour == "malformed":
                        self._send(200, b'{"choices": [{"message": ')
                    else:
                        if behaviour == "slow":
                            time.sleep(1.5)
                        content = None if behaviour == "empty" else fake.answer_for(body)
                        message = {"role": "assistant", "content": content}
                        answer = {
                            "id": f"chatcmpl-{len(fake.requests)}",
                            "object": "chat.completion",
                            "created": int(time.time()),
                            "model": body["model"],
                            "choices": [{"index": 0, "finish_reason": "stop", "message": message}],
                        }
                        self._send(200, json.dumps(answer).encode())
                finally:
                    fake._done()

        return Handler
