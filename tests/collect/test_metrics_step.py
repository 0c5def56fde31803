"""step_metrics / step_terms against brute force (Eq. 6–8, per-example norms, GC, set_grad)."""

import copy
import math

import pytest
import torch
from torch import nn

from gclab.collect.metrics import (
    geometric_complexity,
    geometric_complexity_estimate,
    per_example_grad_norms,
    step_metrics,
    step_terms,
)
from gclab.collect.metrics.step import KEYS
from tests._helpers.bruteforce import batch_grads, close, mlp, randomize_, step_reference


def _targets(b, k, loss, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed + 1)
    if loss == "cross_entropy":
        return torch.randint(0, k, (b,), generator=g)
    return torch.randn(b, k, generator=g, dtype=dtype)


def _check(model, x, y, loss, rtol=1e-6, loop=False, ref_model=None, xref=None):
    got = step_metrics(model, x, y, loss=loss)
    ref = step_reference(ref_model or model, x if xref is None else xref, y, loss, loop=loop)
    assert set(got) == set(KEYS)
    scale = float(ref["grad_norm_sq"] + ref["residual_term"] + ref["per_example_grad_norm_sq"])
    for key in KEYS:
        if key == "train_acc" and loss == "mse":
            assert math.isnan(got[key])
            continue
        tol_scale = scale if key in ("label_alignment", "batch_alignment") else 0.0
        assert close(got[key], ref[key], rtol, 1e-3 * tol_scale), (key, got[key], float(ref[key]))
    return got, ref


@pytest.mark.parametrize(
    "depth,width,act,bias",
    [
        (0, 0, "relu", True),
        (1, 6, "relu", True),
        (2, 5, "tanh", False),
        (3, 4, "gelu", True),
        (2, 7, "elu", False),
        (1, 9, "gelu", False),
    ],
)
@pytest.mark.parametrize("loss", ["cross_entropy", "mse"])
def test_mlp_matches_bruteforce(depth, width, act, bias, loss):
    d, k, b = 5, 4, 7
    net = mlp(d, [width] * depth, k, act=act, bias=bias, seed=depth * 10 + width)
    x = torch.randn(b, d, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    _check(net, x, _targets(b, k, loss), loss)


def test_per_example_terms_match():
    net = mlp(6, [8, 8], 3, act="tanh", seed=4)
    x = torch.randn(9, 6, dtype=torch.float64)
    y = _targets(9, 3, "cross_entropy")
    t = step_terms(net, x, y)
    ref = step_reference(net, x, y, "cross_entropy")
    for key in ("gc_x", "logit_grad_sq", "per_example_grad_sq"):
        assert close(t[key], ref[key], 1e-6), key


@pytest.mark.parametrize("loss", ["cross_entropy", "mse"])
def test_eq6_terms_each_match_their_definitions_at_batch_32(loss):
    """R, A and C each against their pair-sum definitions and ||∇L_B||² against autograd on the mean loss
    (their sum is not checked here: the engine derives C from the other terms, so the sum holds by construction)."""
    net = mlp(10, [16, 16], 5, act="relu", seed=7)
    x = torch.randn(32, 10, dtype=torch.float64, generator=torch.Generator().manual_seed(8))
    got, _ = _check(net, x, _targets(32, 5, loss), loss)
    assert got["batch_alignment"] != 0.0 and got["label_alignment"] != 0.0  # the cross terms are exercised


@pytest.mark.parametrize("ydim", [1, 2])
def test_k1_regression(ydim):
    net = mlp(3, [6, 6], 1, act="tanh", seed=2)
    x = torch.randn(8, 3, dtype=torch.float64)
    y = torch.randn(8, dtype=torch.float64)
    y = y if ydim == 1 else y[:, None]
    got, _ = _check(net, x, y, "mse")
    assert got["label_alignment"] == pytest.approx(0.0, abs=1e-14)  # no i ≠ j pairs when k = 1


def _cnn(bias=True, conv_kwargs=None, pool="max", act=nn.ReLU, c_in=2):
    conv_kwargs = conv_kwargs or {}
    pool_mod = nn.MaxPool2d(2) if pool == "max" else nn.AvgPool2d(2)
    return nn.Sequential(
        nn.Conv2d(c_in, 4, 3, bias=bias, **conv_kwargs),
        act(),
        pool_mod,
        nn.Conv2d(4, 4, 2, bias=bias, groups=2),
        act(),
        nn.Flatten(),
        nn.LazyLinear(3, bias=bias),
    )


@pytest.mark.parametrize(
    "conv_kwargs,pool,act,bias",
    [
        ({}, "max", nn.ReLU, True),
        ({"stride": 2, "padding": 1}, "avg", nn.Tanh, False),
        ({"padding": "same", "dilation": 2}, "max", nn.GELU, True),
        ({"padding": 1, "padding_mode": "reflect"}, "avg", nn.ELU, True),
    ],
)
@pytest.mark.parametrize("loss", ["cross_entropy", "mse"])
def test_cnn_matches_bruteforce(conv_kwargs, pool, act, bias, loss):
    net = _cnn(bias, conv_kwargs, pool, act).double()
    x = torch.randn(5, 2, 9, 9, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    net(x)  # materialize LazyLinear
    randomize_(net, seed=5)
    _check(net, x, _targets(5, 3, loss), loss)


def test_cnn_matches_per_example_loop():
    net = _cnn(True).double()
    x = torch.randn(4, 2, 8, 8, dtype=torch.float64)
    net(x)
    randomize_(net, seed=6)
    _check(net, x, _targets(4, 3, "cross_entropy"), "cross_entropy", loop=True)


class ResBlock(nn.Module):
    """Residual CNN with eval-mode BatchNorm and an in-place addition."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 3, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(3)
        self.conv2 = nn.Conv2d(3, 3, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(3)
        self.head = nn.Linear(3 * 16, 4)

    def forward(self, x):
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += x
        return self.head(torch.relu(out).flatten(1))


def test_residual_bn_eval_matches_bruteforce():
    net = randomize_(ResBlock().double(), seed=8).eval()
    x = torch.randn(6, 3, 4, 4, dtype=torch.float64)
    _check(net, x, _targets(6, 4, "cross_entropy"), "cross_entropy")


class SeqHead(nn.Module):
    """Linear applied to (b, T, n) inputs: positions sum inside each example's gradient."""

    def __init__(self):
        super().__init__()
        self.a = nn.Linear(3, 5)
        self.b = nn.Linear(5 * 4, 2)

    def forward(self, x):
        return self.b(torch.tanh(self.a(x.view(-1, 4, 3))).flatten(1))


def test_linear_on_sequences():
    net = randomize_(SeqHead().double(), seed=9)
    x = torch.randn(5, 12, dtype=torch.float64)
    _check(net, x, _targets(5, 2, "mse"), "mse")


def test_chain_and_generic_paths_agree():
    net = mlp(6, [7, 7], 3, act="gelu", seed=11)
    x = torch.randn(10, 6, dtype=torch.float64)
    y = _targets(10, 3, "cross_entropy")
    fast = step_metrics(net, x, y)
    handle = net[0].register_forward_hook(lambda *a: None)  # hooks force the generic (autograd) path
    try:
        slow = step_metrics(net, x, y)
    finally:
        handle.remove()
    for key in KEYS:
        assert close(fast[key], slow[key], 1e-10, 1e-6), key


def _assert_float32_matches(net32, net64, x, y):
    """float32 engine vs float64 reference on the same weights: relative 1e-4 (alignment terms,
    which can cancel to ~0, relative to the gradient scale)."""
    got = step_metrics(net32, x.float(), y)
    ref = step_reference(net64, x, y, "cross_entropy")
    scale = float(ref["grad_norm_sq"] + ref["per_example_grad_norm_sq"])
    for key in KEYS:
        tol_scale = scale if key in ("label_alignment", "batch_alignment") else 0.0
        assert close(got[key], ref[key], 1e-4, tol_scale), key


def test_float32_within_1e4():
    net32 = mlp(12, [32, 32], 10, act="relu", seed=12).float()  # same weights, rounded
    net64 = copy.deepcopy(net32).double()  # reference on the exact float32 weights
    x = torch.randn(16, 12).double()
    y = _targets(16, 10, "cross_entropy")
    _assert_float32_matches(net32, net64, x, y)


def test_float32_cnn_within_1e4():
    net64 = _cnn(True).double()
    x = torch.randn(6, 2, 8, 8).double()  # exactly representable in float32
    net64(x)
    randomize_(net64, seed=13)
    net32 = _cnn(True)
    net32(x.float())
    net32.load_state_dict({k: v.float() for k, v in net64.state_dict().items()})
    y = _targets(6, 3, "cross_entropy")
    _assert_float32_matches(net32, net64, x, y)


def _models_for_set_grad():
    cnn = _cnn(True).double()
    cnn(torch.zeros(1, 2, 8, 8, dtype=torch.float64))
    frozen = mlp(5, [6], 3, seed=14)
    frozen[0].bias.requires_grad_(False)
    return [
        ("mlp", mlp(5, [6, 6], 3, act="tanh", seed=15), (5,)),
        ("mlp_nobias", mlp(5, [6], 3, bias=False, seed=16), (5,)),
        ("frozen_bias", frozen, (5,)),
        ("cnn", randomize_(cnn, seed=17), (2, 8, 8)),
        ("resblock", randomize_(ResBlock().double(), seed=18).eval(), (3, 4, 4)),
    ]


@pytest.mark.parametrize("loss", ["cross_entropy", "mse"])
def test_set_grad_equals_backward(loss):
    for name, net, shape in _models_for_set_grad():
        x = torch.randn(6, *shape, dtype=torch.float64)
        k = net(x).shape[1]
        y = _targets(6, k, loss)
        ref = batch_grads(net, x, y, loss)
        for p in net.parameters():  # garbage in .grad: set_grad must overwrite, not accumulate
            p.grad = torch.full_like(p, 7.0) if p.requires_grad else None
        step_metrics(net, x, y, loss=loss, set_grad=True)
        for n, p in net.named_parameters():
            if not p.requires_grad:
                continue
            assert p.grad is not None and close(p.grad, ref[n], 1e-9, float(ref[n].abs().max())), (name, n)


def test_set_grad_with_dropout_in_train_mode():
    net = nn.Sequential(nn.Linear(5, 16), nn.ReLU(), nn.Dropout(0.5), nn.Linear(16, 3)).double()
    x = torch.randn(8, 5, dtype=torch.float64)
    y = _targets(8, 3, "cross_entropy")
    torch.manual_seed(0)
    ref = batch_grads(net, x, y, "cross_entropy")
    torch.manual_seed(0)  # same dropout mask
    step_metrics(net, x, y, set_grad=True)
    for n, p in net.named_parameters():
        assert close(p.grad, ref[n], 1e-9, float(ref[n].abs().max())), n


def test_training_loop_usage():
    """What gclab/collect/train.py does: step_metrics(set_grad=True) then optimizer.step()."""
    torch.manual_seed(0)
    a = mlp(4, [8], 3, seed=19)
    b = mlp(4, [8], 3, seed=19)
    oa, ob = (
        torch.optim.SGD(a.parameters(), lr=0.1, momentum=0.9),
        torch.optim.SGD(b.parameters(), lr=0.1, momentum=0.9),
    )
    x = torch.randn(16, 4, dtype=torch.float64)
    y = _targets(16, 3, "cross_entropy")
    for _ in range(3):
        step_metrics(a, x, y, set_grad=True)
        oa.step()
        ob.zero_grad()
        nn.functional.cross_entropy(b(x), y).backward()
        ob.step()
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.allclose(pa, pb, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize(
    "make",
    [
        lambda: nn.Sequential(nn.Tanh(), nn.Linear(4, 5), nn.ReLU(), nn.Linear(5, 3)),  # act before 1st Linear
        lambda: nn.Sequential(nn.Linear(4, 5), nn.GELU(), nn.Linear(5, 3), nn.Sigmoid()),  # act after the last
        lambda: nn.Sequential(nn.Linear(4, 5), nn.Linear(5, 6), nn.ELU(), nn.Linear(6, 3)),  # Linear, Linear
        lambda: nn.Sequential(nn.Linear(4, 5), nn.ReLU(), nn.Linear(5, 6), nn.Linear(6, 3)),  # ... at the top
        lambda: nn.Sequential(
            nn.Linear(4, 5), nn.Tanh(), nn.Sigmoid(), nn.Dropout(0.3), nn.Identity(), nn.Sequential(nn.Linear(5, 3))
        ).eval(),  # stacked acts, nesting
        lambda: nn.Sequential(nn.Linear(4, 5), nn.LeakyReLU(0.2), nn.Linear(5, 3, bias=False), nn.Softplus()),
    ],
)
@pytest.mark.parametrize("loss", ["cross_entropy", "mse"])
def test_dense_chain_structures(make, loss):
    torch.manual_seed(0)
    net = randomize_(make().double(), seed=21, scale=1.5)
    x = torch.randn(6, 4, dtype=torch.float64)
    _check(net, x, _targets(6, 3, loss), loss)


@pytest.mark.parametrize(
    "make,shape", [(lambda: mlp(5, [6], 3, act="gelu"), (5,)), (lambda: _cnn(act=nn.GELU), (2, 8, 8))]
)
def test_results_are_ordinary_writable_tensors(make, shape):
    """The engine runs in inference mode; nothing it hands back may be an inference tensor, since
    those are read-only outside it (clipping, zero_grad and users write into them)."""
    net = make().double()
    x, y = torch.randn(4, *shape, dtype=torch.float64), torch.randint(0, 3, (4,))
    net(x)  # materialize lazy layers
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    step_metrics(net, x, y, set_grad=True)
    torch.nn.utils.clip_grad_norm_(net.parameters(), 1e-3)  # in place on every .grad
    opt.step()
    opt.zero_grad(set_to_none=False)  # in place again
    assert all(float(p.grad.abs().sum()) == 0.0 for p in net.parameters())
    out = [*step_terms(net, x, y).values(), geometric_complexity(net, x), per_example_grad_norms(net, x, y)]
    out += list(geometric_complexity_estimate(net, x, 2))
    for t in out:
        assert not t.is_inference()
        t.mul_(1.0)
