"""Metrics: params/MACs counting (paper convention and full), evaluation metrics."""

from dgmn.metrics.complexity import Complexity, count_complexity

__all__ = ["Complexity", "count_complexity"]
