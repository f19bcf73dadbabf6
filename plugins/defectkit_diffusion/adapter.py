"""Reading the ``adapter`` artifact a fine-tuning train step hands to generation.

The folder holds ``adapter.json``::

    {"family": "sdxl", "lora": "pytorch_lora_weights.safetensors" or null,
     "embeddings": [{"file": "scratches.safetensors", "token": "<scratches>", "defect_type": "scratches"}, ...]}

LoRA/DoRA weights load with diffusers' ``pipe.load_lora_weights(folder, weight_name=...)``;
each embedding with ``pipe.load_textual_inversion`` (SDXL files hold ``clip_l`` and
``clip_g``, loaded into text_encoder/tokenizer and text_encoder_2/tokenizer_2).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from defectkit.errors import DataError
from defectkit.tensorfile import load_tensors

ADAPTER_FILE = "adapter.json"
ADAPTER_NAME = "defectkit"


@dataclass
class Adapter:
    """An ``adapter`` folder as :func:`read_adapter` found it: its base family, the LoRA file (or ``None``)
    and the learned token of each defect type."""

    folder: Path
    family: str
    lora: str | None
    embeddings: list[dict[str, str]] = field(default_factory=list)

    @property
    def tokens(self) -> dict[str, str]:
        """defect type -> its token."""
        return {e["defect_type"]: e["token"] for e in self.embeddings}


def read_adapter(folder: str | Path) -> Adapter:
    """The adapter in ``folder``; a DataError names the file and what is wrong."""
    folder = Path(folder)
    path = folder / ADAPTER_FILE
    if not path.is_file():
        raise DataError(f"{folder}: no {ADAPTER_FILE}; not an adapter folder (written by a fine-tuning train step)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: not valid JSON ({exc.msg})") from None
    if not isinstance(data, dict) or data.get("family") not in ("sd15", "sdxl", "sd3"):
        raise DataError(f"{path}: 'family' must be sd15, sdxl or sd3")
    lora = data.get("lora")
    if lora is not None and not (folder / lora).is_file():
        raise DataError(f"{path}: lists LoRA weights {lora!r}, which do not exist")
    embeddings = data.get("embeddings") or []
    for number, entry in enumerate(embeddings):
        if not isinstance(entry, dict) or not {"file", "token", "defect_type"} <= set(entry):
            raise DataError(f"{path}: embeddings[{number}] needs 'file', 'token' and 'defect_type'")
        if not (folder / entry["file"]).is_file():
            raise DataError(f"{path}: embeddings[{number}] lists {entry['file']!r}, which does not exist")
    return Adapter(folder, data["family"], lora, list(embeddings))


def apply_adapter(pipe: Any, adapter: Adapter, family: str, lora_scale: float = 1.0) -> dict[str, str]:
    """Load the adapter's LoRA and embeddings into ``pipe``; return defect type -> token."""
    if adapter.family != family:
        raise DataError(
            f"{adapter.folder / ADAPTER_FILE}: trained for {adapter.family}, but the generate step's backend is {family}"
        )
    if adapter.lora:
        pipe.load_lora_weights(str(adapter.folder), weight_name=adapter.lora, adapter_name=ADAPTER_NAME)
        if lora_scale != 1.0:
            pipe.set_adapters([ADAPTER_NAME], adapter_weights=[lora_scale])
    if adapter.embeddings and not hasattr(pipe, "load_textual_inversion"):
        raise DataError(f"{adapter.folder / ADAPTER_FILE}: {type(pipe).__name__} cannot load textual-inversion tokens")
    for entry in adapter.embeddings:
        path = adapter.folder / entry["file"]
        token = entry["token"]
        if family == "sdxl":
            state = load_tensors(path)
            missing = {"clip_l", "clip_g"} - set(state)
            if missing:
                raise DataError(
                    f"{path}: an SDXL embedding needs the keys clip_l and clip_g (missing {sorted(missing)})"
                )
            pipe.load_textual_inversion(
                state["clip_l"], token=token, text_encoder=pipe.text_encoder, tokenizer=pipe.tokenizer
            )
            pipe.load_textual_inversion(
                state["clip_g"], token=token, text_encoder=pipe.text_encoder_2, tokenizer=pipe.tokenizer_2
            )
        else:
            pipe.load_textual_inversion(str(path), token=token)
    return adapter.tokens
