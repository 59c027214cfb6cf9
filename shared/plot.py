"""Plotting helpers: one consistent look for every chapter's figure."""
from __future__ import annotations

import matplotlib.pyplot as plt

COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b"]


def style():
    """Apply the book's matplotlib style (call once in the scale cell)."""
    plt.rcParams.update({
        "figure.figsize": (7, 4), "figure.dpi": 110, "axes.grid": True, "grid.alpha": 0.3,
        "axes.spines.top": False, "axes.spines.right": False, "axes.prop_cycle": plt.cycler(color=COLORS),
        "legend.frameon": False, "font.size": 10,
    })


def smooth(values, weight: float = 0.9):
    """Exponential moving average, bias-corrected, for noisy loss curves."""
    out, avg = [], 0.0
    for i, v in enumerate(values, 1):
        avg = weight * avg + (1 - weight) * v
        out.append(avg / (1 - weight ** i))
    return out
