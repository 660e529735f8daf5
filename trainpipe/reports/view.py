"""What a report section hands to the template: plain values, no HTML.

Keeping sections as data lets the tests check each section's content without a browser, and keeps
the template the only place that knows about markup.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Table:
    title: str
    columns: list[str]
    rows: list[list[Any]]
    note: str | None = None

    @property
    def long(self) -> bool:
        """Long tables start folded in the page."""
        return len(self.rows) > 20


@dataclass
class Figure:
    """A plotly figure spec ({"data": [...], "layout": {...}}) or a PNG image as a data URI."""

    title: str
    spec: dict | None = None
    image: str | None = None
    caption: str | None = None
    wide: bool = False  # spans the page's width (many series, legend beside the plot)


@dataclass
class Section:
    key: str  # the HTML id, also the name the tests and docs use
    title: str
    missing: str | None = None  # why the whole section could not be made
    facts: list[tuple[str, Any]] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    figures: list[Figure] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # "not measured" and other one-line remarks
    code: str | None = None  # a preformatted block (the redacted config)

    def to_json(self) -> dict:
        """A summary for --json: what is in the section, not the figures' data."""
        return {"title": self.title, "missing": self.missing, "facts": {str(k): v for k, v in self.facts},
                "tables": [t.title for t in self.tables], "figures": [f.title for f in self.figures],
                "notes": self.notes}


@dataclass(frozen=True)
class Limits:
    """Caps that keep a report fast and small whatever the data size (docs/monitoring.md)."""

    score_rows: int = 20_000  # test rows used for calibration, score histograms, one-vs-rest curves
    scatter_points: int = 2_000  # points drawn in regression scatter plots
    curve_points: int = 400  # points kept per learning or ROC/PR curve
    importance_rows: int = 2_000  # validation rows for permutation importance
    importance_repeats: int = 3
    top_features: int = 25
    columns: int = 200  # rows of the per-column statistics table
    histogram_bins: int = 40
