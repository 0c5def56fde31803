"""The one registry of per-layer rules: module type -> ``Rule`` subclass (docs/METRICS.md,
"Per-layer rules"). A type without an entry goes to the exact generic fallback (``fallback.py``).
"""

from __future__ import annotations

from torch import nn

from gclab.collect.metrics.attention import MultiheadAttentionRule
from gclab.collect.metrics.conv1d import Conv1dRule
from gclab.collect.metrics.embedding import EmbeddingRule
from gclab.collect.metrics.lstm import LSTMRule, RNNRule
from gclab.collect.metrics.norm_rules import BatchNormEvalRule, GroupNormRule, InstanceNormRule, LayerNormRule
from gclab.collect.metrics.rules import Conv2dRule, LinearRule, Rule

RULES: dict[type, type[Rule]] = {
    nn.Linear: LinearRule,
    nn.Conv1d: Conv1dRule,
    nn.Conv2d: Conv2dRule,
    nn.Embedding: EmbeddingRule,
    nn.LSTM: LSTMRule,
    nn.RNN: RNNRule,
    nn.MultiheadAttention: MultiheadAttentionRule,
    nn.BatchNorm1d: BatchNormEvalRule,
    nn.BatchNorm2d: BatchNormEvalRule,
    nn.BatchNorm3d: BatchNormEvalRule,
    nn.LayerNorm: LayerNormRule,
    nn.GroupNorm: GroupNormRule,
    nn.InstanceNorm1d: InstanceNormRule,
    nn.InstanceNorm2d: InstanceNormRule,
    nn.InstanceNorm3d: InstanceNormRule,
}


def register_rule(module_type: type, rule: type[Rule]) -> None:
    """Support a new parametrized layer type (exact type match; subclasses need their own entry
    unless they keep the base class's ``forward``)."""
    RULES[module_type] = rule


def rule_for(module: nn.Module) -> type[Rule] | None:
    """The rule for ``module``: exact type, or a subclass that does not override ``forward``."""
    t = type(module)
    if t in RULES:
        return RULES[t]
    for base in t.__mro__[1:]:
        if base in RULES and t.forward is base.forward:
            return RULES[base]
    return None
