"""param_norm_sq, spectral_product, dist_from_init, sharpness against direct computations."""

import math

import numpy as np
import pytest
import torch
from torch import nn
from torch.func import functional_call, hessian

from gclab.collect.metrics import dist_from_init, param_norm_sq, sharpness, spectral_product
from tests._helpers.bruteforce import mlp, per_example_loss


def test_param_norm_sq():
    net = mlp(4, [5], 3, seed=1)
    ref = sum(float((p.detach() ** 2).sum()) for p in net.parameters())
    assert param_norm_sq(net) == pytest.approx(ref, rel=1e-12)


def test_spectral_product_linear_and_conv():
    net = nn.Sequential(nn.Conv2d(2, 3, 3), nn.ReLU(), nn.Flatten(), nn.Linear(12, 4), nn.ReLU(), nn.Linear(4, 2))
    ref = 1.0
    for m in (net[0], net[3], net[5]):
        W = m.weight.detach().double().numpy().reshape(m.weight.shape[0], -1)
        ref *= np.linalg.svd(W, compute_uv=False)[0]
    assert spectral_product(net) == pytest.approx(ref, rel=1e-10)


def test_dist_from_init_all_forms():
    net = mlp(4, [5], 3, seed=2)
    init = [p.detach().clone() for p in net.parameters()]
    named = {n: p.detach().clone() for n, p in net.named_parameters()}
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.5)
    n = sum(p.numel() for p in net.parameters())
    expected = math.sqrt(0.25 * n)
    assert dist_from_init(net, init) == pytest.approx(expected, rel=1e-12)
    assert dist_from_init(net, named) == pytest.approx(expected, rel=1e-12)
    assert dist_from_init(net, net) == 0.0
    with pytest.raises(ValueError, match="parameters"):
        dist_from_init(net, init[:-1])


@pytest.mark.parametrize("loss", ["cross_entropy", "mse"])
def test_sharpness_is_top_hessian_eigenvalue(loss):
    net = mlp(3, [4], 2, act="tanh", seed=3)
    x = torch.randn(6, 3, dtype=torch.float64)
    y = torch.randint(0, 2, (6,)) if loss == "cross_entropy" else torch.randn(6, 2, dtype=torch.float64)
    params = {n: p.detach() for n, p in net.named_parameters()}
    names = list(params)
    flat = torch.cat([params[n].reshape(-1) for n in names])

    def f(theta):
        ps, i = {}, 0
        for n in names:
            ps[n] = theta[i : i + params[n].numel()].reshape(params[n].shape)
            i += params[n].numel()
        return per_example_loss(functional_call(net, ps, (x,)), y, loss).mean()

    ev = torch.linalg.eigvalsh(hessian(f)(flat))
    top = ev[ev.abs().argmax()]
    got = sharpness(net, x, y, loss=loss, iters=3000, tol=1e-13, generator=torch.Generator().manual_seed(0))
    assert got == pytest.approx(float(top), rel=1e-6)
    rough = sharpness(net, x, y, loss=loss)  # defaults: 20 iterations, tol 1e-3
    assert abs(rough) <= abs(float(top)) * (1 + 1e-9)  # Rayleigh quotient never exceeds |λ|max
