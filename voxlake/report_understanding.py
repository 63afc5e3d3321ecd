"""The speech-understanding sections of ``voxlake report``: sentiment over time and by speaker,
the top entities and key phrases, and the chapters as a timeline, each only when the rows in
scope have them (docs/tables.md#speech-understanding).

Aggregated by DuckDB over the ``_current``-free history views restricted to the report's scope
(the transcripts of ``scope_t``), as the rest of the report. The page helpers (tables, figures,
PNGs) are the report's own, passed in by :func:`voxlake.analytics_report.build_report_html`:
this module does not import it, so the two do not import each other.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import duckdb

__all__ = ["Page", "understanding_sections"]

_TOP = 20
_TIMELINE_ITEMS = 12  # items drawn on the chapters timeline; the table lists the rest
_SENTIMENTS = (("POSITIVE", "#55a868"), ("NEUTRAL", "#8c8c8c"), ("NEGATIVE", "#c44e52"))
_SCOPED = ("sentiment", "entities", "key_phrases", "chapters", "transcript_insights")


@dataclass(frozen=True)
class Page:
    """The report's helpers: an HTML table, a figure with fixed margins, a figure as <img>."""

    table: Callable[[Sequence[str], Sequence[Sequence[Any]]], str]
    figure: Callable[..., Any]
    png: Callable[[Any, str], str]


def understanding_sections(con: duckdb.DuckDBPyConnection, page: Page) -> list[str]:
    """The sections for the scope's completed transcripts (``scope_t``); none without rows."""
    for name in _SCOPED:
        con.execute(
            f"CREATE OR REPLACE TEMP VIEW scope_{name} AS SELECT x.* FROM {name} AS x SEMI JOIN "
            "(SELECT media_id, transcript_id, flow_run_id FROM scope_t "
            "WHERE status = 'completed') USING (media_id, transcript_id, flow_run_id)"
        )
    out: list[str] = []
    out += _sentiment(con, page)
    out += _top(
        con,
        page,
        "Top entities",
        ["type", "entity", "mentions", "items"],
        "SELECT entity_type, text, count(*) AS n, count(DISTINCT media_id) "
        f"FROM scope_entities GROUP BY 1, 2 ORDER BY n DESC, 1, 2 LIMIT {_TOP}",
    )
    out += _top(
        con,
        page,
        "Top key phrases",
        ["key phrase", "mentions", "items", "best rank"],
        "SELECT text, sum(count) AS n, count(DISTINCT media_id), max(rank) "
        f"FROM scope_key_phrases GROUP BY 1 ORDER BY n DESC, 4 DESC, 1 LIMIT {_TOP}",
    )
    out += _chapters(con, page)
    return out


def _top(
    con: duckdb.DuckDBPyConnection, page: Page, title: str, columns: list[str], sql: str
) -> list[str]:
    rows = con.sql(sql).fetchall()
    return [f"<h2>{html.escape(title)}</h2>", page.table(columns, rows)] if rows else []


def _speaker_name() -> str:
    # The name speaker identification gave the label, when it did; the label otherwise.
    return "coalesce(i.speaker_names[s.speaker], s.speaker, '(none)')"


def _sentiment(con: duckdb.DuckDBPyConnection, page: Page) -> list[str]:
    if not con.sql("SELECT 1 FROM scope_sentiment LIMIT 1").fetchall():
        return []
    # Over time: sentences by the minute of the audio they start in, across the items.
    per_minute = con.sql(
        "SELECT (start_ms // 60000)::INTEGER AS minute, sentiment, count(*) "
        "FROM scope_sentiment WHERE start_ms IS NOT NULL GROUP BY 1, 2 ORDER BY 1"
    ).fetchall()
    minutes = sorted({m for m, _, _ in per_minute})
    counts = {(m, s): c for m, s, c in per_minute}
    fig = page.figure(7.0, 3.2)
    ax = fig.add_subplot()
    bottom = [0] * len(minutes)
    for sentiment, colour in _SENTIMENTS:
        values = [counts.get((m, sentiment), 0) for m in minutes]
        ax.bar(minutes, values, bottom=bottom, color=colour, label=sentiment.lower(), width=0.9)
        bottom = [b + v for b, v in zip(bottom, values, strict=True)]
    ax.set(title="Sentiment of sentences over the audio", xlabel="minute", ylabel="sentences")
    ax.legend(loc="upper right")
    by_speaker = con.sql(
        f"SELECT {_speaker_name()} AS who, count(*) AS n, "
        "avg((s.sentiment = 'POSITIVE')::INT), avg((s.sentiment = 'NEUTRAL')::INT), "
        "avg((s.sentiment = 'NEGATIVE')::INT), count(DISTINCT s.media_id) "
        "FROM scope_sentiment AS s LEFT JOIN scope_transcript_insights AS i "
        "USING (media_id, transcript_id, flow_run_id) "
        f"GROUP BY 1 ORDER BY n DESC, 1 LIMIT {_TOP}"
    ).fetchall()
    return [
        "<h2>Sentiment</h2>",
        page.png(fig, "Sentiment of sentences over the audio"),
        "<h3>By speaker</h3>",
        page.table(
            ["speaker", "sentences", "positive", "neutral", "negative", "items"], by_speaker
        ),
    ]


def _chapters(con: duckdb.DuckDBPyConnection, page: Page) -> list[str]:
    rows = con.sql(
        "SELECT media_id, chapter_index, start_ms, end_ms, headline FROM scope_chapters "
        "ORDER BY media_id, chapter_index"
    ).fetchall()
    if not rows:
        return []
    items = list(dict.fromkeys(r[0] for r in rows))
    drawn = items[:_TIMELINE_ITEMS]
    label_in = 0.3 + 0.08 * max(len(str(m)) for m in drawn)
    fig = page.figure(7.0, max(2.0, 0.4 * len(drawn) + 1.1), left=min(label_in, 3.0))
    ax = fig.add_subplot()
    colours = ("#4c72b0", "#dd8452")
    for row, media_id in enumerate(reversed(drawn)):
        spans = [r for r in rows if r[0] == media_id and r[2] is not None and r[3] is not None]
        ax.broken_barh(
            [(r[2] / 60000, (r[3] - r[2]) / 60000) for r in spans],
            (row - 0.4, 0.8),
            facecolors=[colours[r[1] % 2] for r in spans],
        )
    ax.set_yticks(range(len(drawn)), [str(m) for m in reversed(drawn)])
    ax.set(title="Chapters", xlabel="minute")
    more = len(items) - len(drawn)
    note = f"<p class=meta>The first {len(drawn)} items of {len(items)}.</p>" if more else ""
    table_rows = [
        (m, i + 1, _clock(s), _clock(e), h) for m, i, s, e, h in rows[: _TOP * _TIMELINE_ITEMS]
    ]
    return [
        "<h2>Chapters</h2>",
        page.png(fig, "Chapters per item"),
        note,
        page.table(["media_id", "chapter", "start", "end", "headline"], table_rows),
    ]


def _clock(ms: int | None) -> str:
    if ms is None:
        return ""
    seconds = ms // 1000
    return f"{seconds // 60}:{seconds % 60:02d}"
