"""A CPU-second DefectFill recipe over synthetic carpet defects."""

from defectkit_defectfill.tiny import LPIPS_FACTORY

TRAIN = {
    "backend": "sd2_inpainting",
    "tiny_model": True,
    "resolution": 32,
    "classes": ["hole", "color"],
    "rank": 2,
    "steps": 4,
    "batch_size": 2,
    "lr": 1e-2,
    "embedding_lr": 1e-2,
    "warmup_steps": 1,
    "checkpoint_every": 2,
    "log_every": 1,
    "attention_log_every": 2,
}
GENERATE = {
    "images_per_class": 1,
    "combine": [["hole", "color"]],
    "candidates": 2,
    "steps": 2,
    "selection_extractor": LPIPS_FACTORY,
    "selection_size": 32,
}


def recipe(train: dict | None = None, generate: dict | None = None, with_generate: bool = True) -> dict:
    steps = [{"train": {"use": "defectfill", "with": {**TRAIN, **(train or {})}}}]
    if with_generate:
        steps.append({"generate": {"use": "defectfill", "with": {**GENERATE, **(generate or {})}}})
    return {
        "version": 1,
        "name": "defectfill_test",
        "device": "cpu",
        "data": {
            "format": "synthetic",
            "category": "carpet",
            "with": {"kind": "mvtec", "size": 48, "n_train": 3, "n_test": 3},
            "split": {"protocol": "generation"},
        },
        "steps": steps,
    }
