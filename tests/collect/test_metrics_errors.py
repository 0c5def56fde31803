"""What is undefined (example mixing) gets a clear error naming the module, never a silently wrong
number; what was once refused for lack of a rule is now exact through the generic fallback."""

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrizations

from gclab.collect.metrics import functional_dimension, geometric_complexity, step_metrics, theorem_terms
from tests._helpers.bruteforce import close, jacobians_loop, randomize_, step_reference

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
    "make,match",
    [
        (_bn_train, r"'1' \(BatchNorm1d\) is BatchNorm in train mode"),
        (_bn_no_stats, r"'1' \(BatchNorm1d\) is BatchNorm without running stats"),
    ],
)
def test_example_mixing_is_refused(make, match):
    with pytest.raises(ValueError, match=match):
        step_metrics(make(), X, Y, set_grad=True)
    with pytest.raises(ValueError, match=match):
        functional_dimension(make(), X)


@pytest.mark.parametrize(
    "make",
    [
        lambda: nn.Sequential(nn.Linear(3, 4), nn.LayerNorm(4), nn.Linear(4, 2)),
        WithEmbedding,
        lambda: nn.Sequential(nn.Unflatten(1, (1, 3)), nn.Conv1d(1, 2, 2), nn.Flatten(), nn.Linear(4, 2)),
        Tied,
        lambda: (lambda lin: nn.Sequential(lin, nn.Tanh(), lin, nn.Linear(3, 2)))(nn.Linear(3, 3)),
        TwiceCalled,
        lambda: nn.Sequential(parametrizations.spectral_norm(nn.Linear(3, 4)), nn.Linear(4, 2)).eval(),
        lambda: nn.Sequential(torch.nn.utils.weight_norm(nn.Linear(3, 4)), nn.Linear(4, 2)),
    ],
)
def test_once_refused_models_are_exact(make):
    """What the engine used to refuse (no rule, tied or repeated weights, parametrized weights)
    now goes to the exact generic fallback: every step term and the BFD match brute force."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # weight_norm deprecation, the fallback's warning line
        model = randomize_(make().double())
        x = X.double()
        got, ref = step_metrics(model, x, Y), step_reference(model, x, Y, "cross_entropy", loop=True)
        Jt, _ = jacobians_loop(model, x)
        rank = functional_dimension(model, x)
    scale = float(ref["grad_norm_sq"] + ref["per_example_grad_norm_sq"])
    for key in (
        "gc",
        "grad_norm_sq",
        "residual_term",
        "label_alignment",
        "batch_alignment",
        "per_example_grad_norm_sq",
    ):
        assert close(got[key], ref[key], 1e-9, 1e-9 * scale), key
    assert rank == int(torch.linalg.matrix_rank(Jt.reshape(-1, Jt.shape[-1])))


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
