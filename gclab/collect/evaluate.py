"""What a run logs at each eval step: per-split loss/acc/GC and complexity measures (evals),
Theorem 5.1 terms per example and layer (theorem, layers), and model outputs on a fixed line
(probes). Every split uses fixed examples, so rows at different steps are comparable.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from gclab.collect import metrics
from gclab.collect.buffer import TableBuffer
from gclab.collect.losses import batch_loss, correct
from gclab.collect.metrics.bfd import bfd_ceiling, rank_of
from gclab.collect.metrics.theorem import theorem_supported

FULL_BFD = "random_full"  # the nested random-input pool: fdim rows with split 'random', never evals rows


@dataclass
class Split:
    name: str
    x: torch.Tensor  # eval examples
    y: torch.Tensor


def random_inputs(ds, n: int, seed: int) -> torch.Tensor:
    """Gaussian inputs with the training set's per-feature mean and std (first rows are the
    same for every n: nested batches)."""
    g = torch.Generator().manual_seed(seed)
    return ds.x_train.mean(0) + ds.x_train.std(0) * torch.randn((n, *ds.input_shape), generator=g)


def make_splits(ds, cfg, device, dtype) -> list[Split]:
    """train/test subsets and a `random` split: Gaussian inputs with the training set's
    per-feature mean and std and uniform random labels, fixed by the data seed; plus, if
    ``cfg.bfd_random_batches``, a `random_full` pool of nested random inputs for the
    computable full functional dimension (not an evals split)."""
    n = cfg.eval_examples
    g = torch.Generator().manual_seed(cfg.data_seed + 7919)
    mean, std = ds.x_train.mean(0), ds.x_train.std(0)
    x_rand = mean + std * torch.randn((n, *ds.input_shape), generator=g)
    if ds.task == "classification":
        y_rand = torch.randint(0, ds.n_classes, (n,), generator=g)
    else:
        y_rand = ds.y_train.mean(0) + ds.y_train.std(0) * torch.randn((n, ds.n_classes), generator=g)
    parts = [
        ("train", ds.x_train[:n], ds.y_train[:n]),
        ("test", ds.x_test[:n], ds.y_test[:n]),
        ("random", x_rand, y_rand),
    ]
    if cfg.bfd_random_batches:
        x_full = random_inputs(ds, max(cfg.bfd_random_batches), cfg.data_seed + 104_729)
        parts.append((FULL_BFD, x_full, torch.zeros(len(x_full), dtype=torch.int64)))
    return [
        Split(name, x.to(device, dtype), (y if y.dtype == torch.int64 else y.to(dtype)).to(device))
        for name, x, y in parts
    ]


@torch.no_grad()
def loss_and_acc(model: nn.Module, x, y, loss: str, chunk: int = 1024) -> tuple[float, float]:
    total, n_correct = 0.0, None
    for i in range(0, len(x), chunk):
        out = model(x[i : i + chunk])
        total += float(batch_loss(out, y[i : i + chunk], loss)) * len(out)
        hits = correct(out, y[i : i + chunk], loss)
        n_correct = None if hits is None else (n_correct or 0) + int(hits.sum())
    return total / len(x), (float("nan") if n_correct is None else n_correct / len(x))


def split_gc(model, x, chunk: int = 256, *, gc_input: str | None = None) -> float:
    parts = [metrics.geometric_complexity(model, x[i : i + chunk], gc_input=gc_input) for i in range(0, len(x), chunk)]
    return float(torch.cat(parts).mean())


def log_eval(
    model,
    splits: list[Split],
    cfg,
    step: int,
    init_params,
    bufs: dict[str, TableBuffer],
    *,
    gc_input: str | None = None,
) -> None:
    """An evals row per split (and the rows ``cfg`` asks for); GC w.r.t. the output of the submodule
    ``gc_input`` names (token models), else the input."""
    was_training = model.training
    model.eval()  # BatchNorm mixes examples: metrics are taken in eval mode
    shared = dict(
        run_id=cfg.run_id,
        step=step,
        param_norm_sq=float(metrics.param_norm_sq(model)),
        spectral_product=float(metrics.spectral_product(model)),
        dist_from_init=float(metrics.dist_from_init(model, init_params)),
    )
    # Theorem 5.1 covers dense feed-forward stacks only: the engine's own test decides.
    theorem_ok = cfg.theorem_examples > 0 and theorem_supported(model)
    for s in splits:
        if s.name == FULL_BFD:
            for n in cfg.bfd_random_batches:
                log_bfd(model, s.x[:n], "random", cfg, step, bufs["fdim"])
            continue
        loss, acc = loss_and_acc(model, s.x, s.y, cfg.loss)
        bfd = bfd_max = None
        if cfg.bfd_batch:
            bfd, bfd_max = log_bfd(model, s.x[: cfg.bfd_batch], s.name, cfg, step, bufs["fdim"])
        sharp = None
        if cfg.sharpness_iters and s.name == "train":
            xs, ys = s.x[: cfg.bfd_batch or 128], s.y[: cfg.bfd_batch or 128]
            g = torch.Generator().manual_seed(cfg.seed * 1_000_003 + step)  # reproducible start vector
            sharp = float(metrics.sharpness(model, xs, ys, loss=cfg.loss, iters=cfg.sharpness_iters, generator=g))
        bufs["evals"].append(
            **shared,
            split=s.name,
            loss=loss,
            acc=acc,
            gc=split_gc(model, s.x, gc_input=gc_input),
            bfd=bfd,
            sharpness=sharp,
            bfd_max=bfd_max,
            n_examples=len(s.x),
        )
        if theorem_ok:
            log_theorem(model, s, cfg, step, bufs)
    if cfg.probe_points:
        log_probes(model, splits[0].x, cfg, step, bufs["probes"])
    model.train(was_training)


def log_bfd(model, xb, split: str, cfg, step: int, buf: TableBuffer) -> tuple[int, int]:
    """BFD of ``cfg.bfd_output`` on the batch ``xb`` with its spectrum edge; returns (bfd, bfd_max)."""
    r = rank_of(model, xb, outputs=cfg.bfd_output)
    k = int(model(xb[:1]).shape[1])
    ceiling = bfd_ceiling(model, len(xb), k, outputs=cfg.bfd_output)
    buf.append(
        run_id=cfg.run_id,
        step=step,
        split=split,
        n_inputs=len(xb),
        output=cfg.bfd_output,
        bfd=r.rank,
        bfd_max=ceiling,
        sv_max=float(r.sv[0]) if r.sv.size else 0.0,
        sv_last_kept=r.sv_last_kept,
        sv_first_dropped=r.sv_first_dropped,
        tol=r.tol,
    )
    return r.rank, ceiling


def log_theorem(model, s: Split, cfg, step: int, bufs) -> None:
    terms = metrics.theorem_terms(model, s.x[: cfg.theorem_examples])
    terms = {k: v.detach().cpu().numpy() for k, v in terms.items()}
    n, n_layers = terms["h_norm_sq"].shape
    example = np.arange(n)
    # holds_tight: gc_x <= bound_tight (the stronger claim) within gclab/store/tolerances.py's criterion.
    bufs["theorem"].append(
        run_id=cfg.run_id,
        step=step,
        split=s.name,
        example=example,
        holds_tight=terms["holds_tight"],
        **{
            k: terms[k].astype(np.float64)
            for k in ("gc_x", "grad_theta_sq", "transfer_sq_sum", "transfer_sq_sum_tight", "bound", "bound_tight")
        },
    )
    per_layer = ("h_norm_sq", "weight_spec", "input_jac_spec", "transfer_sq")
    bufs["layers"].append(
        run_id=cfg.run_id,
        step=step,
        split=s.name,
        example=np.repeat(example, n_layers),
        layer=np.tile(np.arange(1, n_layers + 1, dtype=np.int32), n),
        **{k: terms[k].astype(np.float64).ravel() for k in per_layer},
    )


@torch.no_grad()
def log_probes(model, x_like: torch.Tensor, cfg, step: int, buf: TableBuffer) -> None:
    """Outputs on the diagonal t·(1,…,1), t ∈ [−1, 1] (for fig1's 1-D input: the function itself)."""
    t = torch.linspace(-1.0, 1.0, cfg.probe_points, dtype=x_like.dtype, device=x_like.device)
    x = t.reshape(-1, *([1] * (x_like.dim() - 1))).expand(-1, *x_like.shape[1:])
    out = model(x).cpu().double().numpy()
    p, k = out.shape
    buf.append(
        run_id=cfg.run_id,
        step=step,
        t=np.repeat(t.cpu().double().numpy(), k),
        output=out.ravel(),
        output_index=np.tile(np.arange(k, dtype=np.int32), p),
    )
