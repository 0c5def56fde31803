"""`gclab.lightning.GCCallback`: record a PyTorch Lightning run into the gclab store (collect/lightning.py)."""
from collect.lightning import GCCallback

__all__ = ["GCCallback"]
