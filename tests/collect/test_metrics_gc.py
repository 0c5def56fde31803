"""geometric_complexity: exact against torch.func jacobians, Hutchinson unbiasedness."""

import copy

import torch
from torch import nn

from gclab.collect.metrics import geometric_complexity, geometric_complexity_estimate
from tests._helpers.bruteforce import close, jacobians, mlp, randomize_


def _gc_ref(model, x):
    _, Jx = jacobians(model, x)
    return Jx.reshape(x.shape[0], -1).square().sum(1)


def test_single_linear_is_frobenius_norm():
    lin = nn.Linear(7, 4).double()
    x = torch.randn(5, 7, dtype=torch.float64)
    gc = geometric_complexity(lin, x)
    assert gc.shape == (5,)
    assert close(gc, lin.weight.detach().square().sum().expand(5), 1e-12)


def test_exact_matches_jacrev_mlps():
    for i, (widths, act, bias) in enumerate(
        [([8], "relu", True), ([6, 6], "tanh", False), ([5, 5, 5], "gelu", True), ([9, 4], "elu", False)]
    ):
        net = mlp(6, widths, 3, act=act, bias=bias, seed=i)
        x = torch.randn(11, 6, dtype=torch.float64)
        assert close(geometric_complexity(net, x), _gc_ref(net, x), 1e-6)


def test_exact_matches_jacrev_cnn_and_images():
    net = nn.Sequential(
        nn.Conv2d(1, 3, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(3 * 16, 5)
    ).double()
    randomize_(net, seed=3)
    x = torch.randn(7, 1, 8, 8, dtype=torch.float64)
    gc = geometric_complexity(net, x)
    assert close(gc, _gc_ref(net, x), 1e-6)
    flat = mlp(16, [10], 4, flatten=True, seed=4)  # Flatten + MLP on (b, 4, 4) inputs
    xi = torch.randn(5, 4, 4, dtype=torch.float64)
    assert close(geometric_complexity(flat, xi), _gc_ref(flat, xi), 1e-6)


def test_float32_within_1e4():
    net = mlp(20, [64, 64], 10, seed=5).float()
    x = torch.randn(32, 20)
    ref = _gc_ref(copy.deepcopy(net).double(), x.double())
    assert close(geometric_complexity(net, x), ref, 1e-4)


def test_hutchinson_unbiased_with_stated_stderr():
    net = mlp(6, [10, 10], 8, act="tanh", seed=6)
    x = torch.randn(4, 6, dtype=torch.float64)
    exact = geometric_complexity(net, x)
    g = torch.Generator().manual_seed(0)
    est, se = geometric_complexity_estimate(net, x, 4000, generator=g)
    assert est.shape == se.shape == (4,)
    z = (est - exact) / se
    assert bool((z.abs() < 3.5).all()), z
    # The stated standard error is honest: the spread of repeated small estimates matches it.
    draws = torch.stack([geometric_complexity_estimate(net, x, 50, generator=g)[0] for _ in range(200)])
    _, se50 = geometric_complexity_estimate(net, x, 5000, generator=g)
    stated = se50 * (5000 / 50) ** 0.5
    ratio = draws.std(0) / stated
    assert bool(((ratio > 0.8) & (ratio < 1.25)).all()), ratio
    assert close(draws.mean(0), exact, 3.5 * float((draws.std(0) / 200**0.5 / exact).max()))


def test_projection_call_returns_estimate():
    net = mlp(5, [6], 3, seed=7)
    x = torch.randn(3, 5, dtype=torch.float64)
    g1, g2 = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
    a = geometric_complexity(net, x, n_projections=7, generator=g1)
    b, _ = geometric_complexity_estimate(net, x, 7, generator=g2)
    assert torch.equal(a, b)
    # For k = 1 every v is ±1: the estimate is exact.
    net1 = mlp(5, [6], 1, seed=8)
    assert close(geometric_complexity(net1, x, n_projections=3), geometric_complexity(net1, x), 1e-12)


def test_generic_path_hutchinson_and_shared_module():
    # k = 1: every projection is ±1, so the estimate equals the exact value on the autograd path too.
    cnn = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Tanh(), nn.Flatten(), nn.Linear(2 * 16, 1)).double()
    randomize_(cnn, seed=9)
    x = torch.randn(3, 1, 6, 6, dtype=torch.float64)
    exact = geometric_complexity(cnn, x)
    assert close(exact, _gc_ref(cnn, x), 1e-6)
    assert close(geometric_complexity(cnn, x, n_projections=4), exact, 1e-12)
    # A module used twice: GC is exact (autograd path); per-layer metrics take it by the generic fallback.
    lin = nn.Linear(4, 4)
    net = nn.Sequential(lin, nn.Tanh(), lin, nn.Linear(4, 2)).double()
    xs = torch.randn(5, 4, dtype=torch.float64)
    assert close(geometric_complexity(net, xs), _gc_ref(net, xs), 1e-6)


def test_cost_model_picks_a_method_per_model_and_skips_a_refused_tape(monkeypatch):
    from gclab.collect.metrics import run_pass, tape
    from gclab.collect.metrics.plan import BATCHED_VJP, CHAIN, TAPE

    cnn = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(2 * 4 * 4, 3)).double()
    lnorm = nn.Sequential(nn.Linear(6, 5), nn.LayerNorm(5), nn.Linear(5, 3)).double()  # layer_norm: not on the tape
    cases = [(mlp(6, [5], 3, seed=7), (4, 6), CHAIN), (cnn, (4, 1, 6, 6), TAPE), (lnorm, (4, 6), BATCHED_VJP)]
    calls = []
    real_run = tape.run
    monkeypatch.setattr(tape, "run", lambda *a, **kw: calls.append(1) or real_run(*a, **kw))
    for net, shape, method in cases:
        randomize_(net, seed=8)
        x = torch.randn(*shape, dtype=torch.float64)
        assert run_pass(net, x, need_layers=False).method == method
        assert close(geometric_complexity(net, x), _gc_ref(net, x), 1e-9)
    calls.clear()
    x = torch.randn(4, 6, dtype=torch.float64)
    assert run_pass(lnorm, x, need_layers=False).method == BATCHED_VJP
    assert calls == []  # the tape refused this model on this input once: not tried again
    run_pass(lnorm.eval(), x, need_layers=False)  # another mode (dropout would change the verdict): tried
    assert calls == [1]
