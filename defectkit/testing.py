"""Fixtures and contract checks for plugin authors (a pytest plugin).

Installed with defectkit and active in every pytest session through the
``pytest11`` entry point; nothing here imports torch at import time.

Fixtures:
    ``defectkit_registry``  a fresh registry of the installed plugins, used by
                            every defectkit call during the test;
    ``register_plugin``     ``register_plugin(obj, name)`` adds a plugin object (a
                            module or a class instance with hook implementations)
                            for one test and removes it afterwards;
    ``tiny_mvtec``          a small synthetic MVTec-layout category on disk.

Checks (plain functions, call them from your tests):
    :func:`check_component`, :func:`check_plugin_light`, :func:`run_recipe_dict`;
    :func:`check_predictor` (a detector's ``open_predictor`` on a finished run) and
    :func:`check_session` (a generator's interactive session).
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from defectkit import plugins as _plugins
from defectkit.components import Component


@pytest.fixture
def defectkit_registry(monkeypatch: pytest.MonkeyPatch) -> Iterator[_plugins.Registry]:
    """A fresh registry of the installed plugins, made the process-wide one for this test."""
    registry = _plugins.load_registry()
    monkeypatch.setattr(_plugins, "_registry", registry)
    yield registry


@pytest.fixture
def register_plugin(defectkit_registry: _plugins.Registry) -> Iterator[Callable[..., _plugins.PluginInfo]]:
    """``register_plugin(obj, name="my-plugin")`` registers ``obj`` until the test ends."""
    added: list[str] = []

    def register(obj: object, name: str | None = None) -> _plugins.PluginInfo:
        name = name or getattr(obj, "__name__", type(obj).__name__)
        info = defectkit_registry.add_plugin(obj, name)
        added.append(info.name)
        return info

    yield register
    for name in added:
        defectkit_registry.remove_plugin(name)


@pytest.fixture
def tiny_mvtec(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small synthetic MVTec-layout dataset root (one texture category, 64 px)."""
    from defectkit.data.synthetic import write_dataset

    root = tmp_path_factory.mktemp("tiny_mvtec")
    write_dataset("mvtec", root, size=64, n_train=8, n_test=6, seed=0, categories=["carpet"])
    return root


def check_component(component: Component, options: dict[str, Any] | None = None) -> Any:
    """The contract every component must meet; returns the built config.

    - its config model (if any) builds from ``options`` (default: no options,
      so every option needs a default or the component must say so in its docs);
    - its factory import string resolves to a callable;
    - each of its requirements (its ``extra``'s, from the installed metadata,
      and its ``requires``) is a valid requirement string, satisfied by the
      installed version where that package is installed.
    """
    from importlib import metadata

    from packaging.requirements import InvalidRequirement, Requirement

    for requirement in component.requirements():
        try:
            parsed = Requirement(requirement)
        except InvalidRequirement as exc:
            raise AssertionError(f"{component.qualified_name}: requires {requirement!r} is not a requirement ({exc})") from None
        try:
            installed = metadata.version(parsed.name)
        except metadata.PackageNotFoundError:
            continue  # an optional dependency the user installs when they need this component
        assert parsed.specifier.contains(installed, prereleases=True), (
            f"{component.qualified_name}: requires {requirement}, but {parsed.name} {installed} is installed"
        )
    config = component.build_config(options)
    factory = component.load_factory()
    assert callable(factory), f"{component.qualified_name}: factory {component.factory} is not callable"
    return config


def check_plugin_light(module: str, forbidden: tuple[str, ...] = ("torch", "transformers", "diffusers")) -> None:
    """Importing ``module`` (a plugin's hooks module) and calling its hooks imports none of ``forbidden``."""
    code = (
        "import sys, importlib\n"
        f"m = importlib.import_module({module!r})\n"
        "from defectkit.plugins import Registry\n"
        f"r = Registry(strict=True); r.add_plugin(m, {module!r})\n"
        f"bad = [name for name in {forbidden!r} if name in sys.modules]\n"
        "print(','.join(bad))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"importing {module} failed:\n{result.stderr}"
    heavy = result.stdout.strip()
    assert not heavy, f"importing {module} pulls in {heavy}: move heavy imports behind the factory"


def run_recipe_dict(recipe: dict[str, Any], out: Path, overrides: tuple[str, ...] = ()) -> Path:
    """Validate and run a recipe given as a dict into ``out``; returns the run directory."""
    from defectkit.plugins import get_registry
    from defectkit.recipe import validate_recipe
    from defectkit.run import run_recipe

    validated = validate_recipe(recipe, get_registry(), source="<test recipe>", overrides=overrides)
    return run_recipe(validated, out=out)


def _sample_images(count: int = 2) -> list[Any]:
    """Two RGB images of different sizes and content (a flat one, a noisy one with a bright square)."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    flat = np.full((40, 48, 3), 120, np.uint8)
    noisy = rng.integers(0, 255, (56, 56, 3), dtype=np.uint8)
    noisy[10:20, 10:20] = 255
    return [Image.fromarray(a) for a in (flat, noisy)][:count]


def check_prediction(prediction: Any, name: str) -> None:
    """One :class:`~defectkit.protocols.Prediction` holds fields of the documented types and shapes."""
    import math

    import numpy as np

    from defectkit.protocols import Prediction

    assert isinstance(prediction, Prediction), f"predict returned {type(prediction).__name__}, not a Prediction"
    assert prediction.name == name, f"the record of {name!r} is named {prediction.name!r}"
    image = prediction.image
    assert isinstance(image, np.ndarray) and image.dtype == np.uint8, "image: a uint8 array, as the model saw it"
    assert image.ndim == 3 and image.shape[2] == 3, f"image: [H, W, 3], got {image.shape}"
    frame = image.shape[:2]
    assert isinstance(prediction.score, float) and not math.isnan(prediction.score), "score: a float, not NaN"
    if prediction.anomaly_map is not None:
        assert isinstance(prediction.anomaly_map, np.ndarray) and prediction.anomaly_map.ndim == 2
        assert prediction.anomaly_map.shape == frame, f"anomaly_map {prediction.anomaly_map.shape} != image {frame}"
        assert np.issubdtype(prediction.anomaly_map.dtype, np.floating), "anomaly_map: floats"
    if prediction.mask is not None:
        assert isinstance(prediction.mask, np.ndarray) and prediction.mask.dtype == bool, "mask: a bool array"
        assert prediction.mask.shape == frame, f"mask {prediction.mask.shape} != image {frame}"
    if prediction.reconstruction is not None:
        assert prediction.reconstruction.shape == image.shape and prediction.reconstruction.dtype == np.uint8
    if prediction.probabilities:
        assert abs(sum(prediction.probabilities.values()) - 1.0) < 1e-3, "probabilities sum to 1"
        assert prediction.predicted_class in prediction.probabilities, "predicted_class is one of the classes"
    if prediction.category is not None:
        assert isinstance(prediction.category, str) and prediction.category_source, "say how the category was chosen"


def check_predictor(run_dir: str | Path, step_id: str, device: str = "cpu") -> Any:
    """The contract of a detector's predictor, on a finished (tiny) run; returns the predictor.

    Builds the step's detector through the registry with the run's options, opens its predictor, predicts two
    images of different sizes, and checks each :class:`~defectkit.protocols.Prediction` (types, shapes in the
    frame of ``image``), the threshold, its source and the score range, and that predicting again gives the
    same scores (a threshold moved later needs no new prediction).
    """
    import math

    from defectkit.detect import find_detect_step
    from defectkit.protocols import Predictor

    opened = find_detect_step(run_dir, step_id)
    predictor = opened.open(device)
    assert isinstance(predictor, Predictor), (
        f"{opened.component.qualified_name}: open_predictor returned {type(predictor).__name__}, which lacks "
        "threshold, threshold_source, score_range or predict"
    )
    low, high = predictor.score_range
    threshold = float(predictor.threshold)
    assert not math.isnan(threshold) and low <= threshold <= high, f"threshold {threshold} outside {low}..{high}"
    assert isinstance(predictor.threshold_source, str) and predictor.threshold_source, "say where the threshold is from"
    images, names = _sample_images(), ["flat.png", "noisy.png"]
    predictions = predictor.predict(images, names)
    assert len(predictions) == len(images), f"{len(predictions)} records for {len(images)} images"
    for prediction, name in zip(predictions, names, strict=True):
        check_prediction(prediction, name)
    again = predictor.predict(images[:1], names[:1])
    assert abs(again[0].score - predictions[0].score) <= 1e-4 * max(1.0, abs(predictions[0].score)), (
        "predicting the same image twice gives another score"
    )
    return predictor


def check_session(session: Any, label: str | None = None, **inputs: Any) -> Any:
    """The contract of a generator's interactive session; returns the image it made.

    ``labels`` is a non-empty list, ``capabilities`` a :class:`~defectkit.protocols.SessionCapabilities`,
    ``generate`` takes every keyword of :data:`~defectkit.protocols.GENERATE_KEYWORDS`, and one call (with
    ``inputs``: add ``image=`` and ``mask=`` for an inpainting session, ``control_image=`` where required)
    returns an RGB PIL image; an unknown label is a DefectkitError.
    """
    import inspect

    from PIL import Image

    from defectkit.errors import DefectkitError
    from defectkit.protocols import GENERATE_KEYWORDS, GenerationSession, SessionCapabilities

    assert isinstance(session, GenerationSession), f"{type(session).__name__} lacks labels, capabilities or generate"
    labels = list(session.labels)
    assert labels and all(isinstance(x, str) for x in labels), "labels: the classes the session generates"
    caps = session.capabilities
    assert isinstance(caps, SessionCapabilities), "capabilities: a defectkit.protocols.SessionCapabilities"
    parameters = inspect.signature(session.generate).parameters
    missing = [k for k in GENERATE_KEYWORDS if k not in parameters]
    assert not missing, f"generate lacks the keyword(s) {', '.join(missing)}"
    if caps.requires_image:
        assert "image" in inputs and "mask" in inputs, "an inpainting-only session: pass image= and mask="
    if caps.requires_control_image:
        assert "control_image" in inputs, "this session needs a control_image: pass control_image="
    picture = session.generate(label or labels[0], **inputs)
    assert isinstance(picture, Image.Image) and picture.mode == "RGB", "generate returns an RGB PIL image"
    try:
        session.generate("\u2205 no such class", **inputs)
    except DefectkitError:
        pass
    else:
        raise AssertionError("an unknown label must be a DefectkitError naming the labels")
    return picture
