"""The report being built: Markdown lines and the figures they reference."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from tabulate import tabulate

FIGURES = "figures"


@dataclass
class Doc:
    lines: list[str] = field(default_factory=list)
    figures: dict = field(default_factory=dict)      # file name -> matplotlib Figure

    def add(self, *lines: str) -> None:
        self.lines.extend(lines)

    def table(self, rows, headers) -> None:
        self.lines += [tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True), ""]

    def figure(self, name: str, fig, alt: str, reading: str) -> None:
        """A figure with its one-line reading right under it."""
        if name in self.figures:
            raise ValueError(f"figure {name} made twice")
        self.figures[name] = fig
        self.lines += [f"![{alt}]({FIGURES}/{name})", "", f"*Reading:* {reading}", ""]

    def text(self) -> str:
        return "\n".join(self.lines).rstrip("\n") + "\n"


def fmt(x, digits: int = 2) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "—"
    return f"{x:.{digits}f}"


def fmt_p(p) -> str:
    if p is None or (isinstance(p, float) and math.isnan(p)):
        return "—"
    return "< 0.001" if p < 0.001 else f"{p:.3f}"


def plans_named(prefix: str) -> list[str]:
    """The plans/<prefix>*.toml present in this checkout, by name."""
    folder = Path(__file__).resolve().parent.parent.parent / "plans"
    return sorted(p.stem for p in folder.glob(f"{prefix}*.toml"))


def campaign_hint(prefix: str, what: str) -> str:
    have = plans_named(prefix)
    if have:
        return " or ".join(f"`make campaign PLAN={p}`" for p in have)
    return (f"a `plans/{prefix}*.toml` plan of {what} (none in this checkout yet), run with "
            f"`make campaign PLAN={prefix}...`")
