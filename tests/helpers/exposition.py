"""A /metrics answer read the way Prometheus reads it: prometheus_client's own parser, not regular expressions."""

from __future__ import annotations

from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families


def families(text: str | bytes) -> dict[str, Metric]:
    """The metric families, by name (a counter's name without `_total`, as the parser gives it)."""
    if isinstance(text, bytes):
        text = text.decode()
    return {family.name: family for family in text_string_to_metric_families(text)}


def samples(text: str | bytes) -> dict[tuple[str, frozenset], float]:
    """Every sample, keyed by its name and its labels."""
    return {(sample.name, frozenset(sample.labels.items())): sample.value
            for family in families(text).values() for sample in family.samples}


def key(name: str, **labels: str) -> tuple[str, frozenset]:
    return name, frozenset(labels.items())
