"""Parameter initialization schemes (paper §3, Fig. 2 / SM C.1).

Every scheme sets the weights of Linear and Conv layers from their fan-in / fan-out
(fan_in = in_features, or in_channels/groups * kh * kw for a conv) and multiplies the
std (normal) or bound (uniform) by ``scale``. BatchNorm and other modules are untouched.

Theoretical weight std, with s = scale:
  lecun_normal   N(0, s²/fan_in)                  std = s/sqrt(fan_in)
  lecun_uniform  U(±s·sqrt(3/fan_in))             std = s/sqrt(fan_in)
  glorot_normal  N(0, 2s²/(fan_in+fan_out))       std = s·sqrt(2/(fan_in+fan_out))
  glorot_uniform U(±s·sqrt(6/(fan_in+fan_out)))   std = s·sqrt(2/(fan_in+fan_out))
  he_normal      N(0, 2s²/fan_in)                 std = s·sqrt(2/fan_in)
  he_uniform     U(±s·sqrt(6/fan_in))             std = s·sqrt(2/fan_in)
  trunc_normal_fan_in  N(0, σ²) with σ = s/sqrt(fan_in), truncated to ±2σ
                 std = TRUNC_STD_FACTOR·σ ≈ 0.8796·σ
  default        torch's own Linear/Conv init, U(±1/sqrt(fan_in)), times s
                 std = s/sqrt(3·fan_in)

``trunc_normal_fan_in`` is the paper's "standard initialization scheme" (Dherin et al., "Why
neural networks find simple solutions: the many regularizers of geometric complexity", NeurIPS
2022, §3: "we sample them from a truncated normal distribution with variance inversely
proportional to the number of input units and the bias terms were set to zero"). That is
Haiku's ``hk.Linear`` default, ``TruncatedNormal(stddev=1/sqrt(fan_in))``, which cuts the
underlying normal at ±2 stddev without rescaling; we follow it, so σ is the std of the
normal *before* truncation.

Biases: every named scheme sets them to zero (the paper's standard scheme, and Haiku/Flax's
default for all of these initializers); ``default`` is torch's own init and redraws them from
U(±1/sqrt(fan_in)). ``zero_bias=None`` means "the scheme's own choice" (``zero_bias_default``);
docs/EXPERIMENTS.md, "Initialization", says which sweeps use which scheme.
"""

from __future__ import annotations

import math

import torch
from torch import nn

INIT_SCHEMES = (
    "default",
    "lecun_normal",
    "lecun_uniform",
    "glorot_normal",
    "glorot_uniform",
    "he_normal",
    "he_uniform",
    "trunc_normal_fan_in",
)

# Std of a standard normal truncated to [-2, 2]: sqrt(1 - 4φ(2)/(Φ(2) - Φ(-2))).
_PHI2 = math.exp(-2.0) / math.sqrt(2 * math.pi)
TRUNC_STD_FACTOR = math.sqrt(1.0 - 4.0 * _PHI2 / math.erf(2.0 / math.sqrt(2.0)))

Layer = nn.Linear | nn.Conv1d | nn.Conv2d | nn.Conv3d  # the layers a scheme initializes (isinstance takes it)


def zero_bias_default(scheme: str) -> bool:
    """Whether ``scheme`` zeroes the biases when the caller does not say (module docstring)."""
    return scheme != "default"


def fans(weight: torch.Tensor) -> tuple[int, int]:
    """(fan_in, fan_out) of a Linear (out, in) or conv (out, in/groups, *kernel) weight."""
    receptive = math.prod(weight.shape[2:]) if weight.dim() > 2 else 1
    return weight.shape[1] * receptive, weight.shape[0] * receptive


def weight_std(scheme: str, fan_in: int, fan_out: int, scale: float = 1.0) -> float:
    """The std a scheme gives each weight entry (what the tests and reports compare to)."""
    if scheme in ("lecun_normal", "lecun_uniform"):
        return scale / math.sqrt(fan_in)
    if scheme in ("glorot_normal", "glorot_uniform"):
        return scale * math.sqrt(2.0 / (fan_in + fan_out))
    if scheme in ("he_normal", "he_uniform"):
        return scale * math.sqrt(2.0 / fan_in)
    if scheme == "trunc_normal_fan_in":
        return scale * TRUNC_STD_FACTOR / math.sqrt(fan_in)
    if scheme == "default":
        return scale / math.sqrt(3.0 * fan_in)
    raise ValueError(f"unknown init scheme {scheme!r}; valid: {', '.join(INIT_SCHEMES)}")


def _draw(shape, dtype, scheme, fan_in, fan_out, scale, gen):
    # Drawn on CPU then copied: a CPU generator gives the same weights on any device.
    w = torch.empty(shape, dtype=dtype)
    if scheme.endswith("_uniform") or scheme == "default":
        # U(±b) has std b/sqrt(3); the default bound is torch's 1/sqrt(fan_in).
        std = weight_std(scheme, fan_in, fan_out, scale)
        bound = std * math.sqrt(3.0)
        return nn.init.uniform_(w, -bound, bound, generator=gen)
    if scheme == "trunc_normal_fan_in":
        sigma = scale / math.sqrt(fan_in)
        return nn.init.trunc_normal_(w, 0.0, sigma, -2.0 * sigma, 2.0 * sigma, generator=gen)
    return nn.init.normal_(w, 0.0, weight_std(scheme, fan_in, fan_out, scale), generator=gen)


@torch.no_grad()
def initialize(
    model: nn.Module,
    scheme: str = "default",
    *,
    scale: float = 1.0,
    zero_bias: bool | None = None,
    generator: torch.Generator | int | None = None,
) -> nn.Module:
    """Initialize ``model``'s Linear/Conv layers in place (in ``model.modules()`` order) and
    return it.

    ``generator`` (a CPU ``torch.Generator`` or an int seed) makes the draw reproducible;
    None uses torch's global RNG. Biases become zero if ``zero_bias`` (None: the scheme's
    choice, ``zero_bias_default``), otherwise they are
    redrawn from torch's default U(±1/sqrt(fan_in)) with the same generator (unscaled).
    ``default`` with no generator keeps torch's values as constructed and only applies
    ``scale`` (weights) and ``zero_bias``; with a generator it redraws them from torch's
    default distribution so runs are reproducible.
    """
    _check(scheme, scale)
    if zero_bias is None:
        zero_bias = zero_bias_default(scheme)
    if isinstance(generator, int) and not isinstance(generator, bool):
        generator = torch.Generator().manual_seed(generator)
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator, an int seed or None, got {generator!r}")
    redraw = scheme != "default" or generator is not None
    for m in model.modules():
        if isinstance(m, Layer):
            _init_layer(m, scheme, scale=scale, zero_bias=zero_bias, redraw=redraw, generator=generator)
    return model


def _check(scheme: str, scale: float) -> None:
    if scheme not in INIT_SCHEMES:
        raise ValueError(f"unknown init scheme {scheme!r}; valid: {', '.join(INIT_SCHEMES)}")
    if not (math.isfinite(scale) and scale >= 0):
        raise ValueError(f"init scale must be finite and >= 0, got {scale}")


def _init_layer(
    m: Layer, scheme: str, *, scale: float, zero_bias: bool, redraw: bool, generator: torch.Generator | None
) -> None:
    """One Linear/Conv layer in place: the weight drawn (or only scaled), the bias zeroed or redrawn."""
    w = m.weight
    fan_in, fan_out = fans(w)
    if redraw:
        w.copy_(_draw(w.shape, w.dtype, scheme, fan_in, fan_out, scale, generator))
    elif scale != 1.0:
        w.mul_(scale)
    bias = m.bias
    if bias is None:
        return
    if zero_bias:
        bias.zero_()
    elif redraw:
        bound = 1.0 / math.sqrt(fan_in)
        bias.copy_(nn.init.uniform_(torch.empty(bias.shape, dtype=bias.dtype), -bound, bound, generator=generator))
