"""functional_dimension against numpy.linalg.matrix_rank of the materialized Jacobian."""
import copy

import numpy as np
import pytest
import torch
from torch import nn

from collect.metrics import functional_dimension, ntk_gram
from metrics_bruteforce import jacobians, mlp, randomize_


def _rank_ref(model, x, outputs="logits"):
    Jt, _ = jacobians(model, x)
    if outputs == "softmax":
        s = torch.softmax(model(x), 1).detach()
        dsdf = torch.diag_embed(s) - s[:, :, None] * s[:, None, :]
        Jt = torch.einsum("bij,bjp->bip", dsdf, Jt)
    J = Jt.reshape(-1, Jt.shape[2]).detach().numpy()
    return int(np.linalg.matrix_rank(J)), np.linalg.svd(J, compute_uv=False)


def _dead_units(net, units):
    with torch.no_grad():
        net[0].weight[units] = 0.1 * net[0].weight[units]
        net[0].bias[units] = -100.0  # never active on |x| ~ 1 inputs: exact zeros downstream
    return net


def _duplicated(net, pairs):
    with torch.no_grad():
        for a, b in pairs:
            net[0].weight[b] = net[0].weight[a]
            net[0].bias[b] = net[0].bias[a]
    return net


CASES = {
    "P<bk": (lambda: mlp(5, [4], 3, act="tanh", seed=1), 20),
    "P>bk": (lambda: mlp(4, [8], 3, act="tanh", seed=2), 5),
    "deep_relu": (lambda: mlp(3, [6, 6], 2, act="relu", seed=3), 12),
    "nobias_gelu": (lambda: mlp(3, [5, 5], 3, act="gelu", bias=False, seed=4), 8),
    "dead_relu": (lambda: _dead_units(mlp(3, [10], 2, act="relu", seed=5), [0, 3, 4, 7, 8]), 15),
    "all_dead": (lambda: _dead_units(mlp(3, [6], 2, act="relu", seed=6), list(range(6))), 10),
    "duplicated": (lambda: _duplicated(mlp(3, [8], 2, act="tanh", seed=7), [(0, 1), (2, 3), (4, 5)]), 30),
    "duplicated_relu": (lambda: _duplicated(mlp(4, [9, 5], 3, act="relu", seed=8), [(0, 1), (2, 3)]), 40),
}


@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.parametrize("outputs", ["logits", "softmax"])
def test_rank_equals_matrix_rank(name, outputs):
    make, b = CASES[name]
    net = make()
    x = torch.randn(b, net[0].in_features, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    ref, _ = _rank_ref(net, x, outputs)
    assert functional_dimension(net, x, outputs=outputs) == ref


def test_rank_deficient_cases_are_deficient():
    # Guard that the cases above really test deficiency, not just full rank.
    for name in ("dead_relu", "all_dead", "duplicated", "duplicated_relu"):
        make, b = CASES[name]
        net = make()
        x = torch.randn(b, net[0].in_features, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
        P = sum(p.numel() for p in net.parameters())
        k = net(x).shape[1]
        assert functional_dimension(net, x) < min(b * k, P), name
    net, _ = CASES["all_dead"][0](), None
    assert functional_dimension(net, torch.randn(10, 3, dtype=torch.float64)) == 2  # only the output bias acts


def test_spectrum_matches_svd():
    net = mlp(4, [6, 6], 3, act="elu", seed=9)
    x = torch.randn(7, 4, dtype=torch.float64)
    rank, sv = functional_dimension(net, x, return_spectrum=True)
    ref_rank, ref_sv = _rank_ref(net, x)
    assert rank == ref_rank and sv.shape == (21,)
    np.testing.assert_allclose(sv[:rank], ref_sv[:rank], rtol=1e-6)


def test_gram_equals_materialized_jjt():
    net = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.Tanh(), nn.AvgPool2d(2), nn.Flatten(),
                        nn.Linear(3 * 9, 4)).double()
    randomize_(net, seed=10)
    x = torch.randn(5, 2, 6, 6, dtype=torch.float64)
    K, P = ntk_gram(net, x)
    Jt, _ = jacobians(net, x)
    J = Jt.transpose(0, 1).reshape(-1, Jt.shape[2])  # rows ordered (output, example) like K
    assert P == J.shape[1]
    torch.testing.assert_close(K, J @ J.T, rtol=1e-9, atol=1e-12)
    assert functional_dimension(net, x) == _rank_ref(net, x)[0]
    assert functional_dimension(net, x, outputs="softmax") == _rank_ref(net, x, "softmax")[0]


def test_cnn_with_eval_batchnorm():
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.ReLU(), nn.Flatten(), nn.Linear(2 * 16, 3)).double()
    randomize_(net, seed=11).eval()
    x = torch.randn(4, 1, 6, 6, dtype=torch.float64)
    assert functional_dimension(net, x) == _rank_ref(net, x)[0]


def test_float32_model_is_evaluated_in_float64():
    net = mlp(5, [4], 3, act="tanh", seed=1).float()
    x = torch.randn(20, 5)
    ref = _rank_ref(copy.deepcopy(net).double(), x.double())[0]
    assert functional_dimension(net, x) == ref == 39
    assert next(net.parameters()).dtype == torch.float32  # the caller's model is untouched
