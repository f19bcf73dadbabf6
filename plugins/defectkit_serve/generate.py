"""The Generate tab's back end: a run's generate steps whose generator offers an interactive session.

A generator component opts in by giving the object its factory returns an ``open_session`` method
(:class:`defectkit.protocols.InteractiveGenerator`); the session (:class:`defectkit.protocols.GenerationSession`)
has ``labels``, ``capabilities`` (:class:`defectkit.protocols.SessionCapabilities`: which optional inputs the
tab shows) and ``generate(label, prompt=None, negative_prompt=None, seed=0, guidance=None, steps=None,
control_image=None, image=None, mask=None) -> PIL.Image.Image``.

The generator is built from the registry with the step's resolved ``with:`` options, exactly as the run did.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from defectkit.errors import DefectkitError
from defectkit_serve.inspectors import MODELS
from defectkit_serve.runinfo import RunInfo, StepInfo


@dataclass
class GeneratorStep:
    step: StepInfo
    generator: Any

    @property
    def name(self) -> str:
        return self.step.component


def find_generators(run: RunInfo) -> tuple[list[GeneratorStep], list[str]]:
    """The run's servable generate steps, and a note for each one that is not (plugin missing, no session)."""
    from defectkit.plugins import get_registry

    registry = get_registry()
    found: list[GeneratorStep] = []
    notes: list[str] = []
    for step in run.generate_steps():
        try:
            component = registry.get("generator", step.component)
        except DefectkitError as exc:
            notes.append(f"step {step.dirname}: {exc}")
            continue
        try:
            generator = component.create(step.options)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            notes.append(
                f"step {step.dirname}: the installed {step.component} rejects the run's option {where}: {first['msg']}"
            )
            continue
        if callable(getattr(generator, "open_session", None)):
            found.append(GeneratorStep(step, generator))
        else:
            notes.append(
                f"step {step.dirname}: generator {step.component} offers no interactive session (open_session)"
            )
    return found, notes


def label_hint(run: RunInfo, entry: GeneratorStep) -> list[str]:
    """The defect classes the step generated (from its ``generated_images`` metadata), before any model loads."""
    from defectkit.generated import read_metadata

    rel = entry.step.artifacts.get("generated_images")
    if rel is None:
        return []
    try:
        records = read_metadata(run.run_dir / rel)
    except DefectkitError:
        return []
    return sorted({str(r.get("defect_type", "")) for r in records} - {""})


def get_session(run: RunInfo, entry: GeneratorStep, device: str) -> Any:
    """The step's session, opened on first use and kept for every later request."""
    key = (str(run.run_dir), entry.step.id, device)
    return MODELS.get(key, lambda: entry.generator.open_session(run.run_dir, entry.step.id, device))
