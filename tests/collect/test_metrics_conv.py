"""The conv / residual fast path (gclab/collect/metrics/tape.py) against float64 brute force, one net
per layer type; the Hutchinson step mode unbiased against the exact terms within its spread; the
per-example loss-gradient norms against brute force and (if installed) Opacus."""

import copy
import math

import pytest
import torch
from torch import nn

from gclab.collect.metrics import capture, per_example_grad_norms, step_terms, tape, tape_vjps
from gclab.collect.models import build_model
from tests._helpers.bruteforce import batch_grads, close, randomize_, step_reference

PER_EXAMPLE = ("gc_x", "logit_grad_sq", "per_example_grad_sq")
SCALARS = (
    "gc",
    "grad_norm_sq",
    "residual_term",
    "label_alignment",
    "batch_alignment",
    "per_example_grad_norm_sq",
    "train_loss",
)


def _bn_stats_(net, seed=3):
    g = torch.Generator().manual_seed(seed)
    for mod in net.modules():
        if isinstance(mod, nn.modules.batchnorm._BatchNorm):
            n = mod.running_mean.numel()
            mod.running_mean.copy_(torch.rand(n, generator=g, dtype=mod.running_mean.dtype) - 0.5)
            mod.running_var.copy_(torch.rand(n, generator=g, dtype=mod.running_var.dtype) + 0.5)
    return net.eval()


class Residual(nn.Module):
    """Strided + grouped + dilated convs, eval BN, an out-of-place residual add, overlapping max
    pool, avg pool, adaptive avg pool to 2x2, eval dropout, Flatten, Linear."""

    def __init__(self, act=nn.ReLU):
        super().__init__()
        self.stem = nn.Conv2d(2, 4, 3, stride=2, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.grouped = nn.Conv2d(4, 4, 3, padding=2, dilation=2, groups=2, bias=False)
        self.act = act()
        self.pool = nn.MaxPool2d(3, stride=2, padding=1)
        self.avg = nn.AvgPool2d(2, stride=1)
        self.adapt = nn.AdaptiveAvgPool2d(2)
        self.drop = nn.Dropout(0.5)
        self.fc = nn.Linear(16, 3)

    def forward(self, x):
        h = self.act(self.bn(self.stem(x)))
        h = self.act(h + self.grouped(h))
        h = self.adapt(self.avg(self.pool(h)))
        return self.fc(self.drop(torch.flatten(h, 1)))


class Pointwise(nn.Module):
    """1x1 convs (input gradient by one matmul): stride 3 on 9x9 (the last rows get none), stride 1,
    grouped and padded (the transposed-conv kernel); a conv whose output feeds its BatchNorm and a
    residual add (so the BatchNorm is not folded into it) beside one that feeds only its BatchNorm."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(2, 2, 3, padding=1)  # so that where the 1x1 conv puts its gradient matters
        self.down = nn.Conv2d(2, 4, 1, stride=3, bias=False)
        self.bn_down = nn.BatchNorm2d(4)
        self.mix = nn.Conv2d(4, 4, 1)
        self.bn_mix = nn.BatchNorm2d(4)
        self.grouped = nn.Conv2d(4, 4, 1, groups=2, padding=1)
        self.fc = nn.Linear(4 * 5 * 5, 3)

    def forward(self, x):
        h = torch.relu(self.bn_down(self.down(torch.tanh(self.stem(x)))))
        z = self.mix(h)
        h = torch.relu(self.bn_mix(z) + z)
        return self.fc(torch.flatten(self.grouped(h), 1))


NETS = {
    "pointwise": Pointwise,
    "residual_relu": lambda: Residual(nn.ReLU),
    "residual_tanh": lambda: Residual(nn.Tanh),
    "residual_gelu": lambda: Residual(nn.GELU),
    "cnn_models_py": lambda: build_model("cnn", input_shape=(2, 9, 9), n_out=3, width=3, activation="elu"),
    "resnet18_models_py": lambda: build_model("resnet18", input_shape=(2, 8, 8), n_out=3, width=2),
}


def _net(name):
    torch.manual_seed(0)
    return _bn_stats_(randomize_(NETS[name]().double(), seed=5))


def _x(b=4, seed=1):
    return torch.randn(b, 2, 9, 9, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))


def _y(b, k=3):
    return torch.randint(0, k, (b,), generator=torch.Generator().manual_seed(2))


def _assert_set_grad_is_batch_grad(net, x, y):
    """set_grad writes ∇_θ L_B from the same pass: equal to loss.backward()."""
    expect = batch_grads(net, x, y, "cross_entropy")
    step_terms(net, x, y, set_grad=True)
    for pname, p in net.named_parameters():
        assert torch.allclose(p.grad, expect[pname], rtol=1e-10, atol=1e-14), pname


@pytest.mark.parametrize("name", sorted(NETS))
def test_fast_path_is_taken_and_matches_bruteforce(name):
    net = _net(name)
    x, y = _x(4), _y(4)
    entries = capture.check_model(net).entries
    tape.run(net, x, None, entries, need_input=True, need_layers=True)  # raises NotTape if not on the fast path
    got = step_terms(net, x, y)
    ref = step_reference(net, x, y, "cross_entropy")
    scale = float(ref["grad_norm_sq"] + ref["residual_term"] + ref["per_example_grad_norm_sq"])
    for key in SCALARS:
        floor = 1e-9 * scale if key in ("label_alignment", "batch_alignment") else 0.0
        assert close(got[key], ref[key], 1e-9, floor), (key, float(got[key]), float(ref[key]))
    for key in PER_EXAMPLE:
        assert close(got[key], ref[key], 1e-9), key
    _assert_set_grad_is_batch_grad(net, x, y)


def test_batchnorm_folds_into_the_conv_that_alone_feeds_it():
    """The eval BatchNorm's scale moves into its conv's backward (tape.backward) only where the conv
    output has no other reader; the exactness tests above cover both cases numerically."""
    net = _net("pointwise")
    p = tape.run(net, _x(3), None, capture.check_model(net).entries, need_input=True, need_layers=True)
    folded = {s.name: s.ctx.scale is not None for s in p.layers if isinstance(s.module, nn.Conv2d)}
    assert folded == {"stem": False, "down": True, "mix": False, "grouped": False}
    down = next(s for s in p.layers if s.name == "down")
    expect = net.bn_down.weight / torch.sqrt(net.bn_down.running_var + net.bn_down.eps)
    assert torch.allclose(down.ctx.scale.reshape(-1), expect, rtol=1e-15)


@pytest.mark.parametrize("method", ["ghost", "direct", "direct_in_product_layout"])
@pytest.mark.parametrize("name", ["pointwise", "residual_relu", "resnet18_models_py"])
def test_both_conv_norm_methods_match_bruteforce(name, method, monkeypatch):
    """Each conv layer picks ghost or direct by FLOPs (and, direct, whether to copy J by its size);
    force every layer onto each branch (strided, grouped + dilated, biased and bias-free convs)."""
    from gclab.collect.metrics import rules

    calls = []
    monkeypatch.setattr(rules, "_ghost_is_cheaper", lambda A, G: calls.append(1) or method == "ghost")
    monkeypatch.setattr(rules, "SMALL_J", 0 if method == "direct_in_product_layout" else 1 << 40)
    net = _net(name)
    x, y = _x(4), _y(4)
    got, ref = step_terms(net, x, y, set_grad=True), step_reference(net, x, y, "cross_entropy")
    assert calls
    for key in PER_EXAMPLE:
        assert close(got[key], ref[key], 1e-9), key
    _assert_set_grad_is_batch_grad(net, x, y)
    assert close(per_example_grad_norms(net, x, y), ref["per_example_grad_sq"], 1e-10)


@pytest.mark.parametrize("rows", [1, 7])
@pytest.mark.parametrize("name", ["pointwise", "residual_relu", "resnet18_models_py"])
def test_transposed_convs_in_row_chunks_match_bruteforce(name, rows, monkeypatch):
    """The input gradient of a conv runs over the m·b folded rows in chunks (tape_vjps.CHUNK_BYTES); force
    chunks of 1 and of 7 rows (the last one short) through strided, grouped and dilated convs."""
    chunked = []

    def fixed(g, inp):
        chunked.append(g.shape[0] > rows)
        return rows

    monkeypatch.setattr(tape_vjps, "_chunk_rows", fixed)
    net = _net(name)
    x, y = _x(4), _y(4)
    got, ref = step_terms(net, x, y, set_grad=True), step_reference(net, x, y, "cross_entropy")
    assert any(chunked)
    for key in PER_EXAMPLE:
        assert close(got[key], ref[key], 1e-9), key
    for key in SCALARS:
        scale = float(ref["grad_norm_sq"] + ref["residual_term"] + ref["per_example_grad_norm_sq"])
        floor = 1e-9 * scale if key in ("label_alignment", "batch_alignment") else 0.0
        assert close(got[key], ref[key], 1e-9, floor), key
    _assert_set_grad_is_batch_grad(net, x, y)


@pytest.mark.parametrize("name", sorted(NETS))
def test_per_example_grad_norms_match_bruteforce(name):
    net = _net(name)
    x, y = _x(5), _y(5)
    ref = step_reference(net, x, y, "cross_entropy")["per_example_grad_sq"]
    assert close(per_example_grad_norms(net, x, y), ref, 1e-10)


def test_unsupported_ops_fall_back_with_the_same_numbers():
    class Scaled(Residual):
        def forward(self, x):
            h = self.act(self.bn(self.stem(x)))
            h = 0.5 * h + self.grouped(h)  # a product: not on the tape, the autograd path takes it
            return self.fc(torch.flatten(self.adapt(h), 1))

    torch.manual_seed(0)
    net = _bn_stats_(randomize_(Scaled().double(), seed=5))
    x, y = _x(3), _y(3)
    with pytest.raises(tape.NotTape, match="unsupported"):
        tape.run(net, x, None, capture.check_model(net).entries, need_input=True, need_layers=True)
    got, ref = step_terms(net, x, y), step_reference(net, x, y, "cross_entropy")
    for key in PER_EXAMPLE:
        assert close(got[key], ref[key], 1e-9), key


def test_train_mode_batchnorm_is_refused_on_the_fast_path_too():
    net = _net("resnet18_models_py").train()
    with pytest.raises(ValueError, match="BatchNorm in train mode"):
        step_terms(net, _x(2), _y(2))


@pytest.mark.parametrize("name", ["residual_relu", "resnet18_models_py"])
def test_hutchinson_step_is_unbiased_within_its_standard_error(name):
    """Hutchinson mode against the exact terms of torch.func Jacobians (not its own projections replayed):
    GC's mean over many draws lies within its reported standard error of exact GC, R_B's and A_B's means over
    independent calls lie within their spread of the exact values, and the exact keys stay exact."""
    net, n_calls = _net(name), 20
    x, y = _x(4), _y(4)
    ref = step_reference(net, x, y, "cross_entropy")
    g = torch.Generator().manual_seed(11)
    got = step_terms(net, x, y, n_projections=300, generator=g)
    z = float((got["gc"] - ref["gc"]) / got["gc_stderr"])  # gc_stderr is the batch mean's standard error
    assert abs(z) < 4, z
    assert not close(got["gc_x"], ref["gc_x"], 1e-6)  # an estimate, not the exact value
    calls = [step_terms(net, x, y, n_projections=4, generator=g) for _ in range(n_calls)]
    for key in ("residual_term", "label_alignment"):
        draws = torch.stack([c[key] for c in calls])
        assert abs(float(draws.mean() - ref[key])) < 4 * float(draws.std()) / math.sqrt(n_calls), key
    for key in ("grad_norm_sq", "batch_alignment", "per_example_grad_norm_sq", "train_loss"):
        assert close(got[key], ref[key], 1e-9, float(ref["per_example_grad_norm_sq"])), key
    assert torch.isnan(got["logit_grad_sq"]).all()


def test_hutchinson_bad_count():
    with pytest.raises(ValueError, match="n_projections must be >= 1"):
        step_terms(_net("residual_relu"), _x(2), _y(2), n_projections=0)


def test_per_example_norms_equal_opacus():
    """Opacus supports every layer of this net (Conv2d, Linear; no BatchNorm)."""
    opacus = pytest.importorskip("opacus")
    torch.manual_seed(0)
    net = randomize_(build_model("cnn", input_shape=(2, 9, 9), n_out=3, width=3).double(), seed=5)
    x, y = _x(6), _y(6)
    ours = per_example_grad_norms(net, x, y)
    gsm = opacus.GradSampleModule(copy.deepcopy(net), loss_reduction="sum")
    nn.functional.cross_entropy(gsm(x), y, reduction="sum").backward()
    theirs = sum(p.grad_sample.reshape(6, -1).square().sum(1) for p in gsm.parameters())
    assert close(ours, theirs, 1e-12)


def test_train_logs_hutchinson_gc_with_its_standard_error(tmp_path):
    from gclab.collect.config import RunConfig
    from gclab.collect.train import train
    from gclab.store import db

    tiny = dict(
        sweep="t",
        dataset="mnist1d",
        n_train=128,
        n_test=64,
        width=8,
        depth=1,
        steps=10,
        batch_size=32,
        log_every=5,
        eval_every=10,
        eval_examples=32,
        theorem_examples=2,
        bfd_batch=4,
        sharpness_iters=2,
    )
    est, exact = RunConfig(**tiny, gc_projections=4), RunConfig(**tiny)
    train(est, tmp_path, threads=1)
    train(exact, tmp_path, threads=1)
    with db.connect(tmp_path) as con:
        rows = db.query(con, "SELECT run_id, gc, gc_stderr FROM steps WHERE gc IS NOT NULL").to_dicts()
        evals = db.query(con, "SELECT run_id, step, gc FROM evals ORDER BY run_id, step, split").to_dicts()
    hutch = [r for r in rows if r["run_id"] == est.run_id]
    assert hutch and all(r["gc_stderr"] > 0 and math.isfinite(r["gc"]) for r in hutch)
    assert all(r["gc_stderr"] is None for r in rows if r["run_id"] == exact.run_id)
    # Same batches and weights (own generator for the projections), and evals keep exact GC.
    by_run = {rid: [e["gc"] for e in evals if e["run_id"] == rid] for rid in (est.run_id, exact.run_id)}
    assert by_run[est.run_id] and by_run[est.run_id] == pytest.approx(by_run[exact.run_id], rel=1e-5)


@pytest.mark.parametrize("kernel", [(3, 3), (1, 1), (2, 3)])
@pytest.mark.parametrize("dilation", [(1, 1), (2, 1)])
@pytest.mark.parametrize("padding", [(0, 0), (1, 2)])
@pytest.mark.parametrize("stride", [(1, 1), (2, 3)])
def test_im2col_equals_unfold(kernel, dilation, padding, stride):
    from gclab.collect.metrics.rules import im2col

    h = torch.randn(3, 4, 11, 9, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    expect = torch.nn.functional.unfold(h, kernel, dilation=dilation, padding=padding, stride=stride)
    assert torch.equal(im2col(h, kernel, dilation, padding, stride), expect)
