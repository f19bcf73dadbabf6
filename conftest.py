"""Test-session settings for the whole repository (core and first-party plugins).

No test may reach the Hugging Face Hub: models are built from configs, saved
with save_pretrained and loaded back from local folders. huggingface_hub reads
these variables once, when it is first imported, so they are set here, before
any test module imports it.
"""

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
