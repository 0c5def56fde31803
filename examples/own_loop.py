"""Record your own plain-PyTorch training loop into the gclab run store.

    python examples/own_loop.py --data data          # trains for ~2 s on CPU, no download
    gclab sql -q "SELECT step, gc, train_loss, grad_norm_sq FROM steps s JOIN runs r USING (run_id)
                  WHERE r.sweep = 'mine'"
    gclab report                                     # the run is in the report's overview and curves

Everything here is ordinary PyTorch; the three gclab lines are marked. `rec.step` does the forward
and backward pass itself (leaving the gradient in `.grad`, as `loss.backward()` would) and logs
GC and the Eq. 6 terms of the batch; `rec.evaluate` logs loss, accuracy and GC per split.
"""

from __future__ import annotations

import argparse

import torch
from torch import nn

from gclab import Recorder


def make_data(n: int, d: int = 20, k: int = 4, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """k Gaussian blobs in d dimensions, the same for every call with the same seed."""
    g = torch.Generator().manual_seed(seed)
    centers = torch.randn(k, d, generator=torch.Generator().manual_seed(1234)) * 1.5
    y = torch.randint(0, k, (n,), generator=g)
    return centers[y] + torch.randn(n, d, generator=g), y


def make_model(d: int = 20, width: int = 64, k: int = 4, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(d, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(), nn.Linear(width, k))


def main(argv=None) -> str:
    p = argparse.ArgumentParser(description=(__doc__ or "").partition("\n")[0])
    p.add_argument("--data", default="data", help="run store folder (default ./data)")
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--width", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)

    x_train, y_train = make_data(1024, seed=args.seed)
    x_test, y_test = make_data(512, seed=args.seed + 1)
    model = make_model(width=args.width, seed=args.seed)
    optimizer = torch.optim.SGD(model.parameters(), lr=args.lr)
    batch_size, g = 32, torch.Generator().manual_seed(args.seed)
    splits = {"train": (x_train, y_train), "test": (x_test, y_test)}
    # Keys that are runs columns (lr, width, ...) fill them; every key is kept in config_json.
    config = {
        "dataset": "blobs",
        "model": "mlp",
        "width": args.width,
        "depth": 2,
        "optimizer": "sgd",
        "lr": args.lr,
        "batch_size": batch_size,
        "steps": args.steps,
        "seed": args.seed,
    }

    with Recorder(data=args.data, sweep="mine", config=config) as rec:  # gclab
        for step in range(args.steps):
            if step % 50 == 0:
                rec.evaluate(step, model, splits)  # gclab
            idx = torch.randint(0, len(x_train), (batch_size,), generator=g)
            rec.step(step, model, x_train[idx], y_train[idx])  # gclab (replaces loss.backward())
            optimizer.step()
        rec.evaluate(args.steps, model, splits)
    assert rec.row is not None  # the runs row, written when the `with` block ends
    print(f"recorded run {rec.run_id} (sweep 'mine', {rec.row['status']}) into {args.data}")
    return rec.run_id


if __name__ == "__main__":
    main()
