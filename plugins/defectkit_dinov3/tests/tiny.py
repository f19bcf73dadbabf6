"""Tiny backbones and recipes shared by the tests (random weights, CPU-sized, offline)."""

TINY_DINOV3 = {
    "hidden_size": 32,
    "num_hidden_layers": 1,
    "num_attention_heads": 2,
    "intermediate_size": 64,
    "patch_size": 16,
    "num_register_tokens": 4,
}
TINY_DINOV2 = {
    "hidden_size": 32,
    "num_hidden_layers": 1,
    "num_attention_heads": 2,
    "intermediate_size": 64,
    "patch_size": 14,
    "image_size": 56,
}


def tiny_train_options(**overrides) -> dict:
    options = {
        "backbone": {"use": "dinov3", "with": {"config": TINY_DINOV3}},
        "image_size": 32,
        "batch_size": 8,
        "decoder_channels": 8,
        "stages": [{"epochs": 1, "lr": 0.003, "freeze_backbone": True}, {"epochs": 1, "lr": 0.001}],
        "switch_epoch": 1,
    }
    options.update(overrides)
    return options
