"""Which torch device a run uses (shared by the pipeline, the embedding stage and the CLIP trainer)."""

from __future__ import annotations

from lemon.core.errors import LemonError


def resolve_device(device: str) -> str:
    """'auto' -> 'cuda' when CUDA is available, else 'cpu'; a CUDA device asked for must exist."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise LemonError(
            f"--device {device} but CUDA is not available here; use --device cpu or auto."
        )
    return device
