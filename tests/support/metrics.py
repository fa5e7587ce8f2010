"""Reading Prometheus metrics in their text format (``/metrics``)."""

import re


def scrape_value(text: str, name: str, **labels: str) -> float:
    """The value of ``name{labels}`` in Prometheus text ``text`` (summed over the samples whose
    other labels differ; 0 if absent)."""
    total = 0.0
    for line in text.splitlines():
        if line.startswith("#") or not line.startswith(name):
            continue
        match = re.match(r"^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$", line)
        if not match or match[1] != name:
            continue
        found = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', match[2] or ""))
        if all(found.get(k) == v for k, v in labels.items()):
            total += float(match[3])
    return total
