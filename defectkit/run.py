"""Executes a validated recipe's steps into a run directory.

A run directory holds everything needed to trust and reuse a result::

    RUN/
      recipe.yaml            the recipe as written (after --set)
      recipe.resolved.yaml   every option with its default filled in
      environment.json       versions (Python, torch, CUDA, plugins), device, seed
      run.json               status, timings, the steps done
      run.log                the log
      tensorboard/           event files (scalars of every step)
      scalars.jsonl          the same scalars, for the report's curves
      metrics.json           {step id: {metric: value}}
      report.html            one self-contained page
      01_train/ 02_detect/   one folder per step, each with a manifest.json

A step component is an object with one method named after its step kind
(``train``, ``generate``, ``detect``, ``caption``, ``evaluate``), called with a
:class:`StepContext`. Steps hand artifacts to later steps by name through the
run directory (:meth:`StepContext.add_artifact` / :meth:`StepContext.artifact`).
``--resume`` skips steps whose manifest says ``done`` and lets the unfinished
step pick up its own checkpoints (:attr:`StepContext.resume`).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import logging
import os
import platform
import shlex
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from defectkit import __version__
from defectkit import io as dkio
from defectkit.data.sample import DefectDataset, Sample
from defectkit.devices import resolve_device
from defectkit.errors import DefectkitError, DiskFullError, PluginError, RunError
from defectkit.extend import Extension, plan_extension
from defectkit.libraries import LibraryOutput, seed_everything
from defectkit.locking import LOCK_FILE, run_folder_lock
from defectkit.progress import StepProgress
from defectkit.recipe import ResolvedStep, ValidatedRecipe
from defectkit.resources import PeakMemory
from defectkit.signals import Terminated, sigterm_as_interrupt

if TYPE_CHECKING:
    from rich.console import Console

T = TypeVar("T")

#: the method a step component must provide, per step kind
STEP_METHOD: dict[str, str] = {
    "caption": "caption",
    "train": "train",
    "generate": "generate",
    "detect": "detect",
    "evaluate": "evaluate",
}

log = logging.getLogger("defectkit")


class RunInterrupted(DefectkitError):
    """Ctrl-C or SIGTERM: the run directory is left resumable."""

    exit_code = 130

    def __init__(self, message: str, exit_code: int = 130) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def plugin_error(step: ResolvedStep, exc: Exception, log_file: Path) -> PluginError:
    """One line for an exception raised inside a step's component: plugin, component, error, where the traceback is."""
    names = " + ".join(f"{c.kind} {c.name!r} of plugin {c.plugin}" for c in step.components)
    first_line = (str(exc).strip().splitlines() or [""])[0]
    return PluginError(
        f"step {step.dirname}: {names} failed: {type(exc).__name__}: {first_line} (traceback in {log_file})"
    )


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def use_cpu(device: str) -> bool:
    """Whether Accelerate must run on the CPU (gloo between processes) for the recipe's ``device``."""
    if device == "auto":
        import torch

        return not torch.cuda.is_available()
    return device == "cpu"


class StepContext:
    """What a step's component gets: folders, data, artifacts, logging, devices."""

    def __init__(self, run: Run, step: ResolvedStep, resume: bool) -> None:
        self._run = run
        self._step = step
        #: True when this step was started before and the run is resumed: pick up checkpoints
        self.resume = resume
        self.step_id = step.id
        self.index = step.index
        self.run_dir = run.run_dir
        self.step_dir = run.run_dir / step.dirname
        self.step_dir.mkdir(parents=True, exist_ok=True)
        self.seed = run.recipe.seed
        self.logger = log.getChild(step.id)
        self._artifacts: dict[str, str] = {}
        self._figures: list[dict[str, str]] = []
        self._metrics: dict[str, Any] = {}

    # -- the recipe and data -------------------------------------------------------

    @property
    def recipe(self):
        return self._run.recipe

    @property
    def options(self) -> dict[str, Any]:
        """This step's ``with:`` block as resolved (defaults filled in)."""
        return self._run.validated.resolved["steps"][self.index][self._step.kind]["with"]

    @property
    def dataset(self) -> DefectDataset:
        """The step's dataset: its own ``data:`` if it has one, else the recipe's; opened once per run."""
        return self._run.step_dataset(self._step)

    def samples(self, split: str) -> list[Sample]:
        """Samples of ``split`` (``train``, ``val``, ``test``...) from the step's dataset."""
        return self._run.samples(split, self._step)

    # -- artifacts --------------------------------------------------------------------

    def add_artifact(self, name: str, path: str | Path) -> Path:
        """Declare an output (file or folder) that later steps can find by ``name``."""
        path = Path(path)
        if not path.is_absolute():
            path = self.step_dir / path
        self._artifacts[name] = os.path.relpath(path, self.run_dir)
        return path

    def artifacts(self, name: str) -> dict[str, Path]:
        """Artifact ``name`` of every earlier step that produced it, by step id, oldest first.

        For a step that compares what several earlier steps made (one arm per
        generator); :meth:`artifact` gives only the latest, or the one in ``inputs:``.
        """
        return self._run.artifact_sources(name, self._step)

    def artifact(self, name: str, required: bool = True) -> Path | None:
        """The path of artifact ``name`` from this step's ``inputs:`` or the latest earlier step.

        When this step's component declares which producers it accepts
        (:class:`~defectkit.components.Consumes`), an artifact made by another
        component is refused with one line naming both, whatever the recipe says.
        """
        found = self._run.artifact_source(name, self._step)
        if found is None:
            if required:
                producers = self._run.available_artifacts(self._step)
                have = ", ".join(f"{n} (from {s})" for n, s in producers.items()) or "none"
                raise RunError(
                    f"step {self.step_id}: needs artifact {name!r}, which no earlier step produced; available: {have}"
                )
            return None
        path, manifest = found
        if len(self._step.components) == 1:
            consumer = self._step.components[0]
            accepted = next((c.producers for c in consumer.consumes if c.artifact == name), ())
            made_by = [c["name"] for c in manifest.get("components", [])]
            if accepted and not set(made_by) & set(accepted):
                raise RunError(
                    f"step {self.step_id}: {consumer.name} reads {name!r} made by {' or '.join(accepted)}, "
                    f"but step {manifest.get('id')} made it with {'+'.join(made_by) or 'a built-in step'}"
                )
        return path

    def add_figure(self, path: str | Path, caption: str = "") -> None:
        """Show an image file of this step in the report."""
        path = Path(path)
        if not path.is_absolute():
            path = self.step_dir / path
        self._figures.append({"path": os.path.relpath(path, self.run_dir), "caption": caption})

    # -- logging ----------------------------------------------------------------------

    def log_metrics(self, metrics: dict[str, Any]) -> None:
        """Record this step's final figures: they go to metrics.json and the report."""
        self._metrics.update(metrics)

    def log_scalar(self, tag: str, value: float, step: int) -> None:
        """A point on a curve (a loss per step): TensorBoard, scalars.jsonl and the report."""
        self._run.log_scalar(f"{self.step_id}/{tag}", float(value), int(step))

    @property
    def tensorboard(self):
        """The run's ``torch.utils.tensorboard.SummaryWriter`` for images and histograms (main process)."""
        return self._run.tensorboard

    def progress(
        self,
        iterable: Iterable[T],
        total: int | None = None,
        description: str = "",
        unit: str = "it",
        size: Callable[[T], int] | None = None,
    ) -> Iterator[T]:
        """Iterate with a progress bar: rate in ``unit``/s, ETA and the latest logged loss; a log line at the end.

        Only the main process draws one. ``unit`` names what is counted
        (``steps``, ``epochs``, ``images``); ``size(item)`` says how many units
        one item holds (``len`` for a batch of images), and ``total`` then
        counts units too.
        """
        return self._run.progress(iterable, total, description or self.step_id, unit, size)

    # -- devices ----------------------------------------------------------------------

    @property
    def accelerator(self):
        """The run's ``accelerate.Accelerator`` (one per process, created on first use)."""
        return self._run.accelerator

    @property
    def device(self):
        return self._run.device

    @property
    def is_main_process(self) -> bool:
        return self._run.is_main_process


class Run:
    """One execution of a validated recipe."""

    def __init__(
        self,
        validated: ValidatedRecipe,
        run_dir: Path,
        resume: bool = False,
        console: Console | None = None,
        command: str = "",
        verbose: bool = False,
        reuse_from: Sequence[Path] = (),
    ) -> None:
        self.validated = validated
        #: finished runs of the same experiment whose identical steps this run takes instead of recomputing
        self.reuse_from = list(reuse_from)
        self.recipe = validated.recipe
        # absolute, so that paths steps build from step_dir stay valid whatever they are joined with
        self.run_dir = Path(run_dir).absolute()
        self.resume = resume
        self.console = console
        self.command = command
        self.verbose = verbose
        self._progress = StepProgress(console, log)
        #: what --resume found grown in the recipe (see defectkit.extend); None until checked
        self._extension: Extension | None = None
        self._scalars_file: Any = None
        self._done: dict[str, dict[str, Any]] = {}
        #: the disk filled up: nothing more is written (report, logs) after the failure
        self._disk_full = False

    # -- lazily created shared things -------------------------------------------------

    @cached_property
    def accelerator(self):
        from accelerate import Accelerator

        return Accelerator(cpu=use_cpu(self.recipe.device))

    @property
    def is_main_process(self) -> bool:
        if world_size() > 1:
            return self.accelerator.is_main_process
        return True

    @cached_property
    def device(self):
        if world_size() > 1:
            return self.accelerator.device
        return resolve_device(self.recipe.device)

    @cached_property
    def dataset(self) -> DefectDataset:
        component = self.validated.data_component
        if component is None:
            raise RunError(f"{self.validated.path}: this recipe has no data: block, but a step asked for data")
        return component.load_factory()(self.validated.data_config)

    @cached_property
    def _step_datasets(self) -> dict[str, DefectDataset]:
        return {}

    def step_dataset(self, step: ResolvedStep | None) -> DefectDataset:
        """The dataset of ``step``'s own ``data:`` block, else the recipe's; each opened once."""
        if step is None or step.data_component is None:
            return self.dataset
        # steps with the same data block share one opened dataset
        key = json.dumps(self.validated.resolved["steps"][step.index][step.kind]["data"], sort_keys=True)
        if key not in self._step_datasets:
            self._step_datasets[key] = step.data_component.load_factory()(step.data_config)
        return self._step_datasets[key]

    def samples(self, split: str, step: ResolvedStep | None = None) -> list[Sample]:
        from defectkit.data.splits import apply_split

        data = step.spec.data if step is not None and step.spec.data is not None else self.recipe.data
        return apply_split(self.step_dataset(step), split, data.split if data else None, self.recipe.seed)

    @cached_property
    def tensorboard(self):
        from torch.utils.tensorboard import SummaryWriter

        return SummaryWriter(log_dir=str(self.run_dir / "tensorboard"))

    @cached_property
    def _scalar_events(self):
        # tensorboard's own event writer, not torch's SummaryWriter: logging a curve must not import torch
        # (1.4 s) in a step that does not use it. TensorBoard reads every event file of the folder.
        from tensorboard.summary.writer.event_file_writer import EventFileWriter

        return EventFileWriter(str(self.run_dir / "tensorboard"), filename_suffix=".scalars")

    def log_scalar(self, tag: str, value: float, step: int) -> None:
        if not self.is_main_process:
            return
        self._progress.show_scalar(tag, value)
        self._scalar_events.add_event(_scalar_event(tag, value, step))
        if self._scalars_file is None:
            self._scalars_file = open(self.run_dir / "scalars.jsonl", "a", encoding="utf-8")  # noqa: SIM115
        self._scalars_file.write(json.dumps({"tag": tag, "step": step, "value": value}) + "\n")
        self._scalars_file.flush()

    def progress(
        self,
        iterable: Iterable[T],
        total: int | None,
        description: str,
        unit: str = "it",
        size: Callable[[T], int] | None = None,
    ) -> Iterator[T]:
        if not self.is_main_process:
            yield from iterable
            return
        yield from self._progress.track(iterable, total, description, unit, size)

    # -- artifacts ------------------------------------------------------------------

    def _manifest(self, step: ResolvedStep) -> dict[str, Any] | None:
        return dkio.read_json(self.run_dir / step.dirname / "manifest.json")

    def available_artifacts(self, before: ResolvedStep) -> dict[str, str]:
        found: dict[str, str] = {}
        for step in self.validated.steps[: before.index]:
            manifest = self._done.get(step.id) or self._manifest(step) or {}
            for name in manifest.get("artifacts", {}):
                found[name] = step.id
        return found

    def find_artifact(self, name: str, before: ResolvedStep) -> Path | None:
        found = self.artifact_source(name, before)
        return None if found is None else found[0]

    def artifact_sources(self, name: str, before: ResolvedStep) -> dict[str, Path]:
        """Artifact ``name`` of every step before ``before`` that produced it, by step id, in recipe order."""
        found: dict[str, Path] = {}
        for step in self.validated.steps[: before.index]:
            manifest = self._done.get(step.id) or self._manifest(step) or {}
            rel = manifest.get("artifacts", {}).get(name)
            if rel is not None:
                found[step.id] = self.run_dir / rel
        return found

    def artifact_source(self, name: str, before: ResolvedStep) -> tuple[Path, dict[str, Any]] | None:
        """Artifact ``name`` for step ``before``, and the manifest of the step that produced it."""
        wanted = before.spec.inputs.get(name)
        for step in reversed(self.validated.steps[: before.index]):
            if wanted is not None and step.id != wanted:
                continue
            manifest = self._done.get(step.id) or self._manifest(step) or {}
            rel = manifest.get("artifacts", {}).get(name)
            if rel is not None:
                return self.run_dir / rel, manifest
            if wanted is not None:
                return None
        return None

    # -- the run itself -------------------------------------------------------------

    def check_run_dir(self) -> None:
        """Refuse an existing run directory unless resuming, and a changed recipe when resuming."""
        resolved_path = self.run_dir / "recipe.resolved.yaml"
        if self.resume:
            if not resolved_path.exists():
                raise RunError(
                    f"{self.run_dir}: not a defectkit run directory (no recipe.resolved.yaml); cannot resume"
                )
            import yaml

            before = yaml.safe_load(resolved_path.read_text(encoding="utf-8"))
            try:
                self._extension = plan_extension(before, self.validated.resolved, first_difference)
            except ValueError as exc:
                raise RunError(
                    f"{self.run_dir}: the recipe changed since this run started ({exc}); resume with the same "
                    "recipe and --set options (a train step's steps or epochs may grow, and steps may be "
                    "appended), or start a new run with another --out"
                ) from None
        elif self.run_dir.exists() and any(p.name != LOCK_FILE for p in self.run_dir.iterdir()):
            raise RunError(
                f"{self.run_dir}: already exists and is not empty; pass --resume to continue it, or another --out"
            )

    def prepare(self) -> None:
        """Create the run directory and write its recipe and environment."""
        if not self.is_main_process:
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if self._extension is not None and (self._extension.lengths or self._extension.appended):
            self._extend()
        if not self.resume:
            dkio.write_yaml(self.run_dir / "recipe.resolved.yaml", self.validated.resolved)
        else:
            # this process holds the run lock: every temporary file here is from a write that was killed
            for path in dkio.remove_leftovers(self.run_dir):
                log.info("removed %s, left by a write that was interrupted", os.path.relpath(path, self.run_dir))
        dkio.write_json(self.run_dir / "environment.json", environment(self))

    def _extend(self) -> None:
        """A resumed run trained longer: reopen the lengthened steps, set aside the finished ones after them.

        Done before the new recipe is saved, so an interruption at any point
        leaves a run that a second ``--resume`` continues correctly.
        """
        extension = self._extension
        for line in extension.describe(self.validated.resolved["steps"]):
            log.info("extending the run: %s", line)
        first = extension.first_rerun
        if first is not None:
            stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
            metrics = dkio.read_json(self.run_dir / "metrics.json", {})
            for step in self.validated.steps[first:]:
                folder = self.run_dir / step.dirname
                manifest = self._manifest(step)
                if not manifest or manifest.get("status") != "done":
                    continue
                metrics.pop(step.id, None)
                if step.index in extension.lengths:
                    # no longer done: the step runs again with ctx.resume and continues from its checkpoint
                    os.replace(folder / "manifest.json", folder / f"manifest.before-{stamp}.json")
                else:
                    target = self.run_dir / "superseded" / stamp / step.dirname
                    target.parent.mkdir(parents=True, exist_ok=True)
                    os.replace(folder, target)
                    log.info("step %s: runs again (an earlier step trains longer); the old one is in %s",
                             step.dirname, os.path.relpath(target, self.run_dir))
            dkio.write_json(self.run_dir / "metrics.json", metrics)
        dkio.write_yaml(self.run_dir / "recipe.resolved.yaml", self.validated.resolved)

    def execute(self) -> Path:
        """Run every step not yet done; return the run directory."""
        self.check_run_dir()
        self._wait()  # every process checks before the main process creates anything
        self._setup_logging()
        self.prepare()
        self._wait()  # every process sees the folder as prepare left it (an extension moves step folders)
        status = dkio.read_json(self.run_dir / "run.json", {}) if self.resume else {}
        status.update({"status": "running", "command": self.command, "defectkit": __version__})
        status.setdefault("started", _now())
        status.setdefault("steps", {})
        self._write_status(status)
        current = None
        try:
            self.check_data()
            for step in self.validated.steps:
                current = step
                manifest = self._manifest(step)
                if manifest and manifest.get("status") == "done":
                    self._done[step.id] = manifest
                    log.info("step %s: done in an earlier session, skipped", step.dirname)
                    continue
                resumed = (self.run_dir / step.dirname).exists()
                if not resumed and self._reuse(step):
                    status["steps"][step.id] = "reused"
                    self._write_status(status)
                    continue
                self._run_step(step, resume=self.resume and resumed)
                status["steps"][step.id] = "done"
                self._write_status(status)
            status["status"] = "finished"
        except KeyboardInterrupt as exc:
            status["status"] = "interrupted"
            where = current.dirname if current else "start-up"
            how = "terminated (SIGTERM)" if isinstance(exc, Terminated) else "interrupted"
            raise RunInterrupted(
                f"{how} during {where}; continue with: {self.resume_command()}",
                exit_code=143 if isinstance(exc, Terminated) else 130,
            ) from None
        except DiskFullError:
            status["status"] = "failed"  # nothing more is written: run.log would fail too
            self._disk_full = True
            raise
        except DefectkitError as exc:
            # a user mistake: one line in run.log; the CLI prints it once, with no traceback
            status["status"] = "failed"
            self._file_log.error("step %s failed: %s", current.dirname if current else "?", exc)
            raise
        except BaseException as exc:
            status["status"] = "failed"
            if dkio.is_disk_full(exc, self.run_dir):
                self._disk_full = True
                raise DiskFullError(getattr(exc, "filename", None) or self.run_dir) from None
            if current is not None and current.components and isinstance(exc, Exception):
                # a plugin's bug: the traceback goes to run.log, the user reads one line naming the plugin
                self._file_log.error("step %s failed", current.dirname, exc_info=exc)
                raise plugin_error(current, exc, self.run_dir / "run.log") from None
            log.exception("step %s failed", current.dirname if current else "?")
            raise
        finally:
            status["finished"] = _now()
            if self._disk_full:
                # run.json keeps its last complete state; the run resumes from the last finished step
                with contextlib.suppress(OSError, DiskFullError):
                    self._write_status(status)
            else:
                self._write_status(status)
            self._finish()
        return self.run_dir

    def check_data(self) -> None:
        """Open every dataset the recipe names and decode small ones in full, before the first step runs.

        Every process checks: one that stopped alone would leave the others waiting in a collective.
        """
        from defectkit.data.precheck import check_before_run

        datasets = {}
        if self.validated.data_component is not None:
            datasets["data"] = self.dataset
        for step in self.validated.steps:
            opened = self.step_dataset(step) if step.data_component is not None else None
            if opened is not None and all(opened is not d for d in datasets.values()):
                datasets[f"steps[{step.index}].{step.kind}.data"] = opened
        for line in check_before_run(datasets):
            log.info("data check: %s", line)

    def resume_command(self) -> str:
        """The whole command that continues this run, ``--set`` options included."""
        words = ["defectkit", "run", str(self.validated.path), "--out", str(self.run_dir), "--resume"]
        for assignment in self.validated.overrides:
            words += ["--set", assignment]
        return " ".join(shlex.quote(w) for w in words)

    @cached_property
    def fingerprints(self) -> list[str]:
        """Per step, what determines its outputs: see :func:`defectkit.experiments.step_fingerprints`."""
        from defectkit.experiments import step_fingerprints

        return step_fingerprints(self.validated.resolved)

    def _reuse(self, step: ResolvedStep) -> bool:
        """Take a finished, identical step from another run of the same experiment instead of computing it."""
        # one process only: under accelerate launch every process would have to agree on the reuse
        if not self.reuse_from or step.kind == "report" or world_size() > 1:
            return False
        from defectkit.experiments import find_identical_step, reuse_step

        source = find_identical_step(self.reuse_from, step.dirname, self.fingerprints[step.index])
        if source is None:
            return False
        manifest = reuse_step(source, self.run_dir, step)
        self._done[step.id] = manifest
        from defectkit.report import read_scalars

        # the step's curves come along, for this run's report
        for tag, points in read_scalars(source.parent / "scalars.jsonl").items():
            if tag.startswith(f"{step.id}/"):
                for number, value in points:
                    self.log_scalar(tag, value, number)
        log.info("step %s: identical to %s in %s: reused, not recomputed", step.dirname, step.dirname, source.parent)
        return True

    def _run_step(self, step: ResolvedStep, resume: bool) -> None:
        seed_everything(self.recipe.seed)
        ctx = StepContext(self, step, resume=resume)
        names = ", ".join(c.name for c in step.components) or "built-in"
        log.info("step %s: %s (%s)%s", step.dirname, step.kind, names, " resumed" if resume else "")
        started = time.perf_counter()
        with PeakMemory() as memory:
            if step.kind == "report":
                from defectkit.report import render_report

                render_report(self.run_dir, step.configs[0])
                ctx.add_artifact("report", self.run_dir / "report.html")
            elif step.kind == "evaluate":
                for component, config in zip(step.components, step.configs, strict=True):
                    figures = component.load_factory()(config).evaluate(ctx)
                    ctx.log_metrics(figures or {})
            else:
                component, config = step.components[0], step.configs[0]
                obj = component.load_factory()(config)
                method = getattr(obj, STEP_METHOD[step.kind], None)
                if method is None:
                    raise TypeError(
                        f"{component.qualified_name} from plugin {component.plugin}: its factory returned "
                        f"{type(obj).__name__}, which has no {STEP_METHOD[step.kind]}(ctx) method"
                    )
                method(ctx)
        seconds = time.perf_counter() - started
        self._wait()
        ctx._metrics.update(_cost_figures(step, ctx, seconds, memory))
        manifest = {
            "id": step.id,
            "kind": step.kind,
            "status": "done",
            "components": [{"name": c.name, "kind": c.kind, "plugin": c.plugin} for c in step.components],
            "seconds": round(seconds, 3),
            **memory.figures(),
            "fingerprint": self.fingerprints[step.index],
            "finished": _now(),
            "artifacts": ctx._artifacts,
            "figures": ctx._figures,
            "metrics": ctx._metrics,
        }
        self._done[step.id] = manifest
        if self.is_main_process:
            if ctx._metrics:
                metrics = dkio.read_json(self.run_dir / "metrics.json", {})
                metrics[step.id] = ctx._metrics
                dkio.write_json(self.run_dir / "metrics.json", metrics)
            # the manifest is written last: its presence marks the step as done
            dkio.write_json(self.run_dir / step.dirname / "manifest.json", manifest)
            self.log_scalar("run/step_seconds", seconds, step.index)
        log.info("step %s: finished in %.1f s", step.dirname, seconds)

    def _wait(self) -> None:
        if world_size() > 1:
            self.accelerator.wait_for_everyone()

    def _write_status(self, status: dict[str, Any]) -> None:
        if self.is_main_process and self.run_dir.exists():
            dkio.write_json(self.run_dir / "run.json", status)

    def _finish(self) -> None:
        if self.is_main_process and self.run_dir.exists() and not self._disk_full and "torch" in sys.modules:
            described = dkio.read_json(self.run_dir / "environment.json", {})
            if described.get("torch_loaded") is False:  # a step loaded torch after the start: describe it now
                dkio.write_json(self.run_dir / "environment.json", {**environment(self), "started": described.get("started")})
        if self._scalars_file is not None:
            self._scalars_file.close()
            self._scalars_file = None
        if "tensorboard" in self.__dict__:
            self.tensorboard.close()
        if "_scalar_events" in self.__dict__:
            self._scalar_events.close()
        if self.is_main_process and self.run_dir.exists() and not self._disk_full:
            from defectkit.recipe import ReportOptions
            from defectkit.report import render_report

            options = next((s.configs[0] for s in self.validated.steps if s.kind == "report"), ReportOptions())
            try:
                render_report(self.run_dir, options)
            except Exception:  # a report problem must not hide the run's own outcome
                log.exception("could not write report.html")
        self._teardown_logging()

    def _setup_logging(self) -> None:
        log.setLevel(logging.INFO)
        self._handlers: list[logging.Handler] = []
        self._file_log = logging.getLogger("defectkit.runfile")
        self._file_log.propagate = False
        file_handler = console_handler = None
        if self.is_main_process:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            file_handler = logging.FileHandler(self.run_dir / "run.log", encoding="utf-8")
            file_handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
            self._handlers.append(file_handler)
            self._file_log.addHandler(file_handler)
            if self.console is not None:
                from rich.logging import RichHandler

                console_handler = RichHandler(console=self.console, show_path=False, show_time=False)
                self._handlers.append(console_handler)
        for handler in self._handlers:
            log.addHandler(handler)
        self._libraries = LibraryOutput(file_handler, console_handler, self.verbose).__enter__()

    def _teardown_logging(self) -> None:
        self._libraries.__exit__(None, None, None)
        for handler in list(self._file_log.handlers):
            self._file_log.removeHandler(handler)
        for handler in self._handlers:
            log.removeHandler(handler)
            handler.close()


def _cost_figures(step: ResolvedStep, ctx: StepContext, seconds: float, memory: PeakMemory) -> dict[str, float]:
    """What a train or generate step cost (seed 000 §9.2): peak memory, and seconds per generated image."""
    figures: dict[str, float] = {}
    if step.kind in ("train", "generate"):
        figures.update(memory.figures())
    generated = ctx._artifacts.get("generated_images")
    if step.kind == "generate" and generated is not None:
        metadata = ctx.run_dir / generated / "metadata.jsonl"
        count = sum(1 for line in metadata.read_text(encoding="utf-8").splitlines() if line.strip()) if metadata.is_file() else 0
        if count:
            figures["seconds_per_image"] = round(seconds / count, 4)
    return figures


def _scalar_event(tag: str, value: float, step: int):
    from tensorboard.compat.proto.event_pb2 import Event
    from tensorboard.compat.proto.summary_pb2 import Summary

    return Event(wall_time=time.time(), step=step, summary=Summary(value=[Summary.Value(tag=tag, simple_value=value)]))


def first_difference(a: Any, b: Any, path: str = "") -> str | None:
    """Where two resolved recipes first differ, as ``key.path: old -> new``."""
    if isinstance(a, dict) and isinstance(b, dict):
        for key in list(a) + [k for k in b if k not in a]:
            found = first_difference(a.get(key), b.get(key), f"{path}.{key}" if path else str(key))
            if found:
                return found
        return None
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            found = first_difference(x, y, f"{path}[{i}]")
            if found:
                return found
        return None
    return None if a == b else f"{path}: {a!r} -> {b!r}"


def environment(run: Run) -> dict[str, Any]:
    """Versions, device and seed, for environment.json.

    torch is described only once a step has imported it (the run rewrites the
    file at its end then); before that its installed version is read from the
    package metadata, so a numpy-only recipe never pays for importing it.
    """
    from importlib import metadata

    from defectkit.plugins import get_registry

    registry = get_registry()
    torch = sys.modules.get("torch")
    described: dict[str, Any]
    if torch is not None:
        cuda = torch.cuda.is_available()
        described = {
            "torch": torch.__version__,
            "cuda": torch.version.cuda,
            "cuda_available": cuda,
            "gpus": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if cuda else [],
            "device": str(run.device),
        }
    else:
        try:
            version = metadata.version("torch")
        except metadata.PackageNotFoundError:
            version = None
        described = {"torch": version, "device": run.recipe.device, "torch_loaded": False}
    return {
        "defectkit": __version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        **described,
        "processes": world_size(),
        "seed": run.recipe.seed,
        "plugins": {
            info.name: {"distribution": info.distribution, "version": info.version, "status": info.status}
            for info in registry.plugins.values()
        },
        "command": run.command,
        "started": _now(),
    }


def default_run_dir(validated: ValidatedRecipe) -> Path:
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{validated.recipe.name}-{stamp}"


def run_recipe(
    validated: ValidatedRecipe,
    out: str | Path | None = None,
    resume: bool = False,
    console: Console | None = None,
    command: str = "",
    verbose: bool = False,
    reuse_from: Sequence[Path] = (),
) -> Path:
    """Execute ``validated`` into ``out`` (default ``runs/NAME-TIMESTAMP``).

    ``console``: where progress and the log are shown (``None``: run.log only).
    ``verbose``: the libraries' own warnings and progress bars on the console too.
    ``reuse_from``: finished runs of the same experiment whose identical steps are taken, not recomputed.
    """
    if resume and out is None:
        raise RunError("--resume needs --out RUN_DIR: the run directory to continue")
    if out is None:
        out = default_run_dir(validated)
        if world_size() > 1:
            # every process must write into the same folder: the main one names it
            from accelerate import PartialState
            from accelerate.utils import broadcast_object_list

            PartialState(cpu=use_cpu(validated.recipe.device))
            out = Path(broadcast_object_list([str(out)])[0])
    run = Run(
        validated, Path(out), resume=resume, console=console, command=command, verbose=verbose, reuse_from=reuse_from
    )
    if int(os.environ.get("RANK", "0")) != 0:
        return run.execute()  # the launch's main process holds the lock for all of them
    with sigterm_as_interrupt(), run_folder_lock(run.run_dir, command) as lock:
        if lock.taken_over and console is not None:
            pid = lock.taken_over.get("pid", "?")
            console.print(f"defectkit: note: took over the lock left by pid {pid}, which is no longer running")
        return run.execute()
