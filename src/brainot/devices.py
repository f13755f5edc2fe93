"""The torch device a command runs on, and the dtype a large model is loaded in there."""

from __future__ import annotations

import torch


def pick_device(name: str = "auto") -> torch.device:
    """``auto``: CUDA when present, else CPU; any other name (``cpu``, ``cuda``, ``cuda:1``) as given."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def half_dtype(device: torch.device) -> torch.dtype:
    """The dtype of a large model on ``device``: bf16 on CUDA (fp16 where bf16 is unsupported), else fp32
    (deterministic on CPU)."""
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32
