"""The report's figures: each builder returns a matplotlib Figure (Agg canvas, no pyplot state) so
that tests can read its series and labels before it is saved; `save` writes byte-identical PNGs
(fixed size and dpi, no Software/date metadata)."""
from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

DPI = 100
WIDTH = 7.0
PALETTE = matplotlib.colormaps["tab10"].colors


def color(name: str, names: list[str]):
    """A method's colour, the same in every figure (its place among all method names)."""
    return PALETTE[sorted(names).index(name) % len(PALETTE)] if name in names else "0.3"


def _figure(height: float) -> Figure:
    fig = Figure(figsize=(WIDTH, height), dpi=DPI)
    FigureCanvasAgg(fig)
    return fig


def save(fig: Figure, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI, format="png", metadata={"Software": None})


def with_unit(metric: str) -> str:
    """The metric's name for an axis: accuracy is in percent."""
    return f"{metric} (%)" if str(metric).lower() == "accuracy" else str(metric)


def means(entries, metric: str, higher: bool, title: str, baseline: str | None) -> Figure:
    """entries: [(method, mean, lo, hi, n[, diverged])] best first. Dots at the means, bars over the
    95% CIs (none for a single seed), a dashed line at the baseline's mean; diverged seeds in the label."""
    fig = _figure(1.4 + 0.38 * len(entries))
    ax = fig.add_subplot()
    entries = [tuple(e) + (0,) * (6 - len(e)) for e in entries]        # (.., n, diverged)
    labels = [f"{m} (n={n}" + (f", +{k} diverged)" if k else ")") for m, _, _, _, n, k in entries]
    ys = list(range(len(entries)))[::-1]
    for y, (m, mean, lo, hi, n, _) in zip(ys, entries):
        err = None if math.isnan(lo) else [[mean - lo], [hi - mean]]
        ax.errorbar([mean], [y], xerr=err, fmt="o", color="C0" if m != baseline else "C3", capsize=3)
    base = [e for e in entries if e[0] == baseline]
    if base:
        ax.axvline(base[0][1], color="C3", linestyle="--", linewidth=1, label=f"{baseline} mean")
        ax.legend(loc="best", fontsize=8)
    ax.set_yticks(ys, labels)
    ax.set_xlabel(f"test {with_unit(metric)} ({'higher' if higher else 'lower'} is better), mean and 95% CI")
    ax.set_title(title, fontsize=10)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    return fig


def curves(series: dict, ylabel: str, title: str, names: list[str]) -> Figure:
    """series: method -> (epochs, mean, low, high); a line per method, a band from the lowest to
    the highest seed (none for a single seed)."""
    fig = _figure(4.2)
    ax = fig.add_subplot()
    for m in sorted(series):
        x, mean, lo, hi, n = series[m]
        c = color(m, names)
        ax.plot(x, mean, color=c, label=f"{m} (n={n})", linewidth=1.4)
        if n > 1:
            ax.fill_between(x, lo, hi, color=c, alpha=0.18, linewidth=0)
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2, loc="best")
    fig.tight_layout()
    return fig


def cd_diagram(mean_ranks: dict[str, float], cd: float, groups: list[list[str]], title: str) -> Figure:
    """A critical-difference diagram: methods on an axis of mean rank (1 = best, left), a bar of
    length CD, and thick lines joining the methods that the Nemenyi test does not tell apart."""
    k = len(mean_ranks)
    order = sorted(mean_ranks, key=lambda m: (mean_ranks[m], m))
    half = (k + 1) // 2
    fig = _figure(1.4 + 0.3 * half + 0.15 * len(groups))
    ax = fig.add_subplot()
    ax.set_xlim(0.5, k + 0.5)
    ax.set_ylim(-0.5 * half - 0.3, 2.0 + 0.25 * len(groups))
    ax.hlines(1, 1, k, color="k", linewidth=1)
    for r in range(1, k + 1):
        ax.vlines(r, 0.9, 1.1, color="k", linewidth=1)
        ax.text(r, 1.15, str(r), ha="center", va="bottom", fontsize=8)
    ax.plot([1, 1 + cd], [1.6 + 0.25 * len(groups)] * 2, color="C3", linewidth=2)
    ax.text(1 + cd / 2, 1.7 + 0.25 * len(groups), f"CD = {cd:.2f}", ha="center", va="bottom", fontsize=8,
            color="C3")
    for i, m in enumerate(order):
        r = mean_ranks[m]
        left = i < half
        y = -0.5 * (i + 1) if left else -0.5 * (k - i)
        xt = 0.6 if left else k + 0.4
        ax.plot([r, r, xt], [1, y, y], color="0.35", linewidth=0.8)
        ax.text(xt, y, f"{m} ({r:.2f})", ha="left" if left else "right", va="bottom", fontsize=8)
    for j, g in enumerate(groups):
        y = 0.75 - 0.18 * j
        ax.plot([mean_ranks[g[0]] - 0.05, mean_ranks[g[-1]] + 0.05], [y, y], color="k", linewidth=3)
    ax.set_axis_off()
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig


def sweep(panels: dict, title: str) -> Figure:
    """panels: parameter -> (values, mean, low, high, n per value, default, diverged: value -> count):
    validation loss against the parameter, the others at their defaults; a band from the lowest to
    the highest seed, the default value marked, a red x at the top edge where seeds diverged (with
    their count). The panels of one method share the y-axis."""
    from matplotlib.transforms import blended_transform_factory
    names = list(panels)
    cols = min(3, len(names))
    rows = math.ceil(len(names) / 3)
    fig = _figure(2.8 * rows)
    grid = fig.subplots(rows, cols, sharey=True, squeeze=False).ravel()
    for ax in grid[len(names):]:
        fig.delaxes(ax)
    for i, p in enumerate(names):
        x, mean, lo, hi, ns, default = panels[p][:6]
        diverged = panels[p][6] if len(panels[p]) > 6 else {}
        ax = grid[i]
        ax.plot(x, mean, "o-", color="C0", label="mean over finished seeds")
        ax.fill_between(x, lo, hi, color="C0", alpha=0.2, linewidth=0, label="lowest–highest seed")
        if default is not None:
            ax.axvline(default, color="C3", linestyle=":", linewidth=1, label="default")
        edge = blended_transform_factory(ax.transData, ax.transAxes)
        for j, (v, k) in enumerate(sorted(diverged.items())):
            ax.plot([v], [1.0], "x", color="C3", markersize=8, mew=2, transform=edge, clip_on=False,
                    label="diverged (top edge)" if i == 0 and j == 0 else None)
            ax.text(v, 0.97, f"{k}", color="C3", fontsize=7, ha="center", va="top", transform=edge)
        ax.set_xlabel(p)
        if i % cols == 0:
            ax.set_ylabel("validation loss")
        ax.grid(alpha=0.3)
        if i == 0:
            if not diverged and any(len(panels[q]) > 6 and panels[q][6] for q in names):
                ax.plot([], [], "x", color="C3", mew=2, label="diverged (top edge)")
            ax.legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def rank_curves(epochs: list[int], ranks: dict[str, list[float]], title: str, names: list[str]) -> Figure:
    """The ranking against budget: each method's rank (1 = best, top) by its mean validation metric
    after each epoch."""
    fig = _figure(4.0)
    ax = fig.add_subplot()
    for m in sorted(ranks):
        ax.plot(epochs, ranks[m], "o-", color=color(m, names), label=m, linewidth=1.2, markersize=3)
    ax.set_xlabel("epoch (training budget)")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel("rank by mean validation metric (1 = best)")
    ax.set_ylim(len(ranks) + 0.5, 0.5)
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=3, loc="best")
    fig.tight_layout()
    return fig


def evp(series: dict, title: str, names: list[str]) -> Figure:
    """series: method -> (expected best loss after k = 1..N settings, its std): a line per method and
    a band of ± one std."""
    fig = _figure(4.0)
    ax = fig.add_subplot()
    for m in sorted(series):
        mean, std = series[m]
        k = list(range(1, len(mean) + 1))
        c = color(m, names)
        ax.plot(k, mean, color=c, label=m, linewidth=1.3)
        ax.fill_between(k, [a - b for a, b in zip(mean, std)], [a + b for a, b in zip(mean, std)], color=c,
                        alpha=0.12, linewidth=0)
    ax.set_xlabel("settings tried (k)")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel("expected best validation loss")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=3, loc="best")
    fig.tight_layout()
    return fig


def importance(values: dict[str, float], title: str, xlabel: str, ci: dict | None = None) -> Figure:
    """Horizontal bars: each parameter's importance (fANOVA: its share of the explained variance),
    with its bootstrap interval where given."""
    order = sorted(values, key=lambda p: (values[p], p))
    fig = _figure(1.3 + 0.35 * len(order))
    ax = fig.add_subplot()
    err = None
    if ci:
        err = [[values[p] - ci[p][0] for p in order], [ci[p][1] - values[p] for p in order]]
        err = [[max(e, 0.0) for e in side] for side in err]
    ax.barh(order, [values[p] for p in order], color="C2", xerr=err, capsize=3 if err else 0)
    ax.set_xlim(0, 1)
    ax.set_xlabel(xlabel + (" (bars: 95% bootstrap interval)" if ci else ""))
    ax.set_title(title, fontsize=10)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    return fig
