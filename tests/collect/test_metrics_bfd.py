"""functional_dimension (gclab/collect/metrics/bfd.py) against numpy.linalg.matrix_rank of the materialized Jacobian."""

import copy

import numpy as np
import pytest
import torch
from torch import nn

from gclab.collect.metrics import functional_dimension, ntk_gram
from gclab.collect.metrics.bfd import bfd_ceiling
from tests._helpers.bruteforce import jacobians, mlp, randomize_


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
@pytest.mark.parametrize("method", ["auto", "jacobian", "gram"])
def test_rank_equals_matrix_rank(name, outputs, method):
    make, b = CASES[name]
    net = make()
    x = torch.randn(b, net[0].in_features, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    ref, _ = _rank_ref(net, x, outputs)
    assert functional_dimension(net, x, outputs=outputs, method=method) == ref


def test_rank_stays_right_as_sigma_max_grows():
    """Scaling the output layer by c stretches J's spectrum (rows of earlier layers ×c, the
    last layer's own columns ×1): the Jacobian route keeps numpy's rank at every c; the Gram,
    which cannot resolve below ~1e-7·σ_max, falls behind — the case the Jacobian route is for."""
    net = mlp(6, [12, 12], 4, act="relu", seed=12)
    x = torch.randn(60, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    gram_short = False
    for c in (1.0, 1e3, 1e6):
        scaled = copy.deepcopy(net)
        with torch.no_grad():
            scaled[-1].weight.mul_(c)
        ref, sv = _rank_ref(scaled, x)
        assert functional_dimension(scaled, x) == ref, c
        assert functional_dimension(scaled, x, method="jacobian") == ref, c
        gram_short |= functional_dimension(scaled, x, method="gram") < ref
    assert gram_short


def _generic_rank(net, outputs, b=400):
    x = torch.randn(b, net[0].in_features, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    return _rank_ref(net, x, outputs)[0], b


@pytest.mark.parametrize("outputs", ["logits", "softmax"])
@pytest.mark.parametrize("act,bias", [("relu", True), ("relu", False), ("tanh", True)])
def test_ceiling_is_the_rank_on_many_random_inputs(outputs, act, bias):
    """bfd_ceiling bounds the rank on any inputs: P − #hidden ReLU units (positive rescaling), and
    for softmax also − (n_{L−1} + 1) (a common shift of the last layer's rows is invisible). On a
    network whose activation patterns are rich enough it is attained; on others the rank stays
    below it (achievable activation patterns bind, as the BFD paper, Bona-Pellissier et al., "Geometry-induced
    Implicit Regularization in Deep ReLU Neural Networks", proves)."""
    P = sum(p.numel() for p in mlp(5, [7, 6], 4, bias=bias).parameters())
    hidden = 13 if act == "relu" else 0
    shift = (6 + bias) if outputs == "softmax" else 0
    for seed in (13, 14, 15):
        net = mlp(5, [7, 6], 4, act=act, bias=bias, seed=seed)
        assert _generic_rank(net, outputs)[0] <= bfd_ceiling(net, 400, 4, outputs=outputs) == P - hidden - shift
    net = mlp(5, [7, 6], 4, act=act, bias=bias, seed=16)
    ref, b = _generic_rank(net, outputs)
    assert bfd_ceiling(net, b, 4, outputs=outputs) == ref == P - hidden - shift
    # Same inputs as the reference: on other draws the patterns may bind one below the ceiling.
    x = torch.randn(b, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    assert functional_dimension(net, x, outputs=outputs) == ref
    # Few inputs: the row count binds (softmax rows have rank k − 1 each).
    assert bfd_ceiling(net, 3, 4, outputs=outputs) == 3 * (4 if outputs == "logits" else 3)
    x3 = torch.randn(3, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    assert functional_dimension(net, x3, outputs=outputs) == _rank_ref(net, x3, outputs)[0] <= 3 * 4


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
    rank, sv = functional_dimension(net, x, return_spectrum=True)  # pyright: ignore[reportGeneralTypeIssues]  (-> (int, ndarray))
    ref_rank, ref_sv = _rank_ref(net, x)
    assert rank == ref_rank and sv.shape == (21,)
    np.testing.assert_allclose(sv[:rank], ref_sv[:rank], rtol=1e-6)


def test_gram_equals_materialized_jjt():
    net = nn.Sequential(
        nn.Conv2d(2, 3, 3, padding=1), nn.Tanh(), nn.AvgPool2d(2), nn.Flatten(), nn.Linear(3 * 9, 4)
    ).double()
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


@pytest.mark.parametrize("output", ["logits", "softmax"])
def test_bfd_run_matches_matrix_rank_across_training(tmp_path, monkeypatch, output):
    """A bfd-style run (ReLU MLP, b·k > P − #hidden, trained to zero train error): the stored
    evals.bfd equals float64 numpy.linalg.matrix_rank of the brute-force Jacobian on the same
    weights and batch at every eval step, and the fdim table holds the nested random batches."""
    import gclab.collect.recorder as recorder_mod  # the built-in loop evaluates through the Recorder
    import gclab.collect.train as train_mod
    from gclab.collect.config import RunConfig
    from gclab.collect.evaluate import FULL_BFD
    from gclab.store import db

    snaps = {}
    real = recorder_mod.log_eval

    def spy(model, splits, cfg, step, init_params, bufs, **kwargs):
        snaps[step] = (
            copy.deepcopy(model).double(),
            {s.name: (s.x if s.name == FULL_BFD else s.x[: cfg.bfd_batch]).double() for s in splits},
        )
        real(model, splits, cfg, step, init_params, bufs, **kwargs)

    monkeypatch.setattr(recorder_mod, "log_eval", spy)
    cfg = RunConfig(
        sweep="bfd_t",
        dataset="mnist1d",
        n_train=48,
        n_test=48,
        width=8,
        depth=2,
        lr=0.2,
        batch_size=16,
        steps=2000,
        log_every=50,
        eval_every=100,
        eval_examples=48,
        theorem_examples=0,
        bfd_batch=48,
        sharpness_iters=0,
        bfd_output=output,
        bfd_random_batches=(8, 24, 64),
        stop_at_train_error=0.0,
    )
    row = train_mod.train(cfg, tmp_path, threads=1)
    assert row["target_reached"] and len(snaps) >= 3
    with db.connect(tmp_path) as con:
        ev = db.query(con, "SELECT step, split, bfd, bfd_max FROM evals")
        fd = db.query(
            con, "SELECT step, n_inputs, bfd, bfd_max, output FROM fdim WHERE split = 'random' AND n_inputs <> 48"
        )
    P = row["n_params"]
    assert 48 * 10 > P - 16  # the rank can fall below its ceiling
    for step, (net, xs) in snaps.items():
        for split in ("train", "test", "random"):
            got = ev.filter((ev["step"] == step) & (ev["split"] == split)).row(0)
            assert got[2] == _rank_ref(net, xs[split], output)[0], (step, split)
            assert got[3] == (min(480, P - 16) if output == "logits" else min(48 * 9, P - 16 - 9))
        for n in (8, 24, 64):
            stored = fd.filter((fd["step"] == step) & (fd["n_inputs"] == n))
            assert stored["bfd"].to_list() == [_rank_ref(net, xs[FULL_BFD][:n], output)[0]], (step, n)
    assert set(fd["output"]) == {output} and fd.height == 3 * len(snaps)
    assert ev.filter(ev["split"] == "train")["bfd"].n_unique() > 1  # BFD moved during training
