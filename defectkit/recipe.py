"""YAML recipes: reading, ``--set`` overrides and three-pass validation.

Validation happens before anything heavy is imported:

1. structure: the recipe's own pydantic models, unknown keys rejected everywhere;
2. names: every ``data.format`` and ``use:`` against the plugin registry;
3. options: every ``with:`` block against its component's pydantic config model;
4. look ahead: every data root and category exists (no image is opened), and
   every artifact a step's components consume (:class:`~defectkit.components.Consumes`)
   comes from an earlier step whose component produces it and is one the
   consumer accepts.

Every mistake becomes one :class:`~defectkit.errors.RecipeError` whose message
names the file and the key path, e.g.
``recipes/x.yaml: steps[2].train.with.rank: Input should be a valid integer``.
"""

from __future__ import annotations

import difflib
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from defectkit.components import Component
from defectkit.errors import RecipeError, RegistryError
from defectkit.feasibility import check_feasible
from defectkit.options import StrictOptions
from defectkit.plugins import Registry

SCHEMA_VERSION = 1

#: step kind -> the component kind its ``use:`` names (``None``: built in)
STEP_KINDS: dict[str, str | None] = {
    "caption": "caption_provider",
    "train": "trainer",
    "generate": "generator",
    "detect": "detector",
    "evaluate": "metric",
    "report": None,
}


class _Strict(StrictOptions):
    model_config = ConfigDict(populate_by_name=True)


class SplitSpec(_Strict):
    """How a dataset's samples are split; deterministic for a given seed."""

    seed: int | None = Field(None, description="split seed; defaults to the recipe's seed")
    val_fraction: float = Field(0.0, ge=0.0, lt=1.0, description="share of training samples held out for validation")
    protocol: Literal["standard", "generation"] = Field(
        "standard",
        description="'generation': per defect type, the first third by file name trains the generator, the rest evaluates",
    )


class DataSpec(_Strict):
    """The recipe's ``data:`` block."""

    format: str
    root: str | None = None
    category: str | list[str] | None = None
    split: SplitSpec = Field(default_factory=SplitSpec)
    with_: dict[str, Any] = Field(default_factory=dict, alias="with")

    @field_validator("category", mode="before")
    @classmethod
    def _category(cls, value: Any) -> Any:
        if value is not None and not isinstance(value, (str, list)):
            raise ValueError("must be a category name or a list of names")
        return value


class StepSpec(_Strict):
    """One step: which component(s) to ``use:`` and their options ``with:``."""

    id: str | None = Field(None, pattern=r"^[A-Za-z0-9_\-]+$")
    use: list[str] = Field(default_factory=list)
    with_: dict[str, Any] = Field(default_factory=dict, alias="with")
    inputs: dict[str, str] = Field(
        default_factory=dict, description="artifact name -> id of the step that produced it (default: the latest)"
    )
    data: DataSpec | None = Field(None, description="this step's own dataset, in place of the recipe's data:")

    @field_validator("use", mode="before")
    @classmethod
    def _use(cls, value: Any) -> list[str]:
        if value is None:
            return []
        if isinstance(value, str):
            return [value]
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return value
        raise ValueError("must be a component name or a list of names")


class Step(_Strict):
    """A list item of ``steps:``: exactly one of the step kinds."""

    caption: StepSpec | None = None
    train: StepSpec | None = None
    generate: StepSpec | None = None
    detect: StepSpec | None = None
    evaluate: StepSpec | None = None
    report: StepSpec | None = None

    @model_validator(mode="before")
    @classmethod
    def _one_kind(cls, value: Any) -> Any:
        if isinstance(value, dict):
            kinds = [k for k in value if k in STEP_KINDS]
            if len(kinds) != 1 and all(k in STEP_KINDS for k in value):
                raise ValueError(f"a step has exactly one of {', '.join(STEP_KINDS)}; got {', '.join(kinds) or 'none'}")
            # ``report:`` with nothing under it is a step with no options
            return {k: ({} if v is None else v) for k, v in value.items()}
        return value

    @property
    def kind(self) -> str:
        return next(k for k in STEP_KINDS if getattr(self, k) is not None)

    @property
    def spec(self) -> StepSpec:
        return getattr(self, self.kind)


class Recipe(_Strict):
    """A whole recipe file."""

    version: Literal[1] = Field(description="recipe schema version")
    name: str = Field(pattern=r"^[A-Za-z0-9_.\-]+$")
    description: str = ""
    seed: int = 0
    device: str = Field("auto", description="auto, cpu, cuda, cuda:1 ...")
    data: DataSpec | None = None
    steps: list[Step] = Field(min_length=1)


# -- results of validation -------------------------------------------------------


@dataclass
class ResolvedStep:
    """A validated step: its id, folder name, components and built configs."""

    index: int
    kind: str
    id: str
    spec: StepSpec
    components: list[Component]
    configs: list[Any]
    #: the step's own ``data:`` (``None``: the recipe's)
    data_component: Component | None = None
    data_config: Any = None

    @property
    def dirname(self) -> str:
        return f"{self.index + 1:02d}_{self.id}"


@dataclass
class ValidatedRecipe:
    path: Path
    recipe: Recipe
    steps: list[ResolvedStep]
    data_component: Component | None = None
    data_config: Any = None
    resolved: dict[str, Any] = field(default_factory=dict)
    #: things validation changed that the user should hear about (printed by the CLI)
    notes: list[str] = field(default_factory=list)
    #: the ``--set`` options applied, in order (a resume must repeat them)
    overrides: tuple[str, ...] = ()
    #: the recipe's ``experiments:`` groups, each validated as the recipe with the group's values set
    groups: dict[str, ValidatedRecipe] = field(default_factory=dict)


# -- reading and overrides ---------------------------------------------------------


def read_recipe_file(path: str | Path) -> dict[str, Any]:
    """Read a recipe with ``yaml.safe_load``; any problem is a one-line RecipeError."""
    path = Path(path)
    if not path.exists():
        raise RecipeError(f"{path}: no such recipe file (list the ready ones with `defectkit recipes`)")
    if path.is_dir():
        raise RecipeError(f"{path}: is a folder; give a recipe .yaml file")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise RecipeError(f"{path}: cannot be read as UTF-8 text ({exc.__class__.__name__})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise RecipeError(f"{path}: invalid YAML: {where}{problem}") from None
    if data is None:
        raise RecipeError(f"{path}: the file is empty; a recipe is a mapping with version, name, data and steps")
    if not isinstance(data, dict):
        raise RecipeError(
            f"{path}: a recipe must be a mapping with version, name, data and steps, got a {type(data).__name__}"
        )
    return data


_PATH_TOKEN = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def _parse_key_path(key_path: str) -> list[str | int]:
    parts: list[str | int] = []
    pos = 0
    for match in _PATH_TOKEN.finditer(key_path):
        gap = key_path[pos : match.start()]
        if gap not in ("", "."):
            raise ValueError(f"cannot parse key path {key_path!r}")
        name, index = match.groups()
        parts.append(int(index) if index is not None else (int(name) if name.isdigit() else name))
        pos = match.end()
    if not parts or key_path[pos:]:
        raise ValueError(f"cannot parse key path {key_path!r}")
    return parts


def apply_override(data: dict[str, Any], assignment: str) -> None:
    """Apply one ``--set key.path=value``; the value is parsed as YAML (``3``, ``true``, ``[a, b]``)."""
    key_path, sep, raw = assignment.partition("=")
    if not sep or not key_path.strip():
        raise RecipeError(f"--set {assignment}: expected key.path=value, e.g. --set data.root=/data/mvtec")
    try:
        parts = _parse_key_path(key_path.strip())
        value = yaml.safe_load(raw) if raw.strip() else ""
    except (ValueError, yaml.YAMLError) as exc:
        raise RecipeError(f"--set {assignment}: {exc}") from None
    node: Any = data
    for depth, part in enumerate(parts):
        last = depth == len(parts) - 1
        where = format_loc(parts[: depth + 1])
        if isinstance(part, int):
            if not isinstance(node, list):
                raise RecipeError(f"--set {assignment}: {format_loc(parts[:depth]) or 'the recipe'} is not a list")
            if part >= len(node):
                raise RecipeError(f"--set {assignment}: {where} does not exist (the list has {len(node)} items)")
        elif not isinstance(node, dict):
            raise RecipeError(f"--set {assignment}: {format_loc(parts[:depth])} is not a mapping")
        if last:
            node[part] = value
        else:
            if isinstance(node, dict) and node.get(part) is None:
                node[part] = {}
            node = node[part]


def format_loc(loc: typing.Sequence[str | int]) -> str:
    """``("steps", 2, "train", "with", "rank")`` -> ``steps[2].train.with.rank``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


# -- validation --------------------------------------------------------------------


def _submodel(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model inside ``X | None``, ``list[X]``, ``dict[str, X]``, if any."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if typing.get_origin(annotation) in (typing.Union, types.UnionType, list, dict, tuple):
        for arg in typing.get_args(annotation):
            found = _submodel(arg)
            if found is not None:
                return found
    return None


def _allowed_keys(model: type[BaseModel] | None, loc: typing.Sequence[str | int]) -> list[str]:
    """The keys a model accepts at ``loc``, for "did you mean" on unknown keys."""
    for part in loc:
        if model is None:
            return []
        if isinstance(part, int):
            continue
        fields = {(f.alias or name): f for name, f in model.model_fields.items()}
        if part not in fields:
            return []
        model = _submodel(fields[part].annotation)
    if model is None:
        return []
    return [(f.alias or name) for name, f in model.model_fields.items()]


def _error_message(err: dict[str, Any], model: type[BaseModel] | None) -> str:
    loc = list(err["loc"])
    if err["type"] == "extra_forbidden" and loc:
        key = loc[-1]
        allowed = _allowed_keys(model, loc[:-1])
        close = difflib.get_close_matches(str(key), allowed, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        allowed_text = f" (allowed: {', '.join(allowed)})" if allowed else ""
        return f"unknown key{hint}{allowed_text}"
    msg = err["msg"]
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
    return msg


def validation_message(
    source: str, exc: ValidationError, prefix: typing.Sequence[str | int] = (), model: type[BaseModel] | None = None
) -> str:
    """One line for a pydantic error: ``file: key.path: message (and N more)``."""
    errors = exc.errors()
    first = errors[0]
    loc = [*prefix, *first["loc"]]
    where = format_loc(loc)
    line = f"{source}: {where + ': ' if where else ''}{_error_message(first, model)}"
    if len(errors) > 1:
        line += f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})"
    return line


def _step_ids(steps: list[Step]) -> list[str]:
    ids: list[str] = []
    counts: dict[str, int] = {}
    for step in steps:
        base = step.spec.id or step.kind
        counts[base] = counts.get(base, 0) + 1
        ids.append(base if counts[base] == 1 else f"{base}_{counts[base]}")
    return ids


def _config_dump(config: Any) -> Any:
    return config.model_dump(mode="json") if isinstance(config, BaseModel) else {}


def validate_recipe(
    data: dict[str, Any], registry: Registry, source: str | Path = "<recipe>", overrides: typing.Sequence[str] = ()
) -> ValidatedRecipe:
    """Apply ``overrides`` and run the validation passes; raise RecipeError on the first problem.

    A recipe with an ``experiments:`` block is validated once as written and
    once per group (the group's values set first, then ``overrides``).
    """
    source = str(source)
    if "experiments" in data:
        data = dict(data)
        groups = _validate_groups(data.pop("experiments"), data, registry, source, overrides)
        validated = validate_recipe(data, registry, source, overrides)
        validated.groups = groups
        return validated
    notes: list[str] = []
    old_data = data.get("data") if isinstance(data.get("data"), dict) else {}
    old_format, old_with = old_data.get("format"), old_data.get("with")
    for assignment in overrides:
        apply_override(data, assignment)
    new_data = data.get("data") if isinstance(data.get("data"), dict) else {}
    touched_with = any(a.partition("=")[0].strip().startswith("data.with") for a in overrides)
    # (``is``: a --set that replaced the whole data: block brought its own options, or none)
    if old_with and new_data.get("format") != old_format and not touched_with and new_data.get("with") is old_with:
        # the options belonged to the recipe's own format; --set data.format=... brings another dataset
        del new_data["with"]
        notes.append(
            f"data.with ({', '.join(map(str, old_with))}) belonged to format {old_format!r} and is not used "
            f"with --set data.format={new_data.get('format')}; set data.with.* to give the new format options"
        )

    # pass 1: structure
    try:
        recipe = Recipe.model_validate(data)
    except ValidationError as exc:
        raise RecipeError(validation_message(source, exc, model=Recipe)) from None

    # pass 2: names against the registry
    data_component = None
    if recipe.data is not None:
        data_component = _lookup(registry, "dataset", recipe.data.format, source, "data.format")
    ids = _step_ids(recipe.steps)
    known_ids: set[str] = set()
    steps: list[ResolvedStep] = []
    for index, (step, step_id) in enumerate(zip(recipe.steps, ids, strict=True)):
        kind, spec = step.kind, step.spec
        where = f"steps[{index}].{kind}"
        component_kind = STEP_KINDS[kind]
        if component_kind is None:
            if spec.use:
                raise RecipeError(f"{source}: {where}.use: the {kind} step is built in and uses no component")
            components = []
        else:
            if not spec.use:
                raise RecipeError(f"{source}: {where}.use: name the {component_kind.replace('_', ' ')} to use")
            if kind != "evaluate" and len(spec.use) > 1:
                raise RecipeError(f"{source}: {where}.use: a {kind} step uses one component, got {len(spec.use)}")
            components = [
                _lookup(
                    registry, component_kind, name, source, f"{where}.use" + (f"[{i}]" if len(spec.use) > 1 else "")
                )
                for i, name in enumerate(spec.use)
            ]
        for artifact, producer in spec.inputs.items():
            if producer not in known_ids:
                choices = ", ".join(sorted(known_ids)) or "none yet"
                raise RecipeError(
                    f"{source}: {where}.inputs.{artifact}: no earlier step has id {producer!r} (earlier: {choices})"
                )
        known_ids.add(step_id)
        resolved_step = ResolvedStep(index, kind, step_id, spec, components, [])
        if spec.data is not None:
            resolved_step.data_component = _lookup(
                registry, "dataset", spec.data.format, source, f"{where}.data.format"
            )
        steps.append(resolved_step)

    # pass 3: options against each component's config model
    data_config = None
    if recipe.data is not None and data_component is not None:
        data_config = _build_data_config(recipe.data, data_component, source)
    for step in steps:
        where = [*("steps", step.index, step.kind)]
        if step.spec.data is not None and step.data_component is not None:
            step.data_config = _build_data_config(step.spec.data, step.data_component, source, [*where, "data"])
        if step.kind == "report":
            step.configs = [_build(ReportOptions, step.spec.with_, source, [*where, "with"])]
        elif len(step.components) == 1 and step.kind != "evaluate":
            component = step.components[0]
            step.configs = [_build_component(component, step.spec.with_, source, [*where, "with"])]
        else:
            names = [c.name for c in step.components]
            for key in step.spec.with_:
                if key not in names:
                    raise RecipeError(
                        f"{source}: {format_loc([*where, 'with', key])}: not used by this step; "
                        f"'with' of an evaluate step maps each used metric to its options ({', '.join(names)})"
                    )
            step.configs = [
                _build_component(c, step.spec.with_.get(c.name) or {}, source, [*where, "with", c.name])
                for c in step.components
            ]

    # pass 4: look ahead at the data on disk and the artifacts between steps
    if data_config is not None:
        _check_paths(data_config, source, ["data"])
    for step in steps:
        if step.data_config is not None:
            _check_paths(step.data_config, source, ["steps", step.index, step.kind, "data"])
        _check_artifacts(step, steps, registry, source)

    resolved = recipe.model_dump(mode="json", by_alias=True, exclude_none=True)
    if data_config is not None:
        resolved["data"]["with"] = _data_options(data_config)
    for step, raw in zip(steps, resolved["steps"], strict=True):
        body = raw[step.kind]
        body["id"] = step.id
        if step.data_config is not None:
            body["data"]["with"] = _data_options(step.data_config)
        if step.kind == "evaluate":
            body["with"] = {c.name: _config_dump(cfg) for c, cfg in zip(step.components, step.configs, strict=True)}
        else:
            body["with"] = _config_dump(step.configs[0])
    validated = ValidatedRecipe(
        Path(source), recipe, steps, data_component, data_config, resolved, notes, tuple(overrides)
    )
    # pass 4: what is well-formed but cannot work (non-finite numbers, seeds, devices this machine lacks)
    check_feasible(validated)
    return validated


class ReportOptions(_Strict):
    """Options of the built-in ``report`` step."""

    title: str | None = Field(None, description="page title; defaults to the recipe's name")
    max_images: int = Field(48, ge=0, description="images shown per step")


def _lookup(registry: Registry, kind: str, name: str, source: str, where: str) -> Component:
    try:
        component = registry.get(kind, name)
    except RegistryError as exc:
        raise RecipeError(f"{source}: {where}: {exc}") from None
    missing = component.unmet_requirements()
    if missing:  # before its options are read: their module may import what is missing
        raise RecipeError(
            f"{source}: {where}: {kind.replace('_', ' ')} {name!r} needs {', '.join(missing)}, not installed; "
            f"run: {component.install_hint()}"
        )
    return component


def _build(model: type[BaseModel], options: dict[str, Any], source: str, where: list[str | int]) -> Any:
    try:
        return model.model_validate(options)
    except ValidationError as exc:
        raise RecipeError(validation_message(source, exc, where, model)) from None


def _build_component(component: Component, options: dict[str, Any], source: str, where: list[str | int]) -> Any:
    try:
        model = component.load_config_model()
    except Exception as exc:  # a broken plugin, not a user mistake, but it must still read well
        raise RecipeError(
            f"{source}: {format_loc(where)}: cannot load the options of {component.qualified_name} "
            f"from plugin {component.plugin} ({type(exc).__name__}: {exc})"
        ) from None
    if model is None:
        if options:
            raise RecipeError(f"{source}: {format_loc(where)}: {component.qualified_name} takes no options")
        return None
    return _build(model, options, source, where)


def _data_options(config: Any) -> dict[str, Any]:
    return {k: v for k, v in _config_dump(config).items() if k not in ("root", "category")}


def _build_data_config(
    data: DataSpec, component: Component, source: str, prefix: typing.Sequence[str | int] = ("data",)
) -> Any:
    """Validate ``root``/``category`` and ``with:`` together against the dataset's config model."""
    options = dict(data.with_)
    for key in ("root", "category"):
        value = getattr(data, key)
        if value is not None:
            options[key] = value
    try:
        model = component.load_config_model()
    except Exception as exc:
        raise RecipeError(
            f"{source}: {format_loc([*prefix, 'format'])}: cannot load the options of dataset {component.name!r} ({type(exc).__name__}: {exc})"
        ) from None
    if model is None:
        return None
    try:
        return model.model_validate(options)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = list(err["loc"])
        if loc and loc[0] in ("root", "category"):
            path = [*prefix, *loc]
            if err["type"] == "extra_forbidden":
                msg = f"the {component.name!r} format takes no {loc[0]}"
            else:
                msg = _error_message(err, model)
        else:
            path = [*prefix, "with", *loc]
            msg = _error_message(err, model)
        raise RecipeError(f"{source}: {format_loc(path)}: {msg}") from None


def applicable_options(model: type[BaseModel] | None, options: Any) -> Any:
    """``options`` without the ones that do not apply to the chosen mode, for showing them.

    A config field marks itself with ``json_schema_extra={"only_when": {"latent": "vae"}}``
    (a sibling key and the value, or list of values, under which it applies);
    nested models are followed. The resolved recipe keeps every option: this is
    only what the report shows.
    """
    if model is None or not isinstance(options, dict):
        return options
    shown: dict[str, Any] = {}
    fields = {(f.alias or name): f for name, f in model.model_fields.items()}
    for key, value in options.items():
        info = fields.get(key)
        extra = info.json_schema_extra if info is not None and isinstance(info.json_schema_extra, dict) else {}
        condition = extra.get("only_when") or {}
        if any(options.get(other) not in (wanted if isinstance(wanted, list) else [wanted]) for other, wanted in condition.items()):
            continue
        shown[key] = applicable_options(_submodel(info.annotation), value) if info is not None else value
    return shown


_GROUP_NAME = re.compile(r"^[A-Za-z0-9_.\-]+$")


def _validate_groups(
    experiments: Any, data: dict[str, Any], registry: Registry, source: str, overrides: typing.Sequence[str]
) -> dict[str, ValidatedRecipe]:
    """Each ``experiments:`` group as its own validated recipe: the base, the group's key paths, then ``--set``."""
    import copy
    import json

    if not isinstance(experiments, dict) or not experiments:
        raise RecipeError(f"{source}: experiments: a mapping of group names to {{key.path: value}} mappings")
    groups: dict[str, ValidatedRecipe] = {}
    for name, values in experiments.items():
        where = f"experiments.{name}"
        if not isinstance(name, str) or not _GROUP_NAME.match(name):
            raise RecipeError(f"{source}: {where}: a group name is letters, digits, '_', '-' or '.' (a folder name)")
        if values is None:
            values = {}
        if not isinstance(values, dict):
            raise RecipeError(f"{source}: {where}: a mapping of key paths to values, e.g. {{'steps[1].train.use': dora}}")
        # JSON is YAML: each value goes through the same parser as a --set value
        assignments = [f"{key}={json.dumps(value)}" for key, value in values.items()]
        try:
            groups[name] = validate_recipe(copy.deepcopy(data), registry, source, [*assignments, *overrides])
        except RecipeError as exc:
            raise RecipeError(f"{exc} (in {where})") from None
    return groups


def _check_paths(config: Any, source: str, prefix: list[str | int]) -> None:
    check = getattr(config, "check_paths", None)
    problem = check() if callable(check) else None
    if problem is not None:
        key, message = problem
        raise RecipeError(f"{source}: {format_loc([*prefix, key])}: {message}")


#: what each built-in step produces (it has no component to declare it)
BUILT_IN_PRODUCES: dict[str, tuple[str, ...]] = {"report": ("report",)}


def _produces(step: ResolvedStep) -> tuple[str, ...] | None:
    """The artifacts ``step`` declares, or ``None`` when one of its components does not say."""
    if not step.components:
        return BUILT_IN_PRODUCES.get(step.kind, ())
    names: list[str] = []
    for component in step.components:
        if component.produces is None:
            return None
        names.extend(component.produces)
    return tuple(names)


def _describe(step: ResolvedStep) -> str:
    used = "+".join(c.name for c in step.components) or "built in"
    return f"steps[{step.index}].{step.kind} ({used})"


def _check_artifacts(step: ResolvedStep, steps: list[ResolvedStep], registry: Registry, source: str) -> None:
    """Each consumed artifact has a producer before ``step``, of a kind the consumer accepts."""
    where = f"steps[{step.index}].{step.kind}"
    for component in step.components:
        for need in component.consumes:
            producer = _producer_of(need.artifact, step, steps)
            if producer is _UNKNOWN:
                continue  # an earlier step does not declare what it produces: the run will tell
            if producer is None:
                if need.required:
                    makers = sorted(
                        c.name
                        for c in registry.components()
                        if c.produces and need.artifact in c.produces and (not need.producers or c.name in need.producers)
                    )
                    hint = f"; add a step with {' or '.join(makers)} before it" if makers else ""
                    raise RecipeError(
                        f"{source}: {where}: {component.name} needs artifact {need.artifact!r}, "
                        f"which no earlier step produces{hint}"
                    )
                continue
            made_by = {c.name for c in producer.components}
            if need.producers and not made_by & set(need.producers):
                raise RecipeError(
                    f"{source}: {where}: {component.name} reads {need.artifact!r} made by "
                    f"{' or '.join(need.producers)}, but the one it would get comes from {_describe(producer)}; "
                    f"use a matching step, or pick another with {where}.inputs.{need.artifact}: STEP_ID"
                )


_UNKNOWN: Any = object()


def _producer_of(artifact: str, step: ResolvedStep, steps: list[ResolvedStep]) -> ResolvedStep | None:
    """The step whose ``artifact`` ``step`` will get (as the engine picks it), ``None``, or ``_UNKNOWN``."""
    wanted = step.spec.inputs.get(artifact)
    for earlier in reversed(steps[: step.index]):
        if wanted is not None and earlier.id != wanted:
            continue
        produced = _produces(earlier)
        if produced is None:
            return _UNKNOWN
        if artifact in produced:
            return earlier
        if wanted is not None:
            return None
    return None


def load_recipe(path: str | Path, registry: Registry, overrides: typing.Sequence[str] = ()) -> ValidatedRecipe:
    """Read, override and validate a recipe file."""
    return validate_recipe(read_recipe_file(path), registry, source=str(path), overrides=overrides)
