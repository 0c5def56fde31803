"""gclab metric engine: exact GC, Eq. 6–8 terms, Theorem 5.1 terms, batch functional
dimension and other complexity measures, from one forward + one batched backward.

Public API (names fixed: user code and the recorder depend on them)::

    geometric_complexity(model, x, *, n_projections=None, gc_input=None) -> Tensor (b,)
    step_metrics(model, x, y, *, loss="cross_entropy", set_grad=False, n_projections=None, gc_input=None)
        -> dict[str, float]
    fallback_layers(model) -> tuple[str, ...]
    per_example_grad_norms(model, x, y, *, loss="cross_entropy") -> Tensor (b,)
    theorem_terms(model, x) -> dict[str, Tensor]
    functional_dimension(model, x, *, outputs="logits", return_spectrum=False) -> int | (int, ndarray)

Models: any ``nn.Module`` autograd can differentiate that treats examples independently.
Layers with a rule (Linear, Conv1d, Conv2d, eval BatchNorm, LayerNorm, GroupNorm, InstanceNorm,
Embedding, one-layer LSTM and RNN, self-attention MultiheadAttention, a bare Parameter added to a batch-first tensor)
take the fast per-layer paths; every other trainable parameter is covered exactly by the generic
fallback (reported once; see ``fallback_layers``). Train-mode BatchNorm is refused (it mixes the
batch). Token models name the GC input with ``gc_input``. Which path and per-layer method each
net takes, and what it costs: docs/METRICS.md.
"""

from gclab.collect.losses import batch_loss
from gclab.collect.metrics.bfd import functional_dimension, ntk_gram
from gclab.collect.metrics.capture import check_model, fallback_layers, run_pass
from gclab.collect.metrics.gc import geometric_complexity, geometric_complexity_estimate
from gclab.collect.metrics.measures import dist_from_init, param_norm_sq, sharpness, spectral_product
from gclab.collect.metrics.registry import RULES, register_rule
from gclab.collect.metrics.rules import Rule
from gclab.collect.metrics.step import per_example_grad_norms, step_metrics, step_terms
from gclab.collect.metrics.theorem import theorem_terms

__all__ = [
    "geometric_complexity",
    "geometric_complexity_estimate",
    "step_metrics",
    "step_terms",
    "theorem_terms",
    "per_example_grad_norms",
    "functional_dimension",
    "ntk_gram",
    "param_norm_sq",
    "spectral_product",
    "dist_from_init",
    "sharpness",
    "batch_loss",
    "check_model",
    "fallback_layers",
    "run_pass",
    "RULES",
    "Rule",
    "register_rule",
]
