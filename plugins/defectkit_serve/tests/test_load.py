"""The web UI under load (127.0.0.1 only, bounded in count and time): every request is answered, the ones beyond
the bounded wait at once with "busy"; temporary files and memory do not grow with use (issue 20, item 8)."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from defectkit_patchknn.predictor import PatchKNNPredictor
from PIL import Image

from defectkit_serve.app import InspectTab, ServeOptions, build_app, find_servable, launch
from defectkit_serve.gate import Busy, ModelGate

#: concurrent inspect requests of the load test, and how many may wait behind the running one
REQUESTS = 40
MAX_WAITING = 4
#: resident memory may grow by at most this much over the whole test (a 49-megapixel upload included)
RSS_BOUND_MB = 300


def _rss_mb() -> float:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * 4096 / 2**20


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_the_gate_admits_one_and_a_bounded_queue_then_says_busy():
    gate = ModelGate(max_waiting=1)
    release = threading.Event()

    def hold():
        with gate.enter():
            release.wait(30)

    running, waiting = threading.Thread(target=hold), threading.Thread(target=hold)
    running.start()
    while gate.admitted < 1:
        time.sleep(0.01)
    waiting.start()
    while gate.admitted < 2:
        time.sleep(0.01)
    started = time.perf_counter()
    with pytest.raises(Busy, match="busy: 2 requests are being served or waiting; try again in a moment"):
        with gate.enter():
            pass
    assert time.perf_counter() - started < 1, "refused at once, not after waiting"
    release.set()
    running.join(30)
    waiting.join(30)
    assert gate.admitted == 0
    with gate.enter():  # free again
        pass


@pytest.fixture
def served(patchknn_run, monkeypatch):
    slow = PatchKNNPredictor.predict

    def predict(self, *args):
        time.sleep(0.3)  # a model of realistic speed, so that requests pile up
        return slow(self, *args)

    monkeypatch.setattr(PatchKNNPredictor, "predict", predict)
    options = ServeOptions(device="cpu", max_waiting=MAX_WAITING)
    servable = find_servable(patchknn_run)
    demo = build_app(servable, options)
    _, url, _ = launch(demo, servable, options, host="127.0.0.1", port=_free_port())
    assert url.startswith("http://127.0.0.1:")
    yield url
    demo.close()


def test_concurrent_inspect_requests_succeed_or_are_told_busy_at_once(served, carpet_images, tmp_path):
    from gradio_client import Client, handle_file

    image = next((carpet_images / "carpet" / "test").glob("[!g]*/000.png"))
    large = tmp_path / "large.png"
    # 49 megapixels, smooth (a small file, a large decode): its memory must be given back after the request
    ramp = np.linspace(0, 255, 7000, dtype=np.float32).astype(np.uint8)
    Image.fromarray(np.broadcast_to(ramp[None, :, None], (7000, 7000, 3)).copy()).save(large, compress_level=1)

    client = Client(served, verbose=False, max_workers=REQUESTS)
    client.predict(handle_file(str(image)), "detect", 0.5, api_name="/inspect")  # warm: model loaded, caches
    before = _rss_mb()
    started = time.perf_counter()
    jobs = [client.submit(handle_file(str(image)), "detect", 0.5, api_name="/inspect") for _ in range(REQUESTS)]
    verdicts = [job.result(timeout=max(1.0, 120 - (time.perf_counter() - started)))[2] for job in jobs]
    seconds = time.perf_counter() - started
    scored = sum("data-verdict=" in v for v in verdicts)
    busy = sum("busy:" in v and "try again in a moment" in v for v in verdicts)
    assert scored + busy == REQUESTS, [v[:120] for v in verdicts if "data-verdict=" not in v and "busy:" not in v]
    assert scored >= 1 + MAX_WAITING and busy >= 1

    after_load = _rss_mb() - before
    large_verdict = client.predict(handle_file(str(large)), "detect", 0.5, api_name="/inspect")[2]
    assert "data-verdict=" in large_verdict
    grown = _rss_mb() - before
    print(
        f"load: {REQUESTS} concurrent inspect requests in {seconds:.1f} s: {scored} scored, {busy} busy; "
        f"resident memory {before:.0f} MB before, {after_load:+.0f} MB after them, {grown:+.0f} MB after one "
        "49 MP upload"
    )
    assert seconds < 60 and grown < RSS_BOUND_MB


def test_threshold_moves_after_a_batch_leave_no_new_folders(patchknn_run, carpet_images):
    tab = InspectTab(find_servable(patchknn_run), ServeOptions(device="cpu"))
    scratch = Path(tab._scratch.name)
    folder = [str(p) for p in (carpet_images / "carpet" / "test").rglob("*.png")]
    state, *_ = tab.batch(folder, tab_step(tab), 0.0)
    for threshold in np.linspace(0, 5, 20):
        tab.redraw_batch(state, float(threshold))
    assert len(list(scratch.iterdir())) == 1, "one folder per batch, not per threshold move"
    for _ in range(20):
        tab.batch(folder, tab_step(tab), 0.0)
    assert len(list(scratch.iterdir())) <= 16, "only the latest batches keep their CSV"


def tab_step(tab: InspectTab) -> str:
    return next(iter(tab.steps))
