"""Record a PyTorch Lightning fit into the gclab run store with `gclab.lightning.GCCallback`.

    pip install -e ".[lightning]"
    python examples/lightning_loop.py --data data    # ~5 s on CPU, no download
    gclab sql -q "SELECT r.sweep, s.step, s.gc, s.train_loss FROM steps s JOIN runs r USING (run_id)
                  WHERE r.sweep = 'mine_lightning'"

The LightningModule is ordinary; the callback is the only gclab line.
"""

from __future__ import annotations

import argparse

import lightning as L
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from gclab.lightning import GCCallback


def make_data(n: int, d: int = 20, k: int = 4, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """k Gaussian blobs in d dimensions."""
    g = torch.Generator().manual_seed(seed)
    centers = torch.randn(k, d, generator=torch.Generator().manual_seed(1234)) * 1.5
    y = torch.randint(0, k, (n,), generator=g)
    return centers[y] + torch.randn(n, d, generator=g), y


class Classifier(L.LightningModule):
    def __init__(self, d: int = 20, width: int = 64, k: int = 4, lr: float = 0.05):
        super().__init__()
        self.lr = lr
        self.net = nn.Sequential(
            nn.Linear(d, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(), nn.Linear(width, k)
        )

    def forward(self, x):
        return self.net(x)

    def training_step(self, batch, batch_idx):
        x, y = batch
        return nn.functional.cross_entropy(self(x), y)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.lr)


def main(argv=None) -> str:
    p = argparse.ArgumentParser(description=(__doc__ or "").partition("\n")[0])
    p.add_argument("--data", default="data", help="run store folder (default ./data)")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--width", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)

    L.seed_everything(args.seed, verbose=False)
    x_train, y_train = make_data(1024, seed=args.seed)
    x_test, y_test = make_data(512, seed=args.seed + 1)
    loader = DataLoader(TensorDataset(x_train, y_train), batch_size=32, shuffle=True)
    config = {
        "dataset": "blobs",
        "model": "mlp",
        "width": args.width,
        "depth": 2,
        "optimizer": "sgd",
        "lr": args.lr,
        "batch_size": 32,
        "seed": args.seed,
        "epochs": args.epochs,
    }
    callback = GCCallback(
        data=args.data,
        sweep="mine_lightning",
        config=config,
        log_every=10,
        eval_every=50,
        eval_data={"train": (x_train, y_train), "test": (x_test, y_test)},
    )
    trainer = L.Trainer(
        max_epochs=args.epochs,
        accelerator="cpu",
        devices=1,
        callbacks=[callback],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(Classifier(width=args.width, lr=args.lr), loader)
    row = callback.recorder.row
    assert row is not None  # the runs row, written when the fit ends
    print(f"recorded run {callback.run_id} (sweep 'mine_lightning', {row['status']}) into {args.data}")
    return callback.run_id


if __name__ == "__main__":
    main()
