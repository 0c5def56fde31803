"""Unsupported models get a clear error naming the module, never a silently wrong number."""

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrizations

from gclab.collect.metrics import functional_dimension, geometric_complexity, step_metrics, theorem_terms
from tests._helpers.bruteforce import close, randomize_, step_reference

X = torch.randn(4, 3)
Y = torch.randint(0, 2, (4,))


class TwiceCalled(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(3, 3)
        self.out = nn.Linear(3, 2)

    def forward(self, x):
        return self.out(self.lin(torch.tanh(self.lin(x))))


class Tied(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(3, 3)
        self.b = nn.Linear(3, 3)
        self.b.weight = self.a.weight
        self.out = nn.Linear(3, 2)

    def forward(self, x):
        return self.out(self.b(self.a(x)))


class WithEmbedding(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(5, 3)
        self.out = nn.Linear(3, 2)

    def forward(self, x):
        return self.out(x + self.emb.weight[0])


def _bn_train():
    return nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2)).train()


def _bn_no_stats():
    return nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4, track_running_stats=False), nn.Linear(4, 2)).eval()


@pytest.mark.parametrize(
    "make,exc,match",
    [
        (_bn_train, ValueError, r"'1' \(BatchNorm1d\) is BatchNorm in train mode"),
        (_bn_no_stats, ValueError, r"'1' \(BatchNorm1d\) is BatchNorm without running stats"),
        (
            lambda: nn.Sequential(nn.Linear(3, 4), nn.LayerNorm(4), nn.Linear(4, 2)),
            TypeError,
            r"'1' \(LayerNorm\) has trainable",
        ),
        (WithEmbedding, TypeError, r"'emb' \(Embedding\) has trainable"),
        (
            lambda: nn.Sequential(nn.Unflatten(1, (1, 3)), nn.Conv1d(1, 2, 2), nn.Flatten(), nn.Linear(4, 2)),
            TypeError,
            r"'1' \(Conv1d\) has trainable",
        ),
        (Tied, ValueError, r"parameter sharing: 'b.weight' is the same Parameter as 'a.weight'"),
        (
            lambda: (lambda lin: nn.Sequential(lin, nn.Tanh(), lin, nn.Linear(3, 2)))(nn.Linear(3, 3)),
            ValueError,
            r"module '0' \(Linear\) ran twice in one forward",
        ),
        (TwiceCalled, ValueError, r"module 'lin' \(Linear\) ran twice"),
        (
            lambda: nn.Sequential(parametrizations.spectral_norm(nn.Linear(3, 4)), nn.Linear(4, 2)),
            TypeError,
            r"'0' \(ParametrizedLinear\) is parametrized",
        ),
        (
            lambda: nn.Sequential(torch.nn.utils.weight_norm(nn.Linear(3, 4)), nn.Linear(4, 2)),
            TypeError,
            r"'0' \(Linear\) has unexpected parameters",
        ),
    ],
)
def test_unsupported_module_raises(make, exc, match):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # weight_norm deprecation
        model = make()
    with pytest.raises(exc, match=match):
        step_metrics(model, X, Y, set_grad=True)
    with pytest.raises(exc, match=match):
        functional_dimension(model, X)


def test_gc_refuses_example_mixing_but_not_parameter_types():
    with pytest.raises(ValueError, match="BatchNorm in train mode"):
        geometric_complexity(_bn_train(), X)
    ln = nn.Sequential(nn.Linear(3, 4), nn.LayerNorm(4), nn.Linear(4, 2))  # per-example op: GC is exact
    assert geometric_complexity(ln, X).shape == (4,)


def test_eval_batchnorm_is_allowed():
    model = randomize_(nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.ReLU(), nn.Linear(4, 2)).double()).eval()
    got, ref = step_metrics(model, X.double(), Y), step_reference(model, X.double(), Y, "cross_entropy")
    for key in ("gc", "grad_norm_sq", "residual_term", "per_example_grad_norm_sq"):
        assert close(got[key], ref[key], 1e-9), key


def test_bad_inputs():
    model = nn.Sequential(nn.Linear(3, 2))
    with pytest.raises(TypeError, match="floating-point"):
        step_metrics(model, torch.ones(4, 3, dtype=torch.long), Y)
    with pytest.raises(ValueError, match="unknown loss"):
        step_metrics(model, X, Y, loss="hinge")
    with pytest.raises(TypeError, match="integer class indices"):
        step_metrics(model, X, Y.float())
    with pytest.raises(ValueError, match="mse targets must have shape"):
        step_metrics(model, X, torch.randn(4, 3), loss="mse")
    with pytest.raises(ValueError, match=r"\(batch, k\) tensor of logits"):
        geometric_complexity(nn.Sequential(nn.Linear(3, 1), nn.Flatten(0)), X)
    with pytest.raises(ValueError, match="unknown outputs"):
        functional_dimension(model, X, outputs="probs")
    with pytest.raises(TypeError, match=r"'1' \(Dropout\)"):
        theorem_terms(nn.Sequential(nn.Linear(3, 3), nn.Dropout(0.5), nn.Linear(3, 2)).train(), X)
