"""Record a small transformer's training loop into the gclab run store, GC taken w.r.t. the token embeddings.

    python examples/transformer_loop.py --data data      # ~30 s on CPU, synthetic tokens, no download
    gclab sql -q "SELECT step, gc, train_loss, train_acc FROM steps s JOIN runs r USING (run_id)
                  WHERE r.sweep = 'mine_transformer'"

The task: sequences of `length` tokens from a vocabulary of `vocab`; the label is the most frequent
of the tokens 0..k-1 in the sequence (ties to the smallest). Counting is what attention does well.

GC is a derivative w.r.t. a continuous input, and token ids are not one. Here the token embedding is
a fixed lookup applied to the data, so the network's input is the embedding output (b, length, dim)
and GC, the Eq. 6 terms and the gradient are those of everything after it: a positional
`nn.Parameter`, `nn.TransformerEncoderLayer` blocks (LayerNorm, MultiheadAttention, GELU MLP), a
mean over positions and a Linear head. Everything here is ordinary PyTorch; the gclab lines are marked.
"""

from __future__ import annotations

import argparse

import torch
from torch import nn

from gclab import Recorder


def make_tokens(n: int, *, vocab: int = 16, length: int = 12, k: int = 4, seed: int = 0):
    """tokens (n, length) int64 in range(vocab); labels (n,): the most frequent of tokens 0..k-1."""
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randint(0, vocab, (n, length), generator=g)
    counts = torch.stack([(tokens == c).sum(1) for c in range(k)], 1)  # (n, k)
    return tokens, counts.argmax(1)  # argmax takes the first maximum: ties go to the smallest token


def make_embedding(vocab: int, dim: int, seed: int = 1234) -> nn.Embedding:
    """The fixed token embedding: its output is the continuous input GC is taken of."""
    torch.manual_seed(seed)
    embed = nn.Embedding(vocab, dim)
    embed.requires_grad_(False)
    return embed


class TokenTransformer(nn.Module):
    """(b, length, dim) embeddings → + positional parameter → encoder layers → mean over positions → (b, k)."""

    def __init__(self, *, length: int, dim: int = 32, heads: int = 4, layers: int = 1, k: int = 4):
        super().__init__()
        self.pos = nn.Parameter(0.02 * torch.randn(1, length, dim))
        layer = nn.TransformerEncoderLayer(
            dim, heads, dim_feedforward=2 * dim, dropout=0.0, activation="gelu", batch_first=True, norm_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, k)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.norm(self.encoder(x + self.pos)).mean(1))


def main(argv=None) -> str:
    p = argparse.ArgumentParser(description=(__doc__ or "").partition("\n")[0])
    p.add_argument("--data", default="data", help="run store folder (default ./data)")
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--dim", type=int, default=32)
    p.add_argument("--layers", type=int, default=1)
    p.add_argument("--n-train", type=int, default=2048)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)

    vocab, length, k, batch_size = 16, 12, 4, 32
    embed = make_embedding(vocab, args.dim)
    tok_train, y_train = make_tokens(args.n_train, vocab=vocab, length=length, k=k, seed=args.seed)
    tok_test, y_test = make_tokens(512, vocab=vocab, length=length, k=k, seed=args.seed + 1)
    x_train, x_test = embed(tok_train), embed(tok_test)  # (n, length, dim): the input GC is taken of
    torch.manual_seed(args.seed)
    model = TokenTransformer(length=length, dim=args.dim, layers=args.layers, k=k)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    g = torch.Generator().manual_seed(args.seed)
    splits = {"train": (x_train, y_train), "test": (x_test, y_test)}
    config = {
        "dataset": "tokens_most_frequent",
        "model": "transformer",
        "width": args.dim,
        "depth": args.layers,
        "optimizer": "adam",
        "lr": args.lr,
        "batch_size": batch_size,
        "steps": args.steps,
        "seed": args.seed,
        "vocab": vocab,
        "length": length,
        "gc_input": "token embedding output",
    }

    with Recorder(data=args.data, sweep="mine_transformer", config=config) as rec:  # gclab
        rec.annotate(n_train=args.n_train)  # gclab
        for step in range(args.steps):
            if step % 100 == 0:
                rec.evaluate(step, model, splits)  # gclab
            idx = torch.randint(0, args.n_train, (batch_size,), generator=g)
            rec.step(step, model, x_train[idx], y_train[idx])  # gclab (replaces loss.backward())
            optimizer.step()
        rec.evaluate(args.steps, model, splits)  # gclab
    assert rec.row is not None  # the runs row, written when the `with` block ends
    print(f"recorded run {rec.run_id} (sweep 'mine_transformer', {rec.row['status']}) into {args.data}")
    return rec.run_id


if __name__ == "__main__":
    main()
