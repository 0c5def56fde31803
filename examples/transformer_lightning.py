"""Record a PyTorch Lightning fit of a small transformer with `gclab.lightning.GCCallback`, GC w.r.t. its embeddings.

    pip install -e ".[lightning]"
    python examples/transformer_lightning.py --data data    # ~30 s on CPU, synthetic tokens, no download
    gclab sql -q "SELECT s.step, s.gc, s.train_loss FROM steps s JOIN runs r USING (run_id)
                  WHERE r.sweep = 'mine_transformer_lightning'"

The task, the fixed token embedding (the continuous input GC is taken of) and the network are those
of examples/transformer_loop.py; the LightningModule is ordinary and the callback is the only gclab line.
"""

from __future__ import annotations

import argparse

import lightning as L
import torch
from torch.utils.data import DataLoader, TensorDataset
from transformer_loop import TokenTransformer, make_embedding, make_tokens

from gclab.lightning import GCCallback


class TokenClassifier(L.LightningModule):
    def __init__(self, *, length: int, dim: int, layers: int, k: int, lr: float):
        super().__init__()
        self.lr = lr
        self.net = TokenTransformer(length=length, dim=dim, layers=layers, k=k)

    def forward(self, x):  # (b, length, dim) embeddings → (b, k) logits, what GC is taken of
        return self.net(x)

    def training_step(self, batch, batch_idx):
        x, y = batch
        return torch.nn.functional.cross_entropy(self(x), y)

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=self.lr)


def main(argv=None) -> str:
    p = argparse.ArgumentParser(description=(__doc__ or "").partition("\n")[0])
    p.add_argument("--data", default="data", help="run store folder (default ./data)")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--dim", type=int, default=32)
    p.add_argument("--layers", type=int, default=1)
    p.add_argument("--n-train", type=int, default=2048)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)

    L.seed_everything(args.seed, verbose=False)
    vocab, length, k, batch_size = 16, 12, 4, 32
    embed = make_embedding(vocab, args.dim)
    tok_train, y_train = make_tokens(args.n_train, vocab=vocab, length=length, k=k, seed=args.seed)
    tok_test, y_test = make_tokens(512, vocab=vocab, length=length, k=k, seed=args.seed + 1)
    x_train, x_test = embed(tok_train), embed(tok_test)
    loader = DataLoader(TensorDataset(x_train, y_train), batch_size=batch_size, shuffle=True)
    config = {
        "dataset": "tokens_most_frequent",
        "model": "transformer",
        "width": args.dim,
        "depth": args.layers,
        "optimizer": "adam",
        "lr": args.lr,
        "batch_size": batch_size,
        "seed": args.seed,
        "epochs": args.epochs,
        "vocab": vocab,
        "length": length,
        "gc_input": "token embedding output",
    }
    callback = GCCallback(
        data=args.data,
        sweep="mine_transformer_lightning",
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
    module = TokenClassifier(length=length, dim=args.dim, layers=args.layers, k=k, lr=args.lr)
    trainer.fit(module, loader)
    row = callback.recorder.row
    assert row is not None  # the runs row, written when the fit ends
    print(f"recorded run {callback.run_id} (sweep 'mine_transformer_lightning', {row['status']}) into {args.data}")
    return callback.run_id


if __name__ == "__main__":
    main()
