"""theorem_terms against brute force, and Theorem 5.1 over >= 10,000 random cases."""

import numpy as np
import pytest
import torch
from torch import nn
from torch.func import jacrev, vmap

from gclab.collect.metrics import theorem_terms
from gclab.store.tolerances import theorem_holds
from tests._helpers.bruteforce import close, jacobians, mlp

ACT = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "gelu": nn.GELU,
    "elu": nn.ELU,
    "sigmoid": nn.Sigmoid,
    "leaky": lambda: nn.LeakyReLU(0.1),
    "softplus": nn.Softplus,
}


def _reference(net, x):
    """Every term from its definition: hooks for h_l, jacrev of each sub-network for ∇_x h_l."""
    lin_idx = [i for i, m in enumerate(net) if isinstance(m, nn.Linear)]
    b = x.shape[0]
    d = x[0].numel()
    hs = []
    handles = [net[i].register_forward_hook(lambda m, inp, out: hs.append(inp[0].detach())) for i in lin_idx]
    out = net(x)
    for h in handles:
        h.remove()
    k = out.shape[1]
    Jt, Jx = jacobians(net, x)
    specs = []
    for i in lin_idx:
        sub = net[:i]
        J = vmap(jacrev(lambda xi, sub=sub: sub(xi.unsqueeze(0))[0].reshape(-1)))(x).reshape(b, -1, d)
        specs.append(torch.linalg.matrix_norm(J, ord=2))
    jspec = torch.stack(specs, 1)
    wspec = torch.tensor(
        [np.linalg.svd(net[i].weight.detach().numpy(), compute_uv=False)[0] for i in lin_idx], dtype=torch.float64
    )
    hsq = torch.stack([h.reshape(b, -1).square().sum(1) for h in hs], 1)
    one = torch.tensor([float(net[i].bias is not None) for i in lin_idx], dtype=torch.float64)
    t2 = (one + hsq) / (wspec * jspec).square()
    gt = Jt.reshape(b, -1).square().sum(1)
    return {
        "gc_x": Jx.reshape(b, -1).square().sum(1),
        "grad_theta_sq": gt,
        "h_norm_sq": hsq,
        "weight_spec": wspec.expand(b, -1),
        "input_jac_spec": jspec,
        "transfer_sq_tight": t2,
        "transfer_sq": t2 / min(d, k),
        "transfer_sq_sum": (t2 / min(d, k)).sum(1),
        "transfer_sq_sum_tight": t2.sum(1),
        "bound": gt / (t2 / min(d, k)).sum(1),
        "bound_tight": gt / t2.sum(1),
    }


@pytest.mark.parametrize(
    "widths,act,bias",
    [
        ([], "relu", True),
        ([7], "relu", True),
        ([6, 5], "tanh", False),
        ([5, 5, 4], "gelu", True),
        ([8, 3], "elu", False),
    ],
)
def test_terms_match_bruteforce(widths, act, bias):
    net = mlp(4, widths, 3, act=act, bias=bias, seed=len(widths))
    x = torch.randn(9, 4, dtype=torch.float64)
    got, ref = theorem_terms(net, x), _reference(net, x)
    L = len(widths) + 1
    for key, val in ref.items():
        assert got[key].shape == val.shape, key
        assert close(got[key], val, 1e-6), key
    assert got["h_norm_sq"].shape == (9, L)
    assert bool(got["holds"].all()) and bool(got["holds_tight"].all())


@pytest.mark.parametrize(
    "make",
    [
        lambda: nn.Sequential(nn.Tanh(), nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 3)),
        lambda: nn.Sequential(nn.Linear(4, 6), nn.Linear(6, 5, bias=False), nn.GELU(), nn.Linear(5, 3), nn.Sigmoid()),
    ],
)
def test_terms_match_bruteforce_other_structures(make):
    torch.manual_seed(1)
    net = make().double()
    x = torch.randn(7, 4, dtype=torch.float64)
    got, ref = theorem_terms(net, x), _reference(net, x)
    for key, val in ref.items():
        assert close(got[key], val, 1e-6), key


def test_bias_free_has_no_one_plus():
    net = mlp(3, [4], 2, bias=False, seed=3)
    x = torch.zeros(2, 3, dtype=torch.float64)
    x[1, 0] = 1.0
    t = theorem_terms(net, x)
    assert float(t["transfer_sq"][0, 0]) == 0.0  # h_1 = 0 and no bias: T_1 = 0, not 1/σ
    with_bias = mlp(3, [4], 2, bias=True, seed=3)
    assert float(theorem_terms(with_bias, x)["transfer_sq"][0, 0]) > 0.0


def test_exact_methods_and_power_iteration_agree():
    net = mlp(10, [12, 12, 12], 4, act="tanh", seed=4)
    x = torch.randn(16, 10, dtype=torch.float64)
    fwd = theorem_terms(net, x, method="forward")["input_jac_spec"]
    rev = theorem_terms(net, x, method="reverse")["input_jac_spec"]
    g = torch.Generator().manual_seed(0)
    pw = theorem_terms(net, x, method="power", power_iters=5000, power_tol=1e-13, generator=g)["input_jac_spec"]
    assert close(rev, fwd, 1e-10)
    assert close(pw, fwd, 1e-6)
    assert bool((pw <= fwd * (1 + 1e-12)).all())  # power iteration is a lower bound


def _random_net(rng: np.random.Generator):
    d, k = int(rng.integers(1, 9)), int(rng.integers(1, 7))
    depth = int(rng.integers(0, 5))
    act = list(ACT)[int(rng.integers(len(ACT)))]
    layers, n = [], d
    for _ in range(depth):
        w = int(rng.integers(1, 13))
        layers += [nn.Linear(n, w, bias=bool(rng.random() < 0.5)), ACT[act]()]
        n = w
    layers.append(nn.Linear(n, k, bias=bool(rng.random() < 0.5)))
    net = nn.Sequential(*layers).double()
    g = torch.Generator().manual_seed(int(rng.integers(2**31)))
    with torch.no_grad():
        for p in net.parameters():
            scale = float(np.exp(rng.uniform(np.log(0.2), np.log(4.0))))
            p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float64) * scale / max(p.shape[-1], 1) ** 0.5)
    return net, d, float(np.exp(rng.uniform(np.log(0.1), np.log(5.0))))


def test_theorem_holds_on_10000_random_cases():
    rng = np.random.default_rng(2022)
    cases = violations = violations_tight = 0
    bias_free = 0
    while cases < 10_240:
        net, d, xs = _random_net(rng)
        x = torch.randn(64, d, dtype=torch.float64) * xs
        t = theorem_terms(net, x)
        # The stored criterion (gclab/store/tolerances.py): relative 1e-9 in float64.
        violations += int((~theorem_holds(t["gc_x"], t["bound"], "float64")).sum())
        violations_tight += int((~theorem_holds(t["gc_x"], t["bound_tight"], "float64")).sum())
        bias_free += int(not all(m.bias is not None for m in net if isinstance(m, nn.Linear)))
        cases += x.shape[0]
    assert cases >= 10_000 and bias_free > 20
    assert violations == 0 and violations_tight == 0


@pytest.mark.parametrize(
    "model,shape",
    [
        (nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.Linear(2, 2)), (2, 1, 3, 3)),
        (nn.Sequential(nn.Linear(3, 4), nn.LayerNorm(4), nn.Linear(4, 2)), (2, 3)),
        (nn.Sequential(nn.Linear(3, 4), nn.Softmax(dim=1), nn.Linear(4, 2)), (2, 3)),
    ],
)
def test_non_dense_stacks_refused(model, shape):
    with pytest.raises(TypeError, match="plain feed-forward nn.Sequential"):
        theorem_terms(model.double(), torch.randn(*shape, dtype=torch.float64))
