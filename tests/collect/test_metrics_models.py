"""Every model of the shared catalogue (tests/_helpers/models.py) — transformers, RNNs, norms,
Conv1d/3d, transposed convs, tied and repeated weights, a layer no rule knows — against a float64
per-example autograd loop: all seven step quantities, per-example GC and norms, to 1e-9."""

import copy
import math
import warnings

import pytest
import torch

from gclab.collect.metrics import (
    fallback_layers,
    geometric_complexity,
    per_example_grad_norms,
    step_metrics,
    step_terms,
)
from gclab.collect.metrics.step import KEYS
from tests._helpers.bruteforce import batch_grads, close, step_reference
from tests._helpers.models import CASES, K, Scale

RTOL = 1e-9


def _targets(b, loss, seed=0):
    g = torch.Generator().manual_seed(seed + 1)
    return (
        torch.randint(0, K, (b,), generator=g) if loss == "cross_entropy" else torch.randn(b, K, generator=g).double()
    )


@pytest.mark.parametrize("loss", ["cross_entropy", "mse"])
@pytest.mark.parametrize("name", sorted(CASES))
def test_catalogue_matches_per_example_loop(name, loss):
    case = CASES[name]
    net, x = case.model(), case.inputs()
    y = _targets(len(x), loss)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        got = step_terms(net, x, y, loss=loss, gc_input=case.gc_input)
    ref = step_reference(net, x, y, loss, loop=True, gc_input=case.gc_input)
    scale = float(ref["grad_norm_sq"] + ref["residual_term"] + ref["per_example_grad_norm_sq"])
    for key in KEYS:
        if key == "train_acc" and loss == "mse":
            assert math.isnan(got[key])
            continue
        floor = RTOL * scale if key in ("label_alignment", "batch_alignment") else 0.0
        assert close(got[key], ref[key], RTOL, floor), (key, float(got[key]), float(ref[key]))
    for key in ("gc_x", "per_example_grad_sq", "logit_grad_sq"):
        want = ref[key]
        assert close(got[key], want, RTOL, float(want.abs().max())), key


@pytest.mark.parametrize("name", sorted(CASES))
def test_catalogue_gradient_gc_and_norms(name):
    case = CASES[name]
    net, x = case.model(seed=1), case.inputs(seed=1)
    y = _targets(len(x), "cross_entropy", seed=1)
    expect = batch_grads(net, x, y, "cross_entropy")
    ref = step_reference(net, x, y, "cross_entropy", loop=True, gc_input=case.gc_input)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        step_metrics(net, x, y, set_grad=True, gc_input=case.gc_input)
        gc = geometric_complexity(net, x, gc_input=case.gc_input)
        norms = per_example_grad_norms(net, x, y)
    for pname, p in net.named_parameters():
        if not p.requires_grad:  # frozen: not θ, no gradient
            assert p.grad is None and pname not in expect, pname
            continue
        assert torch.allclose(p.grad, expect[pname], rtol=RTOL, atol=1e-14), pname
    assert close(gc, ref["gc_x"], RTOL, float(ref["gc_x"].max()))
    assert close(norms, ref["per_example_grad_sq"], RTOL, float(ref["per_example_grad_sq"].max()))


def test_fallback_is_reported_once_and_named():
    case = CASES["fallback_only_layer"]
    net, x = case.model(), case.inputs()
    y = _targets(len(x), "cross_entropy")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(3):
            step_metrics(net, x, y)
    lines = [str(w.message) for w in caught if "gclab" in str(w.message)]
    assert len(lines) == 1 and "'1' (Scale)" in lines[0]
    assert fallback_layers(net) == ("'1' (Scale) (no rule)",)


@pytest.mark.parametrize(
    "name,layer",
    [
        ("layernorm_mlp", "LayerNorm"),
        ("transformer", "LayerNorm"),
        ("conv1d_groupnorm", "GroupNorm"),
        ("conv1d_groupnorm", "Conv1d"),
        ("conv1d_strided_groups", "Conv1d"),
        ("conv1d_same_reflect", "Conv1d"),
        ("conv1d_ghost", "Conv1d"),
        ("lstm_given_state", "LSTM"),
        ("rnn_relu_time_major", "RNN"),
        ("rnn_given_state", "RNN"),
        ("token_transformer", "Embedding"),
        ("token_bag_padding", "Embedding"),
        ("token_grid", "Embedding"),
        ("transformer", "MultiheadAttention"),
        ("attention_time_major_weights", "MultiheadAttention"),
        ("transformer", "Transformer"),  # its positional nn.Parameter, added to a batch-first tensor
        ("added_parameter_batch_axis", "AddedBias"),
        ("conv_transpose2d", "GroupNorm"),
        ("conv3d_instancenorm", "InstanceNorm3d"),
        ("instancenorm_running_stats", "InstanceNorm1d"),
    ],
)
def test_norm_layers_take_their_rule(name, layer):
    """LayerNorm, GroupNorm and InstanceNorm (norm_rules.py) and Conv1d (conv1d.py) have rules: the
    fallback does not take them (their exactness is test_catalogue_matches_per_example_loop)."""
    case = CASES[name]
    net, x = case.model(), case.inputs()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        step_metrics(net, x, _targets(len(x), "cross_entropy"), gc_input=case.gc_input)
    assert layer not in " ".join(fallback_layers(net))
    assert any(type(m).__name__ == layer for m in net.modules())


def test_rule_only_model_reports_no_fallback():
    net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2)).double()
    step_metrics(net, torch.randn(5, 3, dtype=torch.float64), torch.randint(0, 2, (5,)))
    assert fallback_layers(net) == ()


def test_token_model_without_gc_input_says_what_to_do():
    case = CASES["token_transformer"]
    with pytest.raises(TypeError, match="gc_input='embed'"):
        step_metrics(case.model(), case.inputs(), _targets(4, "cross_entropy"))
    with pytest.raises(ValueError, match="gc_input='nope' names no submodule"):
        geometric_complexity(case.model(), case.inputs(), gc_input="nope")


def test_train_mode_dropout_with_fallback_is_refused():
    net = torch.nn.Sequential(torch.nn.Linear(3, 4), Scale(4), torch.nn.Dropout(0.5), torch.nn.Linear(4, 2))
    with pytest.raises(ValueError, match="call model.eval"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        step_metrics(net.double().train(), torch.randn(5, 3, dtype=torch.float64), torch.randint(0, 2, (5,)))


def test_train_mode_dropout_without_fallback_keeps_the_pass_masks():
    """Without a fallback layer, train-mode Dropout is fine: the metrics use this forward's masks
    (the norm rules run on the autograd path); the gradient equals loss.backward() on the same masks."""
    net = torch.nn.Sequential(
        torch.nn.Linear(3, 4), torch.nn.LayerNorm(4), torch.nn.Dropout(0.5), torch.nn.Linear(4, 2)
    )
    net = net.double().train()
    x, y = torch.randn(5, 3, dtype=torch.float64), torch.randint(0, 2, (5,))
    torch.manual_seed(7)
    step_metrics(net, x, y, set_grad=True)
    torch.manual_seed(7)
    expect = batch_grads(net, x, y, "cross_entropy")
    for name, p in net.named_parameters():
        assert torch.allclose(p.grad, expect[name], rtol=1e-12, atol=1e-15), name


def test_recorder_records_a_transformer_loop(tmp_path):
    """A transformer (LayerNorm, MultiheadAttention, positional Parameter) trained through the public
    Recorder: the run is stored completed, with its fallback layers, and the first step's GC and
    ||∇L_B||² match the float64 per-example loop."""
    from gclab.collect.recorder import Recorder
    from gclab.store import db

    case = CASES["transformer"]
    net, x = case.model(seed=2), case.inputs(b=8, seed=2)
    y = _targets(len(x), "cross_entropy", seed=2)
    before = copy.deepcopy(net)
    opt = torch.optim.SGD(net.parameters(), lr=0.05)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with Recorder(data=tmp_path, sweep="tf", config={"lr": 0.05, "model": "transformer"}) as rec:
            for step in range(3):
                rec.step(step, net, x, y)
                opt.step()
            rec.evaluate(3, net, {"train": (x, y)})
    with db.connect(tmp_path) as con:
        run = db.query(con, "SELECT status, steps_done, fallback_layers FROM runs").to_dicts()
        steps = db.query(con, "SELECT step, gc, grad_norm_sq FROM steps ORDER BY step").to_dicts()
        evals = db.query(con, "SELECT gc FROM evals").to_dicts()
    assert run[0]["status"] == "completed" and run[0]["steps_done"] == 3
    # the run records the engine's fallback layers: here the positional Parameter's module (b = 8 = d makes
    # its add ambiguous, added_parameter.py); MultiheadAttention and LayerNorm have rules
    assert run[0]["fallback_layers"] == "; ".join(fallback_layers(net)) == "'<root>' (Transformer) (no rule)"
    assert [r["step"] for r in steps] == [0, 1, 2] and len(evals) == 1
    ref = step_reference(before, x, y, "cross_entropy", loop=True)
    assert close(steps[0]["gc"], ref["gc"], RTOL) and close(steps[0]["grad_norm_sq"], ref["grad_norm_sq"], RTOL)


@pytest.mark.parametrize("name", ["fallback_only_layer", "cell_loop", "transformer"])
def test_hutchinson_mode_keeps_fallback_terms_exact(name):
    """With n_projections the fallback layer reads the 2n + 1 Hutchinson rows: the gradient terms stay exact."""
    case = CASES[name]
    net, x = case.model(seed=3), case.inputs(seed=3)
    y = _targets(len(x), "cross_entropy", seed=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est = step_metrics(net, x, y, n_projections=3, generator=torch.Generator().manual_seed(0))
    ref = step_reference(net, x, y, "cross_entropy", loop=True)
    scale = float(ref["grad_norm_sq"] + ref["per_example_grad_norm_sq"])
    for key in ("grad_norm_sq", "batch_alignment", "per_example_grad_norm_sq", "train_loss"):
        assert close(est[key], ref[key], RTOL, RTOL * scale), key


@pytest.mark.parametrize(
    ("name", "layer"),
    [
        ("lstm", "rnn"),
        ("lstm_time_major", "rnn"),
        ("lstm_no_bias_frozen_hh", "rnn"),
        ("lstm_given_state", "rnn"),
        ("rnn", "rnn"),
        ("rnn_relu_time_major", "rnn"),
        ("rnn_given_state", "rnn"),
        ("token_bag_padding", "embed"),
        ("token_grid", "embed"),
        ("attention_time_major_weights", "att"),
        ("transformer", "att"),
    ],
)
def test_sequence_rules_per_example_gradients_are_the_jacobian_rows(name, layer):
    """The LSTM, RNN, Embedding and MultiheadAttention rules' per-example gradients (the BFD's Jacobian and Gram
    blocks) against a float64 per-example autograd loop, column for column in the parameters' order."""
    from gclab.collect.metrics import run_pass
    from tests._helpers.bruteforce import jacobians_loop

    case = CASES[name]
    net, x = case.model(), case.inputs()
    (sig,) = [s for s in run_pass(net, x, gc_input=case.gc_input).layers if s.name == layer]
    got = sig.rule.per_example(sig.ctx, sig.delta)  # (k, b, P_rnn)
    Jt, _ = jacobians_loop(net, x, gc_input=case.gc_input)  # (b, k, P) over the trainable parameters
    cols, i = [], 0
    for pname, p in ((n, p) for n, p in net.named_parameters() if p.requires_grad):
        if pname.startswith(f"{layer}.") and not pname.startswith(f"{layer}.out_proj"):
            cols.append(torch.arange(i, i + p.numel()))
        i += p.numel()
    want = Jt[:, :, torch.cat(cols)].transpose(0, 1)
    assert close(got, want, RTOL, float(want.abs().max()))


def test_recorder_records_a_token_model_with_gc_input(tmp_path):
    """Recorder(gc_input=...) takes GC w.r.t. the embedding output in steps and evals: the run is stored
    completed and the first step's and the eval's GC match the float64 per-example loop."""
    from gclab.collect.recorder import Recorder
    from gclab.store import db

    case = CASES["token_transformer"]
    net, x = case.model(seed=3), case.inputs(b=6, seed=3)
    y = _targets(len(x), "cross_entropy", seed=3)
    before = copy.deepcopy(net)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with Recorder(data=tmp_path, sweep="tok", config={"lr": 0.0}, gc_input=case.gc_input) as rec:
            rec.step(0, net, x, y)
            rec.evaluate(1, net, {"train": (x, y)})
    with db.connect(tmp_path) as con:
        run = db.query(con, "SELECT status FROM runs").to_dicts()
        step_gc = db.query(con, "SELECT gc FROM steps").to_series().to_list()
        eval_gc = db.query(con, "SELECT gc FROM evals").to_series().to_list()
    ref = step_reference(before, x, y, "cross_entropy", loop=True, gc_input=case.gc_input)
    assert run[0]["status"] == "completed"
    assert close(step_gc[0], ref["gc"], RTOL) and close(eval_gc[0], ref["gc"], RTOL)


def test_embedding_options_outside_the_rule_go_to_the_fallback():
    """max_norm rewrites the weight in the forward, scale_grad_by_freq scales by batch counts: the
    plan sends such an Embedding to the fallback and says why."""
    from gclab.collect.metrics import check_model

    for opts in ({"max_norm": 1.0}, {"scale_grad_by_freq": True}):
        net = torch.nn.Sequential(torch.nn.Embedding(5, 3, **opts), torch.nn.Flatten(), torch.nn.Linear(6, 2))
        assert check_model(net).fallback_layers == ("'0' (Embedding) (options its rule does not take)",)
