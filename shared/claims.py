"""Checking a paper's claim: measure a value, compare it with a threshold, record the outcome.

``claim("Transformer exact match", 0.76, ">=", 0.5)`` prints the comparison, records it, and at cpu or gpu
scale raises ``AssertionError`` when it fails (at smoke scale the models are too small to show anything, so
claims are only reported). The execute tool sets `PAPERBOOK_CLAIMS_FILE`; each claim is appended there as a
JSON line and ends up in the notebook's ``metadata.paperbook.claims``.
"""
from __future__ import annotations

import json
import math
import operator
import os

from .env import scale

OPS = {">=": operator.ge, ">": operator.gt, "<=": operator.le, "<": operator.lt, "==": operator.eq}
RECORDED: list[dict] = []


def claim(text: str, value, op: str, threshold) -> dict:
    """Record the claim ``value op threshold`` (e.g. ``claim("val loss gap", gap, "<=", 0.1)``)."""
    if op not in OPS:
        raise ValueError(f"op must be one of {list(OPS)}, got {op!r}")
    value, threshold = float(value), float(threshold)
    if math.isnan(value):
        raise ValueError(f"claim {text!r}: the measured value is NaN")
    passed = bool(OPS[op](value, threshold))
    record = {"claim": text, "value": value, "op": op, "threshold": threshold, "passed": passed}
    RECORDED.append(record)
    path = os.environ.get("PAPERBOOK_CLAIMS_FILE")
    if path:
        with open(path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
    mark = "PASS" if passed else "FAIL"
    print(f"[{mark}] {text}: {value:.4g} {op} {threshold:.4g}")
    if not passed and scale() != "smoke":
        raise AssertionError(f"claim failed: {text}: measured {value:.4g}, expected {op} {threshold:.4g}")
    return record
