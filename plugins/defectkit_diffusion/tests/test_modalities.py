import diffusers
import numpy as np
import pytest
from PIL import Image
from skimage import data

from defectkit.errors import DefectkitError

SIZE = (48, 32)


@pytest.fixture(scope="module")
def photo():
    return Image.fromarray(data.brick()).convert("RGB")


def test_canny_edges(registered, photo):
    canny = registered.get("controlnet_modality", "canny").create({"low_threshold": 50, "high_threshold": 100})
    control = np.asarray(canny.control_image(photo, SIZE))
    assert control.shape == (32, 48, 3)
    assert set(np.unique(control)) <= {0, 255} and 0 < (control > 0).mean() < 0.6


def test_softedge_falls_back_to_sobel_without_annotator_weights(registered, photo, caplog):
    soft = registered.get("controlnet_modality", "softedge").create({})
    control = np.asarray(soft.control_image(photo, SIZE))
    assert soft.used == "sobel" and "Sobel" in caplog.text
    assert control.shape == (32, 48, 3) and len(np.unique(control)) > 20  # soft, not binary
    flat = np.asarray(soft.control_image(Image.new("RGB", (64, 64), (90, 90, 90)), SIZE))
    assert flat.max() == 0  # no edges in a flat image
    hed = registered.get("controlnet_modality", "softedge").create({"annotator": "hed", "annotator_model": "/nowhere"})
    with pytest.raises(DefectkitError, match="annotator hed needs controlnet_aux .* or use annotator: sobel"):
        hed.control_image(photo, SIZE)


def test_depth_and_normal_from_a_transformers_estimator(registered, tiny_models, photo):
    depth = registered.get("controlnet_modality", "depth").create({"estimator": str(tiny_models["depth"])})
    control = np.asarray(depth.control_image(photo, SIZE))
    assert control.shape == (32, 48, 3) and control.min() == 0 and control.max() == 255
    normal = registered.get("controlnet_modality", "normal").create(
        {"estimator": str(tiny_models["depth"]), "background_threshold": 0.0}
    )
    vectors = np.asarray(normal.control_image(photo, SIZE), float) / 127.5 - 1.0
    assert normal.used == "depth"  # no Marigold weights offline: normals from the depth's gradients
    assert np.allclose(np.linalg.norm(vectors, axis=2), 1.0, atol=0.03)  # unit normals
    assert (vectors[..., 2] > 0).all()  # facing the camera


def test_hed_is_the_seeds_name_for_soft_edges_with_the_sobel_fallback(registered, photo):
    hed = registered.get("controlnet_modality", "hed").create({})
    control = np.asarray(hed.control_image(photo, SIZE))
    assert hed.used == "sobel" and control.shape == (32, 48, 3)  # no controlnet-aux weights offline
    soft = registered.get("controlnet_modality", "softedge").create({})
    assert np.array_equal(control, np.asarray(soft.control_image(photo, SIZE)))
    assert hed.controlnet_source("sd15") == "lllyasviel/control_v11p_sd15_softedge"


def test_normals_from_a_real_normal_estimator(registered, tmp_path, photo):
    from defectkit_diffusion.tiny import build_tiny_marigold_normals

    folder = build_tiny_marigold_normals(tmp_path / "marigold")
    normal = registered.get("controlnet_modality", "normal").create({"normals": "marigold", "normals_model": str(folder)})
    control = normal.control_image(photo, SIZE)
    assert normal.used == "marigold" and normal.describe()["normals_used"] == "marigold"
    vectors = np.asarray(control, float) / 127.5 - 1.0
    assert control.size == SIZE and np.allclose(np.linalg.norm(vectors, axis=2), 1.0, atol=0.03)
    assert np.array_equal(np.asarray(control), np.asarray(normal.control_image(photo, SIZE)))  # seeded: repeatable
    missing = registered.get("controlnet_modality", "normal").create({"normals": "marigold", "normals_model": "prs-eth/not-here"})
    with pytest.raises(DefectkitError, match="controlnet_modality normal: cannot load normals_model"):
        missing.control_image(photo, SIZE)


def test_missing_estimator_is_one_line(registered, photo):
    depth = registered.get("controlnet_modality", "depth").create({"estimator": "Intel/not-downloaded"})
    with pytest.raises(DefectkitError, match="controlnet_modality depth: cannot load estimator='Intel/not-downloaded'"):
        depth.control_image(photo, SIZE)


@pytest.mark.parametrize("family", ["sd15", "sdxl", "sd3"])
def test_controlnet_weights_per_family(registered, tiny_models, family):
    canny = registered.get("controlnet_modality", "canny").create(
        {"controlnet": str(tiny_models[f"{family}_controlnet"])}
    )
    net = canny.load_controlnet(family)
    assert isinstance(net, diffusers.SD3ControlNetModel if family == "sd3" else diffusers.ControlNetModel)


def test_default_ids_and_missing_weights(registered):
    get = registered.get
    assert (
        get("controlnet_modality", "softedge").create({}).controlnet_source("sd15")
        == "lllyasviel/control_v11p_sd15_softedge"
    )
    assert (
        get("controlnet_modality", "depth").create({}).controlnet_source("sdxl")
        == "diffusers/controlnet-depth-sdxl-1.0"
    )
    assert (
        get("controlnet_modality", "normal").create({}).controlnet_source("sd15")
        == "lllyasviel/control_v11p_sd15_normalbae"
    )
    assert (
        get("controlnet_modality", "canny").create({}).controlnet_source("sdxl")
        == "diffusers/controlnet-canny-sdxl-1.0"
    )
    with pytest.raises(
        DefectkitError,
        match=r"normal: no ControlNet weights known for the sd3 family \(defaults exist for: sd15\); .*--set",
    ):
        get("controlnet_modality", "normal").create({}).controlnet_source("sd3")
    with pytest.raises(DefectkitError, match="depth: no ControlNet weights known for the sd2 family"):
        get("controlnet_modality", "depth").create({}).load_controlnet("sd2")
    with pytest.raises(DefectkitError, match=r"cannot load controlnet='lllyasviel/control_v11p_sd15_canny' .*--set"):
        get("controlnet_modality", "canny").create({}).load_controlnet("sd15")
