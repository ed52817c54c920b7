"""Expected validation performance (Dodge et al. 2019, "Show your work"): from a method's N random
-search settings, the best validation loss expected after k of them (k = 1..N), drawn with
replacement from those N. With the losses sorted worst first, v_(1) >= ... >= v_(N), the best of k
draws is v_(i) with probability (i/N)^k - ((i-1)/N)^k; the spread is that distribution's standard
deviation. A diverged draw counts as the worst finished loss of the search (bench/analysis/sweep_sections)."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from bench.analysis import figures, select
from bench.analysis.doc import Doc, fmt


def clear_swaps(first: dict, last: dict) -> list[str]:
    """The methods whose order against some other method flips between k = 1 and k = all while the two
    (expected best ± its standard deviation) intervals are disjoint at both ends. `first`, `last`:
    method -> (expected best, std), lower being better."""
    def apart(a, b):
        return abs(a[0] - b[0]) > a[1] + b[1]

    out = set()
    names = sorted(first)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            flips = (first[a][0] < first[b][0]) != (last[a][0] < last[b][0])
            if flips and apart(first[a], first[b]) and apart(last[a], last[b]):
                out |= {a, b}
    return sorted(out)


def expected_best(losses) -> tuple[list[float], list[float]]:
    """(expected best loss after k = 1..N draws, its standard deviation), lower being better."""
    v = np.sort(np.asarray(losses, dtype=float))[::-1]          # worst first
    n = len(v)
    i = np.arange(1, n + 1)
    mean, std = [], []
    for k in range(1, n + 1):
        w = (i / n) ** k - ((i - 1) / n) ** k
        m = float(w @ v)
        mean.append(m)
        std.append(math.sqrt(max(float(w @ v ** 2) - m * m, 0.0)))
    return mean, std


def changed(cfg: dict, method: str, protocol: str, task: str, cell: str) -> int:
    """How many of the method's dropout parameters the config sets away from the protocol's defaults."""
    default, _ = select.defaults(method, protocol, task, cell)
    return sum(not select.same(cfg.get(p, default.get(p)), default.get(p)) for p in select.dropout_params(method))


def design_counts(df: pd.DataFrame) -> tuple[int, int] | None:
    """(rows at the defaults or varying one dropout rate from them, random draws of two or more) among
    the rows; None when the rows carry no configs (or a method or protocol does not resolve here)."""
    from bench import leaderboard
    if "config_json" not in df.columns:
        return None
    one = rand = 0
    try:
        for r in df.itertuples(index=False):
            k = changed(select.config_of(r), r.method, r.protocol, r.task, leaderboard.cell_of(r.config_json))
            one, rand = (one, rand + 1) if k >= 2 else (one + 1, rand)
    except Exception:
        return None
    return one, rand


def random_rows(g: pd.DataFrame, method: str, protocol: str, task: str, cell: str) -> pd.DataFrame:
    """The random-search rows of a sweep group: those whose config differs from the protocol's
    defaults in two or more dropout parameters (one-at-a-time points differ in at most one)."""
    return g[[changed(cfg, method, protocol, task, cell) >= 2 for cfg in g.cfg]]


def section_evp(doc: Doc, groups: list) -> None:
    """One figure per sweep table with random-search rows: each method's expected best loss against k."""
    doc.add("## 6. Tuning budget: expected validation performance", "",
            "Per method, from its random-search rows (settings that draw all of its dropout rates; one seed "
            "each): the best validation loss expected after k settings, k = 1 to the number it has, and "
            "± one standard deviation (Dodge et al. 2019: draws with replacement from the settings run). "
            "It says how much a method's place depends on how many settings a reader can afford; a "
            "diverged setting counts as the search's worst finished loss.", "")
    tables = {}
    for protocol, task, device, method, g, cell in groups:
        r = random_rows(g, method, protocol, task, cell)
        if len(r) >= 2:
            tables.setdefault((protocol, task, device, cell), {})[method] = (
                expected_best(r.vloss.tolist()), len(r), int(r["div"].sum()))
    if not tables:
        doc.add("No random-search rows yet (a `sweep*` plan with `[block.random]`, e.g. "
                "`make campaign PLAN=sweep-random`).", "")
        return
    for (protocol, task, device, cell), series in sorted(tables.items()):
        parts = (protocol, task, device, *(() if cell == select.DEFAULT_CELL else (cell,)))
        name = " · ".join(parts)
        doc.add(f"### {name}", "")
        first = {m: s[0][0][0] for m, s in series.items()}
        last = {m: s[0][0][-1] for m, s in series.items()}
        at1 = sorted(first, key=lambda m: (first[m], m))
        atn = sorted(last, key=lambda m: (last[m], m))
        div = {m: s[2] for m, s in series.items() if s[2]}
        rows = [[m, str(series[m][1]), f"{fmt(first[m], 3)} ± {fmt(series[m][0][1][0], 3)}",
                 f"{fmt(last[m], 3)} ± {fmt(series[m][0][1][-1], 3)}", str(at1.index(m) + 1), str(atn.index(m) + 1),
                 str(series[m][2])] for m in atn]
        doc.table(rows, ["method", "settings", "expected best, k = 1", "expected best, k = all", "rank at k = 1",
                         "rank at k = all", "diverged"])
        fig = figures.evp({m: s[0] for m, s in series.items()}, f"{name}: expected best validation loss",
                          sorted(series))
        moved = [m for m in atn if at1.index(m) != atn.index(m)]
        clear = clear_swaps({m: (first[m], s[0][1][0]) for m, s in series.items()},
                            {m: (last[m], s[0][1][-1]) for m, s in series.items()})
        reading = (f"with one setting {', '.join(f'`{m}`' for m in at1[:1])} is expected best "
                   f"({fmt(first[at1[0]], 3)}); with all of them {', '.join(f'`{m}`' for m in atn[:1])} "
                   f"({fmt(last[atn[0]], 3)}). "
                   + (f"{len(moved)} of {len(atn)} methods change rank between one setting and all of them; "
                      + (f"the swaps of {', '.join(f'`{m}`' for m in clear)} are beyond ± one standard deviation "
                         "at both ends: for them the order depends on the tuning budget."
                         if clear else
                         "every swap is within ± one standard deviation at one end or both: ties, not evidence "
                         "that the order depends on the tuning budget.")
                      + " (The ± is over draws of settings; each setting is one seed, so seed noise comes on "
                        "top of it.)" if moved else
                      "No method changes rank between one setting and all of them.")
                   + (" Diverged settings (counted as the worst): "
                      + ", ".join(f"`{m}` {k}" for m, k in sorted(div.items())) + "." if div else ""))
        doc.figure(f"evp_{select.slug(*parts)}.png", fig, f"expected best validation loss against settings, {name}",
                   reading)
