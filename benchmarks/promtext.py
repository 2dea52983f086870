"""Read the operator's Prometheus endpoint into plain numbers, and diff two readings."""

from __future__ import annotations

from collections.abc import Mapping

from prometheus_client.parser import text_string_to_metric_families

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse(text: str) -> Samples:
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = float(sample.value)
    return out


def by_label(samples: Samples, name: str, *keys: str) -> dict[str, float]:
    """Values of one metric summed by the given labels, keyed "v1/v2" (empty label values shown as "")."""
    out: dict[str, float] = {}
    for (sample_name, labels), value in samples.items():
        if sample_name != name:
            continue
        values = dict(labels)
        key = "/".join(values.get(k, "") for k in keys)
        out[key] = out.get(key, 0.0) + value
    return out


def delta(before: Mapping[str, float], after: Mapping[str, float]) -> dict[str, float]:
    keys = sorted(set(before) | set(after))
    return {k: after.get(k, 0.0) - before.get(k, 0.0) for k in keys if after.get(k, 0.0) != before.get(k, 0.0)}
