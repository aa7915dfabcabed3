"""The metric names a PromQL expression (or a Grafana query) reads.

Enough of PromQL for checking our own rules and dashboards: strings, label matchers, ranges,
grouping clauses and Grafana variables are removed; what remains that looks like an identifier
and is not a function, an aggregation or a keyword is a metric name.
"""

from __future__ import annotations

import re

__all__ = ["metric_names"]

_STRINGS = re.compile(r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'|`[^`]*`')
_GRAFANA_VARIABLES = re.compile(r"\$\{[^}]*\}|\$\w+")
_MATCHERS = re.compile(r"\{[^{}]*\}")
_RANGES = re.compile(r"\[[^\[\]]*\]")
_GROUPING = re.compile(
    r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)", re.IGNORECASE
)
_IDENTIFIER = re.compile(r"(?<![\w.:])([a-zA-Z_:][a-zA-Z0-9_:]*)(?![\w:])(?!\s*\()")
_KEYWORDS = frozenset(
    {
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
        "bool",
        "and",
        "or",
        "unless",
        "offset",
        "inf",
        "nan",
        "atan2",
    }
)
_LABEL_VALUES = re.compile(r"^\s*label_values\(\s*([^,]+?)\s*,\s*\w+\s*\)\s*$")


def metric_names(expression: str) -> set[str]:
    """Metric names read by a PromQL expression or a Grafana ``label_values(metric, label)``."""
    label_values = _LABEL_VALUES.match(expression)
    if label_values:
        expression = label_values.group(1)
    text = _STRINGS.sub(" ", expression)
    text = _GRAFANA_VARIABLES.sub(" ", text)
    text = _MATCHERS.sub(" ", text)
    text = _RANGES.sub(" ", text)
    text = _GROUPING.sub(" ", text)
    return {name for name in _IDENTIFIER.findall(text) if name.lower() not in _KEYWORDS}
