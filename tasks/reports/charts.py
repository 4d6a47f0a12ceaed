"""Charts as PNG images embedded in the report (matplotlib, Agg: no display, no browser).

Each chart becomes a `data:image/png;base64,...` URI, so the HTML file stands alone and the
PDF engine renders the very same image.
"""

from __future__ import annotations

import base64
import io
import threading
from decimal import Decimal
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
from matplotlib.figure import Figure

from tasks.db.select import Rows
from tasks.errors import InputError
from tasks.reports.definition import ChartSpec

WIDTH_INCHES, HEIGHT_INCHES, DPI = 8.0, 3.2, 110
# pyplot keeps global state; figures are built one at a time.
_lock = threading.Lock()


def _number(value: Any) -> float:
    if value is None:
        return 0.0
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int | float | Decimal):
        return float(value)
    try:
        return float(value)
    except (TypeError, ValueError) as exc:
        raise InputError(f"chart value {value!r} is not a number") from exc


def chart_png(spec: ChartSpec, rows: Rows) -> bytes:
    """The chart of `rows` as PNG bytes; an empty result gives a chart saying so."""
    missing = [c for c in [spec.x, *spec.y] if c not in rows.columns]
    if missing:
        raise InputError(
            f"chart of query {rows.name!r}: columns {missing} are not in its result "
            f"(it has {rows.columns})"
        )
    x_index = rows.columns.index(spec.x)
    xs = [str(row[x_index]) for row in rows.rows]
    with _lock:
        figure: Figure = plt.figure(figsize=(WIDTH_INCHES, HEIGHT_INCHES), dpi=DPI)
        try:
            _draw(figure, spec, rows, xs)
            buffer = io.BytesIO()
            figure.savefig(buffer, format="png", bbox_inches="tight")
        finally:
            plt.close(figure)
    return buffer.getvalue()


def _draw(figure: Figure, spec: ChartSpec, rows: Rows, xs: list[str]) -> None:
    axes = figure.add_subplot()
    axes.set_title(spec.title or rows.name, fontsize=11)
    axes.grid(axis="y", alpha=0.3)
    axes.spines[["top", "right"]].set_visible(False)
    if not rows.rows:
        axes.text(0.5, 0.5, "no data in this period", ha="center", va="center", alpha=0.6)
        axes.set_xticks([])
        axes.set_yticks([])
        return
    positions = list(range(len(xs)))
    bottom = [0.0] * len(xs)
    width = 0.8 / (1 if spec.stacked else len(spec.y))
    for number, column in enumerate(spec.y):
        index = rows.columns.index(column)
        ys = [_number(row[index]) for row in rows.rows]
        if spec.kind == "line":
            axes.plot(positions, ys, marker="o" if len(xs) <= 40 else None, label=column)
        elif spec.stacked:
            axes.bar(positions, ys, width, bottom=bottom, label=column)
            bottom = [b + y for b, y in zip(bottom, ys, strict=True)]
        else:
            offset = (number - (len(spec.y) - 1) / 2) * width
            axes.bar([p + offset for p in positions], ys, width, label=column)
    step = max(1, len(xs) // 12)
    tilted = len(xs) > 6 or any(len(x) > 10 for x in xs)
    axes.set_xticks(
        positions[::step],
        xs[::step],
        rotation=25 if tilted else 0,
        ha="right" if tilted else "center",
    )
    axes.set_xlabel(spec.x)
    if len(spec.y) > 1:
        axes.legend(frameon=False, fontsize=9)


def data_uri(png: bytes) -> str:
    """`png` as a data URI for an <img src>."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")
