"""The fine-tuning plugin's stable public API for other plugins.

A plugin that builds on finetune's training loop (``defectkit_defectfill`` does) imports from here and
nothing else of ``defectkit_finetune``; ``tests/test_plugin_boundaries.py`` enforces it. Importing this
module imports neither torch nor the modules below: each name is imported on first use, so a light module
(a ``config.py``) can take :class:`AugmentConfig` from here without torch.

What it exports:

* options: :class:`AugmentConfig` (the ``augment:`` block of a trainer's options);
* the loop: :class:`FinetuneTrainer` and :class:`TiLoraTrainer`, :class:`Objective`, :class:`TrainingState`,
  ``ADAPTER_DIR`` (the step subfolder of the ``adapter`` artifact);
* the model: :class:`Backbone`, :func:`load_backbone`, :class:`TokenEmbeddings`;
* the data: :class:`BatchSource`, :func:`load_records`, :func:`select_samples`, :func:`class_name`;
* the optimizer: :func:`build_optimizer`, :func:`build_lr_scheduler`.

The extension points of :class:`FinetuneTrainer` a subclass may override or call: ``attach``,
``parameter_groups``, ``export_lora``, ``extra_loss``, ``trains_text``, ``class_prompt`` and
``adapter_info`` (what it provides); ``precision``, ``place``, ``resume_state``, ``optimize``, ``save``,
``export`` and ``run_metrics`` (the loop's pieces, for a subclass with its own ``train``). Everything
with a leading underscore stays private and may change.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from defectkit.components import lazy_exports

if TYPE_CHECKING:
    from defectkit_finetune.adapters import TokenEmbeddings
    from defectkit_finetune.config import AugmentConfig
    from defectkit_finetune.data import BatchSource, class_name, load_records, select_samples
    from defectkit_finetune.models import Backbone, load_backbone
    from defectkit_finetune.optim import build_lr_scheduler, build_optimizer
    from defectkit_finetune.trainer import ADAPTER_DIR, FinetuneTrainer, Objective, TiLoraTrainer, TrainingState

_SOURCES = {
    "AugmentConfig": "defectkit_finetune.config",
    "TokenEmbeddings": "defectkit_finetune.adapters",
    "BatchSource": "defectkit_finetune.data",
    "class_name": "defectkit_finetune.data",
    "load_records": "defectkit_finetune.data",
    "select_samples": "defectkit_finetune.data",
    "Backbone": "defectkit_finetune.models",
    "load_backbone": "defectkit_finetune.models",
    "build_lr_scheduler": "defectkit_finetune.optim",
    "build_optimizer": "defectkit_finetune.optim",
    "ADAPTER_DIR": "defectkit_finetune.trainer",
    "FinetuneTrainer": "defectkit_finetune.trainer",
    "Objective": "defectkit_finetune.trainer",
    "TiLoraTrainer": "defectkit_finetune.trainer",
    "TrainingState": "defectkit_finetune.trainer",
}

__all__ = [
    "ADAPTER_DIR",
    "AugmentConfig",
    "Backbone",
    "BatchSource",
    "FinetuneTrainer",
    "Objective",
    "TiLoraTrainer",
    "TokenEmbeddings",
    "TrainingState",
    "build_lr_scheduler",
    "build_optimizer",
    "class_name",
    "load_backbone",
    "load_records",
    "select_samples",
]

__getattr__, __dir__ = lazy_exports(__name__, _SOURCES)
