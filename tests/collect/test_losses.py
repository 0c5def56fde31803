"""gclab/collect/losses.py against autograd and torch's own losses, in float64."""

import math

import pytest
import torch
import torch.nn.functional as F

from gclab.collect.losses import LOSSES, accuracy, batch_loss, residuals

B, K = 7, 4


def _data(loss):
    g = torch.Generator().manual_seed(0)
    out = torch.randn(B, K, generator=g, dtype=torch.float64)
    y = torch.randint(0, K, (B,), generator=g) if loss == "cross_entropy" else torch.randn(B, K, generator=g).double()
    return out, y


@pytest.mark.parametrize("loss", LOSSES)
def test_residual_is_the_gradient_of_the_per_example_loss(loss):
    out, y = _data(loss)
    eps, loss_x, _ = residuals(out, y, loss)
    for i in range(B):
        f = out[i : i + 1].clone().requires_grad_(True)
        if loss == "cross_entropy":
            li = F.cross_entropy(f, y[i : i + 1])
        else:
            li = 0.5 * F.mse_loss(f, y[i : i + 1], reduction="sum")
        (grad,) = torch.autograd.grad(li, f)
        torch.testing.assert_close(eps[i], grad[0], rtol=1e-12, atol=1e-14)
        assert math.isclose(float(loss_x[i]), float(li.detach()), rel_tol=1e-12)
    assert math.isclose(float(batch_loss(out, y, loss)), float(loss_x.mean()), rel_tol=1e-12)


def test_accuracy_and_regression():
    out, y = _data("cross_entropy")
    y[:3] = out[:3].argmax(1)
    y[3:] = (out[3:].argmax(1) + 1) % K
    assert accuracy(out, y, "cross_entropy") == 3 / B
    assert math.isnan(accuracy(*_data("mse"), "mse"))
    assert residuals(*_data("mse"), "mse")[2] is None


def test_mse_takes_a_vector_target_when_k_is_1():
    out, y = torch.randn(5, 1, dtype=torch.float64), torch.randn(5, dtype=torch.float64)
    assert math.isclose(float(batch_loss(out, y, "mse")), float(0.5 * (out[:, 0] - y).square().mean()), rel_tol=1e-12)


@pytest.mark.parametrize(
    ("loss", "y", "match"),
    [
        ("cross_entropy", torch.zeros(B, K), "integer class indices"),
        ("mse", torch.zeros(B, dtype=torch.int64), "float targets"),
        ("mse", torch.zeros(B, K + 1), "targets must have shape"),
        ("hinge", torch.zeros(B), "unknown loss 'hinge'; valid: cross_entropy, mse"),
    ],
)
def test_bad_targets_and_names_are_refused(loss, y, match):
    with pytest.raises((TypeError, ValueError), match=match):
        residuals(torch.zeros(B, K), y, loss)
