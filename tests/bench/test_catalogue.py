"""The bench catalogue (gclab/bench/nets.py) and the numbers the bench computes beside its timings:
the naive GC baselines and the counted FLOP floors, each against an independent float64 count."""

import pytest
import torch
from torch.autograd.functional import jacobian

from gclab.bench.flops import flop_floor
from gclab.bench.naive import NAIVE
from gclab.bench.nets import NETS, BenchNet, register_net
from gclab.bench.targets import SUITE_MAX_X_PLAIN

ISSUE_NETS = ("mlp", "cnn", "cnn_stride2", "residual", "resnet18_quarter", "vit_tiny", "lstm", "conv1d")


def test_catalogue_holds_the_issue_nets_with_shapes_and_targets():
    assert set(ISSUE_NETS) <= set(NETS) and len(NETS) >= 8
    for name, net in NETS.items():
        assert net.name == name and net.family in SUITE_MAX_X_PLAIN and net.rounds >= 3
        model = net.model()
        x, y = net.data(batch=3)
        assert not model.training and x.shape == (3, *net.input_shape) and y.shape == (3,)
        assert model(x).shape == (3, net.k)
        assert torch.equal(net.data(batch=3)[0], x)  # the same data for the same arguments


def test_catalogue_refuses_a_second_net_of_the_same_name():
    with pytest.raises(ValueError, match="already in the catalogue"):
        register_net(NETS["mlp"])


def test_stride2_cnn_is_the_issue_net():
    convs = [m for m in NETS["cnn_stride2"].model().modules() if isinstance(m, torch.nn.Conv2d)]
    assert [c.kernel_size for c in convs] == [(3, 3)] * 3 and sorted(c.stride[0] for c in convs) == [1, 2, 2]
    assert not any(
        isinstance(m, (torch.nn.MaxPool2d, torch.nn.AvgPool2d)) for m in NETS["cnn_stride2"].model().modules()
    )
    assert (NETS["cnn_stride2"].input_shape, NETS["cnn_stride2"].batch, NETS["cnn_stride2"].k) == ((3, 16, 16), 64, 10)


@pytest.mark.parametrize("name", ISSUE_NETS)
def test_naive_gc_baselines_match_a_float64_per_example_jacobian(name):
    net = NETS[name]
    model = net.model(dtype=torch.float64)
    x, _ = net.data(batch=2, dtype=torch.float64)
    # ||∂f(x_i)/∂x_i||_F², one example at a time through torch.autograd.functional.jacobian
    ref = torch.stack([jacobian(lambda xi: model(xi[None])[0], xi).square().sum() for xi in x])
    for fn in NAIVE.values():
        torch.testing.assert_close(fn(model, x), ref, rtol=1e-10, atol=0)


def _two_layer_mlp() -> torch.nn.Module:
    return torch.nn.Sequential(torch.nn.Linear(5, 7), torch.nn.Tanh(), torch.nn.Linear(7, 3))


def test_flop_floor_matches_a_hand_count_on_an_mlp():
    net = BenchNet("hand_mlp", _two_layer_mlp, (5,), 4, "mlp", 3, "test only", k=3)
    model, (x, y) = net.model(), net.data()
    got = flop_floor(model, x, y)
    layers = 2 * 4 * (5 * 7 + 7 * 3)  # multiply-adds ×2 of the two Linear layers on b = 4
    assert got["flops_forward"] == got["flops_backward_data_row"] == got["flops_weight_grad_row"] == layers
    assert got["flops_plain_step"] == 3 * layers - 2 * 4 * 5 * 7  # no input gradient in a plain step
    assert got["floor_suite_x_plain"] == pytest.approx((1 + 3 + 3) * layers / got["flops_plain_step"], rel=1e-12)
    assert got["floor_gc_x_plain"] == pytest.approx((1 + 3) * layers / got["flops_plain_step"], rel=1e-12)
    assert all(p.grad is None for p in model.parameters())  # counting leaves the model as it was


def test_flop_floor_counts_the_lstm_recurrence():
    net = NETS["lstm"]
    model, (x, y) = net.model(), net.data(batch=4)
    lstm = model.lstm
    t, d, h = net.input_shape[0], lstm.input_size, lstm.hidden_size
    per_step = 2 * 4 * 4 * h * (d + h)  # the four gates' input and recurrent products, b = 4
    assert flop_floor(model, x, y)["flops_forward"] == t * per_step + 2 * 4 * h * net.k
