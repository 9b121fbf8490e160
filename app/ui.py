"""What every chart carries, drawn the same way on every page: a freshness badge (watermark,
age, SLA colour), a lineage overlay (tables and versions, the job that wrote them, its last
batch) and a popover with the exact query behind the number. Layout only: data comes from
:mod:`app.data`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache, lru_cache
from html import escape

import pandas as pd
import streamlit as st

from app import data
from lakehouse.config import Settings
from lakehouse.config import settings as load_settings
from lakehouse.contracts import KpiContracts
from lakehouse.contracts import contracts as load_contracts

COLOURS = {"fresh": "green", "stale": "red", "no data": "gray"}


@cache
def settings() -> Settings:
    return load_settings()


@cache
def contracts() -> KpiContracts:
    return load_contracts()


def now() -> datetime:
    return datetime.now(UTC)


def badge(fresh: data.Freshness) -> str:
    """``● fresh updated 3s ago · SLA 60s · watermark 12:30:00``, coloured by status."""
    colour = COLOURS[fresh.status]
    age = f"updated {fresh.age_seconds:.0f}s ago" if fresh.age_seconds is not None else "nothing written yet"
    watermark = f"{fresh.watermark:%H:%M:%S}" if fresh.watermark else "–"
    return f":{colour}[● {fresh.status}] {age} · SLA {fresh.sla_seconds:.0f}s · watermark {watermark}"


def lineage_line(read: data.Read, extra: str = "") -> str:
    """``lineage: gold.kpi@v12 (job silver_gold, batch #41 at 12:30:01) ← silver.orders``."""
    batches = data.cached.last_batches(settings(), data.clock(now(), 10) - timedelta(hours=1))
    parts = []
    for table in read.tables:
        job = table.writer or "?"
        batch = batches.loc[job] if job in batches.index else None
        ran = f", batch #{int(batch['batch_id'])} at {pd.Timestamp(batch['recorded_at']):%H:%M:%S}" if batch is not None else ""
        committed = f", committed {table.committed_at:%H:%M:%S}" if table.committed_at else ""
        parts.append(f"{table.label} (job {job}{ran}{committed})")
    return "lineage: " + " + ".join(parts) + (f" ← {extra}" if extra else "")


def footer(read: data.Read, fresh: data.Freshness, lineage: str = "", key: str = "") -> None:
    """Freshness badge, lineage overlay and the query popover under a chart."""
    left, right = st.columns([6, 1])
    left.caption(f"{badge(fresh)}  \n{lineage_line(read, lineage)}")
    with right.popover("query", key=f"query-{key}" if key else None):
        st.code(read.query, language="sql")
        st.caption("read with delta-rs (no JVM), read-only")


def kpi_sources(kpi: str) -> str:
    """The silver tables (and views) a KPI is computed from, for lineage overlays."""
    from lakehouse.lineage import kpi_tables

    return ", ".join(kpi_tables(kpi)[1:])


@st.cache_resource
def band_cache():  # noqa: ANN201 - app.bands.BandCache, one per server
    from app.bands import BandCache

    return BandCache()


def band_line(kpi: str, unit: str) -> str:
    """``expected 12–28 at 16:05 (champion v3)`` for a tile, or why there is no band yet."""
    from app.bands import latest_band

    cache = band_cache()
    bands = cache.get(settings())
    band = latest_band(bands, kpi)
    if band is None:
        return f"band: {cache.error}" if cache.error else "band: warming up (champion model)"
    return (
        f"expected {data.format_value(band['lower'], unit)}–{data.format_value(band['upper'], unit)} at "
        f"{pd.Timestamp(band['window_start']):%H:%M} (champion v{bands.model_version})"
    )


HTML_COLOURS = {"fresh": "#21c354", "stale": "#ff4b4b", "no data": "#a3a8b8"}


def badge_html(fresh: data.Freshness) -> str:
    """:func:`badge` as HTML (for markup drawn with ``st.html``)."""
    text = badge(fresh).split("] ", 1)[1]
    return f'<span style="color:{HTML_COLOURS[fresh.status]}">● {fresh.status}</span> {escape(text)}'


@dataclass(frozen=True)
class TileView:
    """What one headline tile shows: today's value against last week, its sparkline, the live
    window and band, its freshness and its lineage."""

    kpi: str
    label: str
    value: str
    change: str | None  # "+12.5% vs last week"; None when either side has no value
    help: str  # the hover text: the definition and last week's value
    spark: list[float]
    lines: list[str]
    fresh: data.Freshness
    lineage: str


MUTED = "color:rgba(49,51,63,0.6)"  # secondary text, as Streamlit greys captions


def change_html(change: str | None) -> str:
    """The change against last week, coloured as ``st.metric`` colours a delta (up green)."""
    if change is None:
        return ""
    up = not change.startswith("-")
    colour, arrow = ("#09ab3b", "↑") if up else ("#ff2b2b", "↓")
    return f'<div style="color:{colour};font-size:0.875rem">{arrow} {escape(change)}</div>'


def tile_html(tile: TileView) -> str:
    """One tile as a bordered box; the label and value are block elements, so a page's text
    reads ``label`` then ``value`` on the next line, as ``st.metric`` does."""
    rows = [*(escape(line) for line in tile.lines), badge_html(tile.fresh), escape(tile.lineage)]
    return (
        f'<div data-kpi="{escape(tile.kpi)}" title="{escape(tile.help)}" style="border:1px solid rgba(49,51,63,0.2);'
        'border-radius:0.5rem;padding:0.75rem 1rem;min-width:0">'
        f'<div style="font-size:0.875rem">{escape(tile.label)} · today</div>'
        f'<div data-value style="font-size:2.25rem;line-height:1.3">{escape(tile.value)}</div>'
        f"{change_html(tile.change)}{sparkline(tile.spark)}"
        f'<div style="font-size:0.875rem;line-height:1.5;overflow-wrap:anywhere;{MUTED}">' + "<br>".join(rows) + "</div></div>"
    )


def tiles_html(tiles: Sequence[TileView]) -> str:
    """Every headline tile in one grid, drawn by one ``st.html``. Per tile a container, a
    metric and an HTML element made the Overview about a hundred elements, the browser's
    largest cost in its first render; one element draws the same."""
    cells = "".join(tile_html(tile) for tile in tiles)
    return f'<div style="display:grid;grid-template-columns:repeat(auto-fill,minmax(15rem,1fr));gap:1rem">{cells}</div>'


def sparkline(values: list[float], width: int = 160, height: int = 28, colour: str = "#1f77b4") -> str:
    """A tile's sparkline as an SVG polyline (gaps drawn at the series' minimum), as markup
    for ``st.html``: an ``<img>`` of the SVG as a data URI (``st.html`` keeps HTML tags only).
    The browser draws it as a plain image: fourteen tiles cost no chart library
    (``st.metric``'s ``chart_data`` embeds one Vega view per tile, the Overview's largest
    frontend cost)."""
    import base64

    points = [float(v) for v in values if v is not None]
    clean = [v for v in points if v == v]  # NaN != NaN
    line = ""
    if len(points) >= 2 and clean:
        low, high = min(clean), max(clean)
        span = (high - low) or 1.0
        step = (width - 2) / (len(points) - 1)
        coords = " ".join(
            f"{1 + i * step:.1f},{height - 2 - ((v if v == v else low) - low) / span * (height - 4):.1f}" for i, v in enumerate(points)
        )
        line = f'<polyline fill="none" stroke="{colour}" stroke-width="1.5" points="{coords}"/>'
    svg = f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}">{line}</svg>'
    label = "sparkline of the last hour" if line else "sparkline: no data"
    encoded = base64.b64encode(svg.encode()).decode()
    return f'<img src="data:image/svg+xml;base64,{encoded}" width="{width}" height="{height}" alt="{label}">'


def bars_html(labels: list[str], values: list[float], unit: str, axis: str) -> str:
    """Horizontal bars, each with its label and value, as one HTML element for ``st.html``.
    A handful of categories needs no chart library: the Overview's four Vega views cost the
    browser ~0.9 s of CPU per first render (loading and starting Vega), more than the rest
    of the page."""
    numbers = [0.0 if v is None or v != v else float(v) for v in values]
    top = max(numbers, default=0.0) or 1.0
    rows = [
        f'<div style="display:flex;align-items:center;gap:8px;margin:3px 0">'
        f'<span style="flex:0 0 30%;text-align:right;overflow:hidden;text-overflow:ellipsis;white-space:nowrap">{escape(str(label))}</span>'
        f'<span style="flex:1 1 auto;display:flex;align-items:center;gap:6px">'
        f'<span style="display:inline-block;height:18px;width:{max(number, 0) / top * 85:.1f}%;background:#1f77b4"></span>'
        f'<span>{escape(data.format_value(value, unit))}</span></span></div>'
        for label, number, value in zip(labels, numbers, values, strict=True)
    ]
    body = "".join(rows) if rows else f'<div style="{MUTED}">no data yet</div>'
    return f'<div role="figure" aria-label="{escape(axis)}" style="font-size:0.875rem">{body}<div style="{MUTED};text-align:right">{escape(axis)}</div></div>'


def graph_html(dot_source: str) -> str | None:
    """A Graphviz graph drawn on the server (Graphviz's ``dot``, which ``make`` installs) as
    an SVG image for ``st.html``; None without ``dot``. ``st.graphviz_chart`` lays the graph
    out in the browser (Graphviz compiled to WebAssembly): ~1.4 s of the browser's CPU per
    first render of the Lineage page, against ~20 ms for ``dot`` here."""
    import base64

    svg = _dot_svg(dot_source)
    if svg is None:
        return None
    encoded = base64.b64encode(svg).decode()
    return f'<img src="data:image/svg+xml;base64,{encoded}" style="width:100%;height:auto" alt="lineage graph">'


@lru_cache(maxsize=8)  # the graph changes only when a table's version (a label) does
def _dot_svg(dot_source: str) -> bytes | None:
    import shutil
    import subprocess

    executable = shutil.which("dot")
    if executable is None:
        return None
    drawn = subprocess.run([executable, "-Tsvg"], input=dot_source.encode(), capture_output=True, timeout=30, check=False)
    return drawn.stdout if drawn.returncode == 0 and drawn.stdout else None


def title(text: str) -> None:
    st.title(text)
    st.caption(f"environment `{settings().env}` · tables `{settings().tables.root}` · times in UTC")
