"""Recipes over the synthetic NEU-like steel data and the tiny pipelines."""

TRAIN = {
    "resolution": 32,
    "steps": 4,
    "batch_size": 2,
    "checkpoint_every": 2,
    "log_every": 1,
    "validation_inference_steps": 2,
    "classes": ["scratches", "patches"],
}


def recipe(trainer: str, options: dict, name: str = "finetune") -> dict:
    return {
        "version": 1,
        "name": name,
        "device": "cpu",
        "data": {"format": "synthetic", "with": {"kind": "neu", "size": 40, "n_train": 3, "n_test": 1}},
        "steps": [{"train": {"use": trainer, "with": {**TRAIN, **options}}}],
    }
