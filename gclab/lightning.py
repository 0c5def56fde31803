"""`gclab.lightning.GCCallback`: record a PyTorch Lightning run into the gclab store (gclab/collect/lightning.py)."""

from gclab.collect.lightning import GCCallback

__all__ = ["GCCallback"]
