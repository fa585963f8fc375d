"""Reading the Prometheus text format in tests."""

from __future__ import annotations

import re


def sample(exposition: str, name: str, **labels: str) -> float:
    """One sample's value from the Prometheus text format (labels in the order they are written)."""
    selector = ",".join(f'{key}="{value}"' for key, value in labels.items())
    pattern = re.escape(name) + (r"\{" + re.escape(selector) + r"\}" if labels else "") + r" ([0-9.e+-]+)$"
    found = re.search(pattern, exposition, re.MULTILINE)
    assert found, f"{name} {labels} not in metrics"
    return float(found.group(1))
