"""Each penalty's gradient equals brute-force autograd of the penalized loss (float64)."""

import torch
from torch import nn

from gclab.collect.config import RunConfig
from gclab.collect.metrics import batch_loss
from gclab.collect.regularizers import add_penalty_grads, gc_penalty


def net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(5, 7), nn.Tanh(), nn.Linear(7, 3)).double()


def brute_penalty(model, x, y, cfg):
    params = list(model.parameters())
    total = torch.zeros((), dtype=torch.float64)
    total = total + cfg.l2 / 2 * sum(p.pow(2).sum() for p in params)
    ws = [m.weight for m in model.modules() if isinstance(m, nn.Linear)]
    total = total + cfg.spectral_reg / 2 * sum(torch.linalg.svdvals(w)[0] ** 2 for w in ws)
    g = torch.autograd.grad(batch_loss(model(x), y, "cross_entropy"), params, create_graph=True)
    total = total + cfg.flatness_reg * sum(gi.pow(2).sum() for gi in g)
    # GC: per-example input Jacobians by torch.func, squared Frobenius norm, batch mean.
    jac = torch.func.vmap(torch.func.jacrev(lambda xi: model(xi[None])[0]))(x)
    total = total + cfg.gc_reg * jac.pow(2).sum() / x.shape[0]
    return total


def test_all_penalties_match_brute_force():
    x = torch.randn(6, 5, dtype=torch.float64)
    y = torch.randint(0, 3, (6,))
    cfg = RunConfig(l2=0.3, spectral_reg=0.2, flatness_reg=0.5, gc_reg=0.7)
    model = net()
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    add_penalty_grads(model, x, y, lambda o, t: batch_loss(o, t, "cross_entropy"), cfg)
    ours = [p.grad.clone() for p in model.parameters()]
    ref_model = net()
    ref = brute_penalty(ref_model, x, y, cfg)
    ref_grads = torch.autograd.grad(ref, list(ref_model.parameters()))
    for a, b in zip(ours, ref_grads):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)


def test_gc_penalty_projection_is_unbiased():
    model = net()
    x = torch.randn(4, 5, dtype=torch.float64)
    exact = float(gc_penalty(model, x, None))
    g = torch.Generator().manual_seed(0)
    draws = torch.tensor([float(gc_penalty(model, x, 1, g)) for _ in range(4000)])
    assert abs(float(draws.mean()) - exact) < 4 * float(draws.std()) / 4000**0.5
