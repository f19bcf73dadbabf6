"""A tiny model on the synthetic NEU-like steel data: a few seconds a run on one CPU thread."""

TRAIN = {
    "resolution": 16,
    "grayscale": True,
    "classes": ["patches", "scratches"],
    "model": {
        "channels": [8, 16],
        "attention_levels": [False, True],
        "norm_groups": 4,
        "attention_head_dim": 4,
        "text_hidden": 16,
        "text_heads": 2,
        "max_tokens": 12,
        "tokenizer_merges": 300,
    },
    "epochs": 4,
    "batch_size": 2,
    "lr": 0.002,
    "warmup_steps": 2,
    "checkpoint_every": 2,
    "sample_every": None,
    "sample_per_class": 2,
    "sample_steps": 2,
    "log_every": 1,
    "min_free_disk_mb": 0,
}
GENERATE = {"per_class": 3, "steps": 3, "guidance": 3.0}


def recipe(train: dict | None = None, generate: dict | None = None) -> dict:
    steps = [{"train": {"use": "text2image_scratch", "with": {**TRAIN, **(train or {})}}}]
    if generate is not None:
        steps.append({"generate": {"use": "text2image_scratch", "with": {**GENERATE, **generate}}})
    return {
        "version": 1,
        "name": "text2image",
        "device": "cpu",
        "data": {"format": "synthetic", "with": {"kind": "neu", "size": 32, "n_train": 3, "n_test": 1}},
        "steps": steps,
    }
