"""Models: shapes on every input kind, exact parameter counts, and the plain-MLP structure
the metric engine relies on."""

import pytest
import torch
from torch import nn

from gclab.collect.models import ACTIVATIONS, MODELS, build_model

SHAPES = [(40,), (64,), (784,), (1, 28, 28), (3, 32, 32)]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("name", MODELS)
def test_output_shapes(name, shape):
    if name == "resnet18" and len(shape) == 1:
        with pytest.raises(ValueError, match="resnet18: needs image inputs"):
            build_model(name, input_shape=shape, n_out=10)
        return
    width = 4 if name == "resnet18" else 8
    model = build_model(name, input_shape=shape, n_out=7, width=width).eval()
    out = model(torch.randn(3, *shape))
    assert out.shape == (3, 7) and torch.isfinite(out).all()


def mlp_count(d, w, depth, k, bias=True):
    if depth == 0:
        return d * k + k * bias
    return (d * w + (depth - 1) * w * w + w * k) + bias * (depth * w + k)


@pytest.mark.parametrize("depth", [0, 1, 3])
@pytest.mark.parametrize("bias", [True, False])
def test_mlp_parameter_count_and_structure(depth, bias):
    model = build_model("mlp", input_shape=(40,), n_out=10, width=17, depth=depth, activation="tanh", bias=bias)
    assert sum(p.numel() for p in model.parameters()) == mlp_count(40, 17, depth, 10, bias)
    assert isinstance(model, nn.Sequential)
    kinds = [type(m) for m in model]
    assert kinds[0] is nn.Flatten
    # Flatten, then (Linear, act) * depth, then the output Linear: nothing else.
    assert kinds[1:] == [nn.Linear, nn.Tanh] * depth + [nn.Linear]
    linears = [m for m in model if isinstance(m, nn.Linear)]
    assert [m.out_features for m in linears] == [17] * depth + [10]
    assert all((m.bias is not None) == bias for m in linears)
    if not bias:
        assert not any("bias" in n for n, _ in model.named_parameters())


@pytest.mark.parametrize("act, cls", [("relu", nn.ReLU), ("tanh", nn.Tanh), ("gelu", nn.GELU), ("elu", nn.ELU)])
def test_mlp_activations(act, cls):
    model = build_model("mlp", input_shape=(1, 28, 28), n_out=10, width=5, depth=4, activation=act)
    assert sum(isinstance(m, cls) for m in model.modules()) == 4
    assert model[1].in_features == 784
    # No normalization or dropout anywhere in the MLP.
    allowed = (nn.Sequential, nn.Flatten, nn.Linear, cls)
    assert all(isinstance(m, allowed) for m in model.modules())


def test_cnn_has_only_conv_and_linear_parameters():
    for shape in [(40,), (1, 28, 28), (3, 32, 32)]:
        model = build_model("cnn", input_shape=shape, n_out=10, width=6, depth=3)
        owners = {type(m) for m in model.modules() if any(True for _ in m.parameters(recurse=False))}
        assert owners == {nn.Conv2d, nn.Linear}
        convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
        assert [c.out_channels for c in convs] == [6, 12, 24]
        assert convs[0].in_channels == (3 if shape[0] == 3 else 1)
    # 1-D signals use 1x3 kernels so the length-40 axis is convolved, not padded height.
    one_d = build_model("cnn", input_shape=(40,), n_out=10, width=6, depth=2)
    assert [m.kernel_size for m in one_d.modules() if isinstance(m, nn.Conv2d)] == [(1, 3)] * 2


def test_resnet18_width_multiplier():
    # k=64 is the standard CIFAR ResNet-18 (11,173,962 parameters with 10 outputs).
    std = build_model("resnet18", input_shape=(3, 32, 32), n_out=10)
    assert sum(p.numel() for p in std.parameters()) == 11_173_962
    small = build_model("resnet18", input_shape=(3, 32, 32), n_out=10, width_multiplier=4)
    convs = [m.out_channels for m in small.modules() if isinstance(m, nn.Conv2d)]
    assert sorted(set(convs)) == [4, 8, 16, 32]
    assert sum(isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3) for m in small.modules()) == 17
    assert small.fc.in_features == 32
    with pytest.raises(ValueError, match="disagree"):
        build_model("resnet18", input_shape=(3, 32, 32), n_out=10, width=8, width_multiplier=4)


def test_errors_list_choices():
    with pytest.raises(ValueError) as e:
        build_model("vit", input_shape=(40,), n_out=10)
    assert all(m in str(e.value) for m in MODELS)
    with pytest.raises(ValueError) as e:
        build_model("mlp", input_shape=(40,), n_out=10, activation="swish")
    assert all(a in str(e.value) for a in ACTIVATIONS)
    with pytest.raises(ValueError, match="width must be an integer >= 1"):
        build_model("mlp", input_shape=(40,), n_out=10, width=0)
    with pytest.raises(ValueError, match="depth must be an integer >= 0"):
        build_model("mlp", input_shape=(40,), n_out=10, depth=-1)
