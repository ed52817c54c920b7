"""A diverged run is a result, the worst one: where a ranking needs a number for it, it gets the
worst finished test number of its (protocol, task, device) table (a lenient stand-in for an
unbounded loss), and the text says how many there were."""
from __future__ import annotations

import pandas as pd


def scored(df: pd.DataFrame) -> pd.DataFrame:
    """The rows, diverged ones included, with a diverged row's `test` set to its table's worst finished
    test number (column `diverged` marks them); tables without a finished run are left out."""
    out = []
    for _, g in df.groupby(["protocol", "task", "device"], sort=True):
        ok = g[g.status == "ok"]
        if ok.empty:
            continue
        g = g.assign(diverged=g.status != "ok")
        worst = ok.test.min() if bool(ok.higher_is_better.iloc[0]) else ok.test.max()
        g.loc[g.diverged, "test"] = float(worst)
        out.append(g)
    return pd.concat(out, ignore_index=True) if out else df.iloc[0:0].assign(diverged=pd.Series(dtype=bool))
