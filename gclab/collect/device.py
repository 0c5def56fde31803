"""Device choice: CUDA when present, else CPU; `device = "cpu"` (or "cuda:1") overrides."""

from __future__ import annotations

import torch


def resolve_device(requested: str = "auto") -> torch.device:
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if requested.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device = {requested!r} but CUDA is not available here; use device = 'auto' or 'cpu'")
    if requested == "mps" and not torch.backends.mps.is_available():
        raise ValueError("device = 'mps' but MPS is not available here; use device = 'auto' or 'cpu'")
    return torch.device(requested)
