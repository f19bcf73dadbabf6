"""Schedulers swapped by name: ``XScheduler.from_config(pipe.scheduler.config, **options)``.

Building from the backend's own scheduler config keeps what the weights were
trained with (beta schedule, prediction type, timestep offset) and changes only
the sampler. SD3 is a flow-matching model: only samplers with a flow-matching
mode (flow_match_euler, and UniPC / DPM-Solver++ with ``use_flow_sigmas``) fit it,
and flow_match_euler fits nothing else; any other pairing is refused by name.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any

from defectkit.errors import DefectkitError
from defectkit_diffusion.config import SchedulerConfig


@dataclass(frozen=True)
class SchedulerSpec:
    name: str
    class_name: str
    #: constructor arguments that make the sampler what its name says
    fixed: dict[str, Any] = field(default_factory=dict)
    #: can it sample a flow-matching (SD3) model, and is that all it can do
    flow: bool = False
    flow_only: bool = False


SPECS: dict[str, SchedulerSpec] = {
    spec.name: spec
    for spec in (
        SchedulerSpec("unipc", "UniPCMultistepScheduler", flow=True),
        SchedulerSpec(
            "dpmpp_2m",
            "DPMSolverMultistepScheduler",
            {"algorithm_type": "dpmsolver++", "use_karras_sigmas": True},
            flow=True,
        ),
        SchedulerSpec("ddim", "DDIMScheduler"),
        SchedulerSpec("euler", "EulerDiscreteScheduler"),
        SchedulerSpec("euler_ancestral", "EulerAncestralDiscreteScheduler"),
        SchedulerSpec("pndm", "PNDMScheduler", {"skip_prk_steps": True}),
        SchedulerSpec("lcm", "LCMScheduler"),
        SchedulerSpec("flow_match_euler", "FlowMatchEulerDiscreteScheduler", flow=True, flow_only=True),
    )
}


class NamedScheduler:
    """A scheduler component: ``apply(pipe, family)`` swaps the pipeline's scheduler."""

    def __init__(self, config: SchedulerConfig | None, spec: SchedulerSpec) -> None:
        self.config = config or SchedulerConfig()
        self.spec = spec
        self.name = spec.name

    def scheduler_class(self):
        import diffusers

        return getattr(diffusers, self.spec.class_name)

    def options(self, base_config: Any = None, family: str = "sd15") -> dict[str, Any]:
        """The keyword arguments given to ``from_config``: fixed ones, then those set in the recipe."""
        options = dict(self.spec.fixed)
        if family == "sd3" and not self.spec.flow_only:
            # UniPC / DPM-Solver++ sample a flow-matching model with flow sigmas and the model's own shift
            shift = float((base_config or {}).get("shift", 3.0))
            options.update(use_flow_sigmas=True, prediction_type="flow_prediction", flow_shift=shift)
            options.pop("use_karras_sigmas", None)  # Karras and flow sigmas exclude each other
        dumped = self.config.model_dump(exclude={"extra"}, exclude_none=True)
        options.update(dumped)
        options.update(self.config.extra)
        return options

    def build(self, base_config: Any, family: str = "sd15"):
        """A new scheduler of this kind from the backend's scheduler ``base_config``."""
        if family == "sd3" and not self.spec.flow:
            flow = ", ".join(sorted(n for n, s in SPECS.items() if s.flow))
            raise DefectkitError(
                f"scheduler {self.name}: SD3 is a flow-matching model and {self.spec.class_name} has no flow mode; "
                f"use one of {flow}"
            )
        if family != "sd3" and self.spec.flow_only:
            raise DefectkitError(
                f"scheduler {self.name}: only for flow-matching models (sd3); the {family} backend needs e.g. unipc"
            )
        cls = self.scheduler_class()
        options = self.options(base_config, family)
        accepted = set(inspect.signature(cls.__init__).parameters) - {"self"}
        unknown = sorted(set(options) - accepted)
        if unknown:
            raise DefectkitError(
                f"scheduler {self.name}: {', '.join(unknown)} is not an option of diffusers.{cls.__name__} "
                f"(it takes {', '.join(sorted(accepted))})"
            )
        return cls.from_config(base_config, **options)

    def apply(self, pipe, family: str = "sd15"):
        """Swap ``pipe.scheduler`` for this scheduler; return the pipeline."""
        pipe.scheduler = self.build(pipe.scheduler.config, family)
        return pipe

    def describe(self) -> dict[str, Any]:
        """What the metadata records: the name, the diffusers class and the options set."""
        return {"name": self.name, "class": self.spec.class_name, **self.config.model_dump(exclude_none=True)}


def _factory(name: str):
    def create(config: SchedulerConfig | None = None) -> NamedScheduler:
        return NamedScheduler(config, SPECS[name])

    create.__name__ = f"{name}_scheduler"
    return create


unipc_scheduler = _factory("unipc")
dpmpp_2m_scheduler = _factory("dpmpp_2m")
ddim_scheduler = _factory("ddim")
euler_scheduler = _factory("euler")
euler_ancestral_scheduler = _factory("euler_ancestral")
pndm_scheduler = _factory("pndm")
lcm_scheduler = _factory("lcm")
flow_match_euler_scheduler = _factory("flow_match_euler")
