"""The Gradio app of ``defectkit serve``: Inspect, Generate and Runs tabs over one run directory."""

from __future__ import annotations

import html
import logging
import os
import shutil
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# a local inspection tool does not report usage to gradio's servers
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import gradio as gr  # noqa: E402
import numpy as np  # noqa: E402

from defectkit.errors import DefectkitError  # noqa: E402
from defectkit.io import write_text  # noqa: E402
from defectkit.protocols import Predictor, SessionCapabilities  # noqa: E402
from defectkit_serve import inspectors, render  # noqa: E402
from defectkit_serve.gate import MAX_WAITING, Busy, ModelGate  # noqa: E402
from defectkit_serve.generate import GeneratorStep, find_generators, get_session, label_hint  # noqa: E402
from defectkit_serve.inspectors import DetectorStep, find_detectors, get_predictor  # noqa: E402
from defectkit_serve.runinfo import RunInfo, read_run  # noqa: E402
from defectkit_serve.uploads import IMAGE_SUFFIXES, UploadError, UploadLimits, open_upload  # noqa: E402

log = logging.getLogger("defectkit.serve")

#: the most overlays the batch gallery shows (the CSV has every image)
BATCH_GALLERY = 24
#: batches whose CSV is kept on disk (each rewritten as the threshold moves); older ones are removed
KEPT_BATCHES = 16
#: gradio's cache of uploads and served files: every 10 minutes, files older than an hour are removed
GRADIO_CACHE = (600, 3600)

CSS = """
.dk-header {display:flex; align-items:baseline; gap:1rem; flex-wrap:wrap; padding:.2rem 0 .6rem;
  border-bottom:1px solid var(--border-color-primary); margin-bottom:.4rem}
.dk-header h1 {font-size:1.5rem; margin:0}
.dk-header .dk-run {font-size:1.05rem; font-weight:600}
.dk-header .dk-path {color:var(--body-text-color-subdued); font-family:var(--font-mono); font-size:.85rem}
.dk-pill {padding:.1rem .55rem; border-radius:999px; font-size:.8rem; background:var(--background-fill-secondary);
  border:1px solid var(--border-color-primary)}
.dk-verdict {border-radius:12px; padding:1rem 1.2rem}
.dk-verdict, .dk-verdict * {color:#fff !important}
.dk-verdict.dk-good {background:#15803d}
.dk-verdict.dk-bad {background:#b91c1c}
.dk-verdict-word {font-size:2.1rem; font-weight:800; letter-spacing:.06em; line-height:1.1}
.dk-verdict-score {font-size:1.05rem; margin-top:.35rem}
.dk-verdict-extra {font-size:.98rem; margin-top:.2rem}
.dk-verdict-file {font-size:.8rem; opacity:.85; margin-top:.4rem; font-family:var(--font-mono)}
.dk-card {border-radius:12px; padding:.9rem 1.1rem; border:1px dashed var(--border-color-primary);
  color:var(--body-text-color-subdued)}
.dk-card.dk-error {border:1px solid #b91c1c; background:#fef2f2; color:#7f1d1d}
.dk-card-title {font-weight:700; margin-bottom:.25rem}
.dk-note {color:var(--body-text-color-subdued); font-size:.88rem}
#dk-gen-out img {width:100%; height:100%; object-fit:contain}
.dk-report {width:100%; height:760px; border:1px solid var(--border-color-primary); border-radius:8px}
"""


@dataclass
class ServeOptions:
    """How ``defectkit serve`` runs: the device models load on and the upload limits."""

    device: str = "auto"
    limits: UploadLimits = field(default_factory=UploadLimits)
    #: model requests that may wait behind the running one; more are answered "busy" at once
    max_waiting: int = MAX_WAITING


@dataclass
class Servable:
    """What one run offers: detect steps for Inspect, generator sessions for Generate, and notes."""

    run: RunInfo
    detect_steps: list[DetectorStep]
    generators: list[GeneratorStep]
    notes: list[str]


def find_servable(run_dir: str | Path) -> Servable:
    """Read ``run_dir``; a folder that is not a run, or a run with nothing to serve, is a DefectkitError."""
    run = read_run(run_dir)
    detect_steps, notes = find_detectors(run)
    generators, generator_notes = find_generators(run)
    notes += generator_notes
    if not detect_steps and not generators:
        kinds = ", ".join(f"{s.dirname} ({s.kind}: {', '.join(s.components) or 'built-in'})" for s in run.steps)
        extra = f"; {'; '.join(notes)}" if notes else ""
        raise DefectkitError(
            f"{run.run_dir}: nothing to serve: no finished detect step whose detector has a predictor "
            "(open_predictor) and no generate step whose generator has an interactive session (open_session) "
            f"(finished steps: {kinds or 'none'}){extra}"
        )
    return Servable(run, detect_steps, generators, notes)


def _file_url(path: Path) -> str:
    # relative, so that the link also works behind a proxy that serves the app under a prefix
    return f"gradio_api/file={path}"


def _step_label(entry: DetectorStep) -> str:
    return f"{entry.name}: step {entry.step.dirname}"


# -- the Inspect tab -----------------------------------------------------------------------------------


class InspectTab:
    def __init__(self, servable: Servable, options: ServeOptions, gate: ModelGate | None = None) -> None:
        self.run = servable.run
        self.steps = {s.step.id: s for s in servable.detect_steps}
        self.options = options
        self.gate = gate or ModelGate(options.max_waiting)
        # one folder for the batch CSVs of this app, removed when the process ends; one sub-folder per batch
        self._scratch = tempfile.TemporaryDirectory(prefix="defectkit-serve-")
        self._batches: list[Path] = []

    def inspector(self, step_id: str) -> Predictor:
        """The step's predictor (:class:`defectkit.protocols.Predictor`), opened on first use."""
        return get_predictor(self.run, self.steps[step_id], self.options.device)

    def build(self, demo: gr.Blocks) -> None:
        """The tab's components; the first detector loads in the background, so the page answers at once.

        The page's load event fills in the threshold slider (range, default, where the default comes from)
        as soon as the model is there; an image uploaded before then is scored at the saved threshold.
        """
        first = next(iter(self.steps.values()))
        threading.Thread(target=self._warm, args=(first.step.id,), name="defectkit-serve-warm", daemon=True).start()
        state = gr.State(None)
        ready = gr.State(False)  # True once the load event has put the detector's own threshold on the slider
        choices = [(_step_label(s), s.step.id) for s in self.steps.values()]
        with gr.Row(equal_height=False):
            with gr.Column(scale=4, min_width=320):
                model = gr.Dropdown(
                    choices=choices,
                    value=first.step.id,
                    label="Detector",
                    info="the run's detect steps",
                    visible=len(choices) > 1,
                    elem_id="dk-model",
                )
                upload = gr.File(
                    label="Image to inspect",
                    file_count="single",
                    type="filepath",
                    height=140,
                    elem_id="dk-upload",
                )
                threshold = gr.Slider(
                    minimum=0.0,
                    maximum=1.0,
                    value=0.0,
                    label="Threshold",
                    info="loading the detector ...",
                    interactive=False,
                    elem_id="dk-threshold",
                )
                verdict = gr.HTML(
                    render.message_card(
                        "Upload an image: its heat map, score and verdict appear here. Move the threshold to "
                        "re-evaluate the verdict without running the model again."
                    ),
                    elem_id="dk-verdict",
                )
                probabilities = gr.Label(
                    label="Class probabilities", num_top_classes=5, visible=False, elem_id="dk-classes"
                )
                legend = gr.HTML('<div class="dk-note">loading the detector ...</div>')
                # seed 003's interface: shown for a predictor with sampling options (DeCo-Diff's)
                with gr.Accordion("Sampling", open=False, visible=False) as sampling_box:
                    gated = gr.Checkbox(label="gated fusion (the DoD gate map)", value=False, elem_id="dk-gated")
                    sample_steps = gr.Slider(1, 50, value=5, step=1, label="DDIM correction steps", elem_id="dk-steps")
                    start_t = gr.Slider(1, 9, value=5, step=1, label="start step", elem_id="dk-start")
                    gr.HTML(
                        '<div class="dk-note">The threshold was chosen with the run\'s settings: other settings '
                        "move the scores, so read the verdict with care.</div>"
                    )
            with gr.Column(scale=7):
                with gr.Row():
                    heat = gr.Image(
                        label="Anomaly heat map",
                        interactive=False,
                        height=420,
                        format="png",
                        elem_id="dk-overlay",
                    )
                    second = gr.Image(
                        label="Second picture",
                        interactive=False,
                        height=420,
                        format="png",
                        elem_id="dk-second",
                    )
        with gr.Accordion("Batch: score a folder of images", open=False):
            with gr.Row():
                folder = gr.File(label="Folder of images", file_count="directory", type="filepath", scale=3)
                with gr.Column(scale=1, min_width=200):
                    score_folder = gr.Button("Score the folder", variant="primary")
                    csv_file = gr.File(label="Results (CSV)", interactive=False)
            batch_note = gr.HTML("")
            table = gr.Dataframe(label="Results", interactive=False, wrap=True)
            gallery = gr.Gallery(label="Most anomalous first", columns=6, height=320, format="png")
        batch_state = gr.State(None)

        outputs = [state, heat, second, verdict, probabilities]
        # model events bypass gradio's unbounded queue: self.gate admits one and a few waiting, answers the rest
        sampling = [gated, sample_steps, start_t]
        upload.change(
            self.inspect,
            [upload, model, threshold, ready, *sampling],
            outputs,
            show_progress="full",
            concurrency_limit=None,
        )
        demo.load(
            self.first_load,
            [model],
            [threshold, ready, heat, second, legend, sampling_box, *sampling],
            show_progress="hidden",
            concurrency_limit=None,
        )
        # no model runs on a threshold move: it never waits behind another user's model request
        threshold.change(
            self.redraw, [state, threshold], [heat, verdict], show_progress="hidden", concurrency_limit=None
        )
        model.change(
            self.switch,
            [model],
            [threshold, state, heat, second, verdict, probabilities, legend, sampling_box, *sampling],
            concurrency_limit=None,
        )
        score_folder.click(
            self.batch,
            [folder, model, threshold],
            [batch_state, table, csv_file, gallery, batch_note],
            concurrency_limit=None,
        )
        threshold.change(
            self.redraw_batch,
            [batch_state, threshold],
            [table, csv_file, gallery],
            show_progress="hidden",
            concurrency_limit=None,
        )

    @staticmethod
    def _slider(inspector: Predictor) -> dict[str, Any]:
        low, high = inspector.score_range
        return {
            "minimum": round(low, 6),
            "maximum": round(high, 6),
            "value": round(inspector.threshold, 6),
            "step": (high - low) / 500,
            "label": f"Threshold on the {inspectors.score_name(inspector)}",
            "info": f"default {inspector.threshold:.4f} ({inspector.threshold_source})",
        }

    def _legend(self, inspector: Predictor) -> str:
        accepted = (
            f"Accepted: {', '.join(s[1:] for s in IMAGE_SUFFIXES)}, up to {self.options.limits.max_megabytes:g} MB."
        )
        low, high = inspectors.heat_range(inspector)
        if high is None:
            scale = "The heat map is the model's attention (blue low, red high, each image's own range); the red "
            scale += "outline is the predicted defect mask."
        else:
            scale = f"Heat-map colours are fixed: blue {low:g}, red {high:.3g} and above (twice the default "
            scale += "threshold); the white outline marks the region at or above the threshold."
        return f'<div class="dk-note">{accepted} {scale}</div>'

    @staticmethod
    def _heat_label(inspector: Predictor) -> str:
        return "Attention, predicted mask outlined" if inspectors.heat_range(inspector)[1] is None else "Anomaly heat map"

    def switch(self, step_id: str, progress=gr.Progress()):
        progress(0, desc="loading the detector")
        try:
            with self.gate.enter():
                inspector = self.inspector(step_id)
        except Busy as exc:
            raise gr.Error(str(exc)) from None
        return (
            gr.Slider(**self._slider(inspector)),
            None,
            gr.Image(value=None, label=self._heat_label(inspector)),
            gr.Image(value=None, label="Second picture"),
            render.message_card("Detector changed: upload an image."),
            gr.Label(value=None, visible=False),
            self._legend(inspector),
            *self._sampling(inspector),
        )

    @staticmethod
    def _sampling(inspector: Predictor) -> tuple:
        """The sampling accordion and its three controls, at the run's values (hidden without sampling options)."""
        options = inspectors.sampling(inspector)
        if not options:
            return gr.Accordion(visible=False), gr.Checkbox(), gr.Slider(), gr.Slider()
        top = max(1, getattr(inspector, "max_start", options["start_t"]))
        return (
            gr.Accordion(visible=True),
            gr.Checkbox(value=options.get("fusion") == "gated", visible="fusion" in options),
            gr.Slider(value=options["sample_steps"]),
            gr.Slider(maximum=top, value=min(options["start_t"], top)),
        )

    def _warm(self, step_id: str) -> None:
        try:
            self.inspector(step_id)
        except Exception:  # reported to the user by the load event (or the first request), which loads it again
            log.exception("defectkit serve: loading the detector of step %s failed", step_id)

    def first_load(self, step_id: str):
        """The page's load event: the detector's own slider, labels and legend (waits for the warm-up)."""
        try:
            inspector = self.inspector(step_id)
        except DefectkitError as exc:
            raise gr.Error(str(exc)) from None
        return (
            gr.Slider(**self._slider(inspector), interactive=True),
            True,
            gr.Image(label=self._heat_label(inspector)),
            gr.Image(label="Second picture"),
            self._legend(inspector),
            *self._sampling(inspector),
        )

    def inspect(
        self,
        path: str | None,
        step_id: str,
        threshold: float,
        ready: bool = True,
        gated: bool | None = None,
        sample_steps: float | None = None,
        start_t: float | None = None,
        progress=gr.Progress(),
    ):
        if not path:
            return None, None, None, render.message_card("Upload an image."), gr.Label(visible=False)
        if not ready:  # uploaded before the page's load event put the detector's threshold on the slider
            threshold = self.inspector(step_id).threshold
        try:
            # decoded inside the gate too: only the admitted requests hold a full-size image in memory
            with self.gate.enter():
                analysis = self._analyse_upload(path, step_id, progress, _sampling_options(gated, sample_steps, start_t))
        except (UploadError, Busy) as exc:
            return None, None, None, render.message_card(str(exc), "error"), gr.Label(visible=False)
        state = {"analysis": analysis, "step": step_id}
        heat, verdict = self.redraw(state, threshold)
        probabilities = gr.Label(value=analysis.probabilities or None, visible=bool(analysis.probabilities))
        second = gr.Image(value=render.second_picture(analysis), label=render.second_label(analysis))
        return state, heat, second, verdict, probabilities

    def _analyse_upload(self, path: str, step_id: str, progress, sampling: dict | None = None):
        # a function of its own: the full-size image is freed when it returns, before the gate releases memory
        image = open_upload(path, self.options.limits)
        progress(0.1, desc="loading the detector (first request only)")
        inspector = self.inspector(step_id)
        try:
            # inside the gate: no other request uses the model meanwhile
            inspectors.set_sampling(inspector, sampling or {})
        except DefectkitError as exc:
            raise UploadError(str(exc)) from None
        progress(0.4, desc=f"scoring with {inspectors.title(inspector, self.steps[step_id])}")
        return inspectors.predict(inspector, [image], [Path(path).name])[0]

    def redraw(self, state: dict | None, threshold: float):
        """Overlay and verdict at ``threshold`` from the stored analysis: no model call."""
        if state is None:
            return gr.Image(), gr.HTML()
        inspector = self.inspector(state["step"])  # cached: costs a dictionary look-up
        analysis = state["analysis"]
        return (
            render.overlay(analysis, threshold, inspectors.heat_range(inspector)),
            render.verdict_card(analysis, threshold, inspectors.score_name(inspector)),
        )

    def batch(self, paths: list[str] | None, step_id: str, threshold: float, progress=gr.Progress()):
        if not paths:
            return None, None, None, None, render.message_card("Choose a folder of images first.", "error")
        try:
            with self.gate.enter():
                analyses, refused = self._analyse_folder(paths, step_id, progress)
        except Busy as exc:
            return None, None, None, None, render.message_card(str(exc), "error")
        if not analyses:
            note = render.message_card(f"No readable images ({', '.join(IMAGE_SUFFIXES)}) in the folder.", "error")
            return None, None, None, None, note
        state = {"analyses": analyses, "step": step_id, "folder": self._batch_folder()}
        table, csv_path, gallery = self.redraw_batch(state, threshold)
        skipped = f" Skipped {len(refused)}: " + "; ".join(refused[:3]) if refused else ""
        note = f'<div class="dk-note">{len(analyses)} images scored.{html.escape(skipped)}</div>'
        return state, table, csv_path, gallery, note

    def _analyse_folder(self, paths: list[str], step_id: str, progress):
        images, names, refused = [], [], []
        for path in sorted(paths):
            if Path(path).suffix.lower() not in IMAGE_SUFFIXES:
                continue  # a folder holds other files too (masks as .npy, notes): skipped silently
            try:
                images.append(open_upload(path, self.options.limits))
                names.append(Path(path).name)
            except UploadError as exc:
                refused.append(str(exc))
        if not images:
            return [], refused
        inspector = self.inspector(step_id)
        inspectors.set_sampling(inspector, {})  # a batch is scored as the run scored its test images
        analyses = []
        for start in progress.tqdm(range(0, len(images), 8), desc=f"scoring {len(images)} images"):
            analyses += inspectors.predict(inspector, images[start : start + 8], names[start : start + 8])
        return analyses, refused

    def _batch_folder(self) -> Path:
        """A new folder for one batch's CSV (rewritten on every threshold move); only the latest few are kept."""
        folder = Path(tempfile.mkdtemp(dir=self._scratch.name))
        self._batches.append(folder)
        while len(self._batches) > KEPT_BATCHES:
            shutil.rmtree(self._batches.pop(0), ignore_errors=True)
        return folder

    def redraw_batch(self, state: dict | None, threshold: float):
        if state is None:
            return gr.Dataframe(), gr.File(), gr.Gallery()
        inspector = self.inspector(state["step"])
        analyses = state["analyses"]
        header, rows = render.batch_rows(analyses, threshold, inspectors.score_name(inspector))
        folder = state.get("folder") or self._batch_folder()
        csv_path = write_text(Path(folder) / "defectkit_scores.csv", render.batch_csv(header, rows))
        ranked = sorted(analyses, key=lambda a: -a.score)[:BATCH_GALLERY]
        heat = inspectors.heat_range(inspector)
        gallery = [(render.overlay(a, threshold, heat), f"{a.name}  {a.score:.3f}") for a in ranked]
        return gr.Dataframe(value=rows, headers=header), str(csv_path), gallery


# -- the Generate tab ----------------------------------------------------------------------------------


class GenerateTab:
    """The Generate tab's back end: a servable run's generate steps, their sessions and inputs."""

    def __init__(self, servable: Servable, options: ServeOptions, gate: ModelGate | None = None) -> None:
        self.run = servable.run
        self.entries = {g.step.id: g for g in servable.generators}
        self.options = options
        self.gate = gate or ModelGate(options.max_waiting)

    def capabilities(self, step_id: str) -> SessionCapabilities:
        """What the step's session does with the optional inputs (opens the session on first use)."""
        session = get_session(self.run, self.entries[step_id], self.options.device)
        return getattr(session, "capabilities", None) or SessionCapabilities()

    def show_inputs(self, step_id: str):
        """The page's load event and the generator choice: show the inputs the session uses, hide the others."""
        try:
            with self.gate.enter():
                caps = self.capabilities(step_id)
        except (Busy, DefectkitError) as exc:
            raise gr.Error(str(exc)) from None
        return (
            gr.Accordion(visible=caps.control_image, open=caps.requires_control_image),
            gr.Accordion(visible=caps.inpainting, open=caps.requires_image),
            gr.Textbox(visible=caps.negative_prompt),
        )

    def build(self, demo: gr.Blocks) -> None:
        """The tab's components; which optional inputs show comes from the session's capabilities, once open."""
        first = next(iter(self.entries.values()))
        labels = label_hint(self.run, first)
        with gr.Row(equal_height=False):
            with gr.Column(scale=5, min_width=340):
                step = gr.Dropdown(
                    choices=[(f"{g.name}: step {g.step.dirname}", g.step.id) for g in self.entries.values()],
                    value=first.step.id,
                    label="Generator",
                    visible=len(self.entries) > 1,
                )
                label = gr.Dropdown(
                    choices=labels,
                    value=labels[0] if labels else None,
                    allow_custom_value=True,
                    label="Defect class",
                    info="the classes this generator was trained or run on",
                    elem_id="dk-gen-label",
                )
                prompt = gr.Textbox(label="Prompt", placeholder="empty: the generator's prompt for the class", lines=2)
                negative = gr.Textbox(
                    label="Negative prompt", placeholder="empty: the generator's default", elem_id="dk-gen-negative"
                )
                with gr.Row():
                    seed = gr.Number(0, label="Seed", precision=0, minimum=0)
                    # 0 stands for "the step's own value": gradio's Number sends 0 for an empty box
                    guidance = gr.Number(0, label="Guidance scale", info="0: the step's", minimum=0)
                    steps = gr.Number(0, label="Sampling steps", info="0: the step's", precision=0, minimum=0)
                # hidden until the session says it uses them (the page's load event)
                with gr.Accordion(
                    "ControlNet condition image", open=False, visible=False, elem_id="dk-gen-control"
                ) as control_box:
                    control = gr.Image(label="Condition image (edges, depth ...)", type="pil", height=240)
                with gr.Accordion(
                    "Inpainting: a good image and the defect region", open=False, visible=False, elem_id="dk-gen-inpaint"
                ) as inpaint_box:
                    editor = gr.ImageEditor(
                        label="Good image: paint the region where the defect should appear",
                        type="pil",
                        image_mode="RGBA",
                        brush=gr.Brush(colors=["#ff2020"], color_mode="fixed"),
                        layers=False,
                        height=320,
                    )
                button = gr.Button("Generate", variant="primary", elem_id="dk-generate")
            with gr.Column(scale=6):
                output = gr.Image(
                    label="Generated image", interactive=False, height=480, format="png", elem_id="dk-gen-out"
                )
                info = gr.HTML("")
        demo.load(self.show_inputs, [step], [control_box, inpaint_box, negative], concurrency_limit=None)
        step.change(self.show_inputs, [step], [control_box, inpaint_box, negative], concurrency_limit=None)
        button.click(
            self.generate,
            [step, label, prompt, negative, seed, guidance, steps, control, editor],
            [output, info, label],
            concurrency_limit=None,  # admitted by self.gate, as the Inspect tab's model events
        )

    def generate(
        self,
        step_id: str,
        label: str | None,
        prompt: str,
        negative: str,
        seed: float | None,
        guidance: float | None,
        steps: float | None,
        control,
        editor: dict | None,
        progress=gr.Progress(),
    ):
        try:
            with self.gate.enter():
                return self._generate(
                    step_id, label, prompt, negative, seed, guidance, steps, control, editor, progress
                )
        except Busy as exc:
            raise gr.Error(str(exc)) from None

    def _generate(self, step_id, label, prompt, negative, seed, guidance, steps, control, editor, progress):
        entry = self.entries[step_id]
        progress(0.05, desc=f"loading {entry.name} (first request only)")
        try:
            session = get_session(self.run, entry, self.options.device)
        except DefectkitError as exc:
            raise gr.Error(str(exc)) from None
        known = list(session.labels)
        if not label or label not in known:
            raise gr.Error(f"unknown defect class {label!r}: choose one of {', '.join(known)}")
        image, mask = _editor_image_and_mask(editor)
        progress(0.3, desc=f"generating {label}")
        try:
            picture = session.generate(
                label,
                prompt=prompt.strip() or None,
                negative_prompt=negative.strip() or None,
                seed=int(seed or 0),
                guidance=float(guidance) if guidance else None,
                steps=int(steps) if steps else None,
                control_image=control,
                image=image,
                mask=mask,
            )
        except DefectkitError as exc:
            raise gr.Error(str(exc)) from None
        used = f"{html.escape(label)}, seed {int(seed or 0)}" + (", inpainted in the painted region" if mask else "")
        return picture, f'<div class="dk-note">{entry.name}: {used}</div>', gr.Dropdown(choices=known, value=label)


def _sampling_options(gated: bool | None, sample_steps: float | None, start_t: float | None) -> dict:
    """The Inspect tab's sampling controls as detect options (``None``: the run's own value)."""
    options: dict = {}
    if gated is not None:
        options["fusion"] = "gated" if gated else "geometric"
    if sample_steps is not None:
        options["sample_steps"] = int(sample_steps)
    if start_t is not None:
        options["start_t"] = int(start_t)
    return options


def _editor_image_and_mask(editor: dict | None):
    """The ImageEditor's background (RGB) and the painted region as an ``L`` mask (255 = defect), or Nones."""
    from PIL import Image

    if not editor or editor.get("background") is None:
        return None, None
    background = editor["background"].convert("RGB")
    layers = [layer for layer in editor.get("layers") or [] if layer is not None]
    if not layers:
        return background, None
    painted = np.zeros(background.size[::-1], dtype=bool)
    for layer in layers:
        painted |= np.asarray(layer.convert("RGBA").resize(background.size))[..., 3] > 0
    if not painted.any():
        return background, None
    return background, Image.fromarray(painted.astype(np.uint8) * 255, mode="L")


# -- the Runs tab --------------------------------------------------------------------------------------


def metrics_rows(run: RunInfo) -> list[list]:
    rows = []
    for step, figures in run.metrics.items():
        for name, value in figures.items():
            rows.append([step, name, round(value, 4) if isinstance(value, float) else value])
    return rows


def build_runs_tab(servable: Servable) -> None:
    from defectkit.generated import read_metadata

    run = servable.run
    step_rows = [[s.dirname, s.kind, ", ".join(s.components) or "built-in"] for s in run.steps]
    with gr.Row():
        gr.Dataframe(value=step_rows, headers=["step", "kind", "components"], label="Steps", interactive=False)
        gr.Dataframe(
            value=metrics_rows(run) or [["", "no metrics", ""]],
            headers=["step", "metric", "value"],
            label="Metrics (metrics.json)",
            interactive=False,
            elem_id="dk-metrics",
        )
    for entry in servable.generators:
        rel = entry.step.artifacts.get("generated_images")
        if rel is None:
            continue
        try:
            records = read_metadata(run.run_dir / rel)
        except DefectkitError:
            continue
        gr.Gallery(
            value=[
                (str(run.run_dir / rel / r["file"]), f"{r.get('defect_type', '')} seed {r.get('seed', '')}")
                for r in records[:60]
            ],
            label=f"Generated images: step {entry.step.dirname}",
            columns=8,
            height=300,
        )
    for note in servable.notes:
        gr.HTML(f'<div class="dk-note">{html.escape(note)}</div>')
    if run.report is not None:
        url = _file_url(run.report)
        gr.HTML(
            f'<div class="dk-note"><a href="{url}" target="_blank" rel="noopener">Open report.html in a new tab</a>'
            f'</div><iframe class="dk-report" src="{url}" title="report"></iframe>',
            elem_id="dk-report",
        )
    else:
        gr.HTML('<div class="dk-note">This run has no report.html yet (it is written when the run ends).</div>')


# -- the whole app --------------------------------------------------------------------------------------


def header_html(run: RunInfo) -> str:
    return (
        '<div class="dk-header"><h1>defectkit</h1>'
        f'<span class="dk-run">{html.escape(run.name)}</span>'
        f'<span class="dk-pill">{html.escape(run.status)}</span>'
        f'<span class="dk-path">{html.escape(str(run.run_dir))}</span></div>'
    )


def build_app(servable: Servable, options: ServeOptions | None = None) -> gr.Blocks:
    """The Blocks of one run; the first detector loads in the background while the page is already served."""
    options = options or ServeOptions()
    # one model request at a time for both tabs: a model on one device is not shared safely between threads
    gate = ModelGate(options.max_waiting)
    with gr.Blocks(
        title=f"defectkit · {servable.run.name}", analytics_enabled=False, delete_cache=GRADIO_CACHE
    ) as demo:
        gr.HTML(header_html(servable.run))
        with gr.Tabs():
            if servable.detect_steps:
                with gr.Tab("Inspect", id="inspect"):
                    InspectTab(servable, options, gate).build(demo)
            if servable.generators:
                with gr.Tab("Generate", id="generate"):
                    GenerateTab(servable, options, gate).build(demo)
            with gr.Tab("Run", id="run"):
                build_runs_tab(servable)
    # the other events (threshold moves) are cheap; gradio's queue is bounded for them too
    demo.queue(default_concurrency_limit=1, max_size=64)
    return demo


def served_files(servable: Servable) -> list[str]:
    """What the browser may fetch from the run directory: the report and generated images, not checkpoints."""
    run = servable.run
    paths = [str(run.report)] if run.report else []
    for entry in servable.generators:
        rel = entry.step.artifacts.get("generated_images")
        if rel:
            paths.append(str(run.run_dir / rel))
    return paths


def launch(
    demo: gr.Blocks,
    servable: Servable,
    options: ServeOptions,
    host: str = "127.0.0.1",
    port: int | None = None,
    share: bool = False,
):
    """Start the server in a background thread; returns gradio's ``(app, local_url, share_url)``.

    ``demo.block_thread()`` then waits for Ctrl-C (the CLI); a test calls ``demo.close()`` instead.
    """
    return demo.launch(
        server_name=host,
        server_port=port,
        share=share,
        max_file_size=options.limits.max_bytes,
        allowed_paths=served_files(servable),
        prevent_thread_lock=True,
        quiet=True,  # the CLI prints its own lines: gradio's mention `launch(share=True)`, not --share
        footer_links=["settings"],
        theme=gr.themes.Soft(primary_hue="blue", neutral_hue="slate"),
        css=CSS,
        ssr_mode=False,
    )


__all__ = ["ServeOptions", "Servable", "build_app", "find_servable", "launch", "read_run"]
