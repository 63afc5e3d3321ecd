"""``voxlake report``: a self-contained static HTML report of one run or a range of run dates.

Everything is aggregated by DuckDB over the views of :mod:`voxlake.lake.views` (histograms are
binned in SQL), so only small results reach Python: a report over millions of words costs a few
seconds and little memory (benchmarks/report_scale.py). Charts are matplotlib figures rendered
with the Agg backend to PNG and inlined as base64 ``data:`` URLs; the page has no script, no
stylesheet and no font to fetch.

Scope: by default every item's current outcome under the root (``transcripts_current``: one row
per ``media_id``, whichever run wrote it); ``run_id`` narrows it to one run (a run's own report,
``<root>/reports/<run id>.html``, is that); ``since``/``until`` on ``run_date`` take the runs of
a date range. A range counts every run's rows in it (how the runs went), so an item
transcribed by two runs counts twice; word error rates use each item's latest completed row in
scope.

Confidence figures (means, histogram, lowest items) count only transcripts with words: a clip
of silence completes with no words and a confidence of 0 that says nothing about recognition;
the report says how many there were instead. Costs are estimates from the list prices of
:data:`voxlake.estimate.DEFAULT_PRICES_USD_PER_HOUR`, by the speech model AssemblyAI reports.
"""

from __future__ import annotations

import base64
import csv
import datetime as dt
import html
import io
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb

from voxlake.errors import VoxlakeError
from voxlake.estimate import DEFAULT_PRICES_USD_PER_HOUR
from voxlake.lake.root import OutputRoot
from voxlake.lake.views import NotAnOutputRootError, check_output_root, connect
from voxlake.report_understanding import Page, understanding_sections
from voxlake.storage import S3Options

__all__ = ["ReportError", "build_report_html", "normalise", "reference_texts", "write_report"]

_BINS = 20  # confidence histogram bins of 0.05
_TOP = 20
_NOT_WORD = re.compile(r"[^a-z0-9' ]+")


class ReportError(VoxlakeError):
    """The report cannot be made (unknown run, nothing in scope, unreadable references)."""


def normalise(text: str) -> str:
    """Lower case, no punctuation (apostrophes kept: "it's" is one word), single spaces: how
    transcripts and references are compared for word error rates."""
    return " ".join(_NOT_WORD.sub(" ", text.lower().replace("-", " ")).split())


def reference_texts(manifest: str | os.PathLike[str]) -> dict[str, str]:
    """``media_id -> reference text`` from a CSV manifest: its ``reference`` column, or else the
    ``<clip>.ref.txt`` file beside each ``source`` (as the demo corpus in data/ has)."""
    path = Path(manifest)
    try:
        with path.open(newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
    except OSError as exc:
        raise ReportError(f"references: cannot read {path}: {exc}") from None
    out: dict[str, str] = {}
    for i, row in enumerate(rows, start=2):  # row 1 is the header
        media_id = (row.get("media_id") or "").strip()
        if not media_id:
            raise ReportError(f"references: {path} row {i} has no media_id")
        if (row.get("reference") or "").strip():
            out[media_id] = row["reference"]
        elif row.get("source"):
            source = (path.parent / row["source"]).resolve()
            ref = source.with_name(source.stem + ".ref.txt")
            if ref.is_file():
                out[media_id] = ref.read_text(encoding="utf-8")
    return out


# --- scope ------------------------------------------------------------------------------------


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


@dataclass(frozen=True)
class Scope:
    title: str  # what a person reads first: the root, or when the run was
    about: str  # one line under the title: what the figures count
    rows: str  # SQL relation of the transcripts rows in scope


def _scope(
    con: duckdb.DuckDBPyConnection,
    run_id: str | None,
    since: str | None,
    until: str | None,
    root_label: str,
) -> Scope:
    if run_id and (since or until):
        raise ReportError("give --run-id or --since/--until, not both")
    if since or until:
        try:
            first = dt.date.fromisoformat(since) if since else dt.date.min
            last = dt.date.fromisoformat(until) if until else dt.date.max
        except ValueError as exc:
            raise ReportError(f"--since/--until: {exc}") from None
        if first > last:
            raise ReportError(f"--since {since} is after --until {until}")
        return Scope(
            f"runs from {since or 'the first'} to {until or 'the last'}",
            "Every run's rows with a run_date in the range: an item two runs worked on counts "
            "twice.",
            f"(SELECT * FROM transcripts WHERE run_date BETWEEN DATE '{first}' AND DATE '{last}')",
        )
    if run_id is None:
        if con.sql("SELECT count(*) FROM transcripts_current").fetchall() == [(0,)]:
            raise ReportError("no transcripts rows under this output root yet")
        return Scope(
            root_label,
            "The current outcome of every item under this output root (one row per media_id, "
            "from whichever run wrote it last: transcripts_current).",
            "transcripts_current",
        )
    rows = f"(SELECT * FROM transcripts WHERE flow_run_id = {_literal(run_id)})"
    started = con.sql(f"SELECT min(recorded_at) FROM {rows}").fetchall()[0][0]
    if started is None:
        raise ReportError(f"no transcripts rows for flow run {run_id}")
    return Scope(
        f"run of {started:%Y-%m-%d %H:%M} UTC",
        f"The items flow run {run_id} worked on, under {root_label}.",
        rows,
    )


# --- charts -----------------------------------------------------------------------------------


def preload() -> None:
    """Import matplotlib and draw one throwaway chart: the imports, the font cache and the
    renderer are then ready (a run calls this while it waits for its last jobs)."""
    fig = _figure()
    fig.add_subplot().set_title("warm-up")
    fig.savefig(io.BytesIO(), format="png")


_TOP_IN, _RIGHT_IN = 0.35, 0.2  # inches above the axes for the title, and to their right


def _figure(width: float = 7.0, height: float = 3.0, *, left: float = 0.85,
            bottom: float = 0.55, gap: float = 0.0) -> Any:  # fmt: skip
    """A figure whose axes leave ``left`` and ``bottom`` inches for labels (``_TOP_IN`` above
    for the title, ``_RIGHT_IN`` on the right) and ``gap`` inches between stacked axes.

    Fixed margins instead of a layout engine: constrained layout draws every chart twice and
    measured half of a run's report time (~0.35 s of 0.8 s for four charts). The charts' labels
    are known (short titles, counts, dates), so the margins can be too.
    """
    import matplotlib

    matplotlib.use("Agg")  # no display, no GUI toolkit: works on any server
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    axes_height = (height - bottom - _TOP_IN - gap) / 2  # each of two stacked axes
    fig.subplots_adjust(
        left=left / width,
        right=1 - _RIGHT_IN / width,
        bottom=bottom / height,
        top=1 - _TOP_IN / height,
        hspace=gap / axes_height if gap else None,  # matplotlib: a fraction of an axes' height
    )
    return fig


def _png(fig: Any, alt: str) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    data = base64.b64encode(buf.getvalue()).decode("ascii")
    return f'<img class="chart" alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def _histogram(counts: dict[int, int], title: str, xlabel: str) -> str:
    fig = _figure()
    ax = fig.add_subplot()
    width = 1 / _BINS
    lefts = [b * width for b in range(_BINS)]
    ax.bar(lefts, [counts.get(b, 0) for b in range(_BINS)], width=width, align="edge",
           color=_BLUE, edgecolor="white")  # fmt: skip
    ax.set(title=title, xlabel=xlabel, ylabel="count", xlim=(0, 1))
    return _png(fig, title)


# What a colour means, the same in every chart: completed green, error red, neutral blue.
_GREEN, _RED, _BLUE = "#55a868", "#c44e52", "#4c72b0"
_STATUS_COLOURS = {"completed": _GREEN, "error": _RED}


def _bars(
    labels: Sequence[str],
    values: Sequence[float],
    title: str,
    ylabel: str,
    colours: Sequence[str] | None = None,
) -> str:
    # ~0.08 in per character of a 10-pt label, and room for the tick marks.
    left = 0.3 + 0.08 * max((len(label) for label in labels), default=1)
    fig = _figure(7.0, max(2.0, 0.35 * len(labels) + 1), left=min(left, 3.0))
    ax = fig.add_subplot()
    colour: Any = list(colours)[::-1] if colours is not None else _BLUE
    ax.barh(list(labels)[::-1], list(values)[::-1], color=colour)
    ax.set(title=title, xlabel=ylabel)
    return _png(fig, title)


def _per_day(rows: list[tuple[Any, ...]]) -> str:
    days = [r[0].isoformat() for r in rows]
    fig = _figure(7.0, 4.5, bottom=0.95, gap=0.45)  # dates at 45 degrees below the lower axes
    hours_ax, items_ax = fig.subplots(2, 1, sharex=True)
    hours_ax.bar(days, [r[1] for r in rows], color=_BLUE)
    hours_ax.set(title="Audio hours transcribed per day (run_date)", ylabel="hours")
    completed, failed = [r[2] for r in rows], [r[3] for r in rows]
    items_ax.bar(days, completed, color=_GREEN, label="completed")
    items_ax.bar(days, failed, bottom=completed, color=_RED, label="error")
    items_ax.set(title="Items per day", ylabel="items")
    items_ax.legend(loc="upper left")
    items_ax.tick_params(axis="x", labelrotation=45)
    return _png(fig, "Audio hours and items per day")


# --- HTML -------------------------------------------------------------------------------------


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.3f}"
    return html.escape(str(value))


def _table(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    if not rows:
        return "<p class=none>None.</p>"
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{_cell(v)}</td>" for v in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


_STYLE = """
body { font-family: sans-serif; margin: 2em auto; max-width: 960px; color: #222; }
h1 { font-size: 1.6em; } h2 { font-size: 1.2em; margin-top: 2em; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; font-size: 0.9em; margin: 0.5em 0; }
th, td { border: 1px solid #ddd; padding: 0.2em 0.6em; text-align: left; vertical-align: top; }
th { background: #f3f3f3; } td.num { text-align: right; }
img.chart { display: block; max-width: 100%; margin: 0.5em 0; }
.none { color: #777; } .meta { color: #555; font-size: 0.9em; }
.headline { display: flex; flex-wrap: wrap; gap: 1em; margin: 1em 0; }
.figure { border: 1px solid #ddd; border-radius: 4px; padding: 0.5em 0.8em; min-width: 10em; }
.figure .value { display: block; font-size: 1.6em; font-weight: bold; }
.figure .note { display: block; color: #555; font-size: 0.85em; }
"""


def build_report_html(
    con: duckdb.DuckDBPyConnection,
    *,
    run_id: str | None = None,
    since: str | None = None,
    until: str | None = None,
    word_threshold: float = 0.5,
    references: dict[str, str] | None = None,
    root_label: str = "",
) -> str:
    """The report page, from a connection with voxlake's views
    (:func:`voxlake.lake.views.connect`)."""
    scope = _scope(con, run_id, since, until, root_label)
    con.execute(f"CREATE OR REPLACE TEMP VIEW scope_t AS SELECT * FROM {scope.rows}")
    # Words and utterances of the scope's completed rows only (the same run's rows).
    for name, view in (("scope_w", "words"), ("scope_u", "utterances")):
        con.execute(
            f"CREATE OR REPLACE TEMP VIEW {name} AS SELECT x.* FROM {view} AS x SEMI JOIN "
            "(SELECT media_id, transcript_id, flow_run_id FROM scope_t "
            "WHERE status = 'completed') USING (media_id, transcript_id, flow_run_id)"
        )
    sections: list[str] = []

    runs = con.sql(
        "SELECT flow_run_id, any_value(run_date), count(*), count(*) FILTER (status = 'error'), "
        "min(recorded_at), max(recorded_at) FROM scope_t GROUP BY 1 ORDER BY 6"
    ).fetchall()
    sections.append("<h2>Runs</h2>")
    sections.append(
        _table(["flow_run_id", "run_date", "items", "failed", "first row", "last row"], runs)
    )

    status = con.sql("SELECT status, count(*) FROM scope_t GROUP BY 1 ORDER BY 1").fetchall()
    figures = _figures(con)
    sections.append("<h2>Outcomes</h2>")
    sections.append(
        _table(
            ["measure", "value"],
            [
                *[(f"items {s}", n) for s, n in status],
                ("items", figures.items),
                ("audio hours (completed)", figures.audio_hours),
                ("mean transcript confidence (items with words)", figures.confidence),
                ("items with no words", figures.no_words),
                ("words", figures.words),
            ],
        )
    )
    sections.append(
        _bars(
            [s for s, _ in status],
            [n for _, n in status],
            "Items by status",
            "items",
            colours=[_STATUS_COLOURS.get(s, _BLUE) for s, _ in status],
        )
    )

    failures = con.sql(
        "SELECT media_id, error, transcript_id, flow_run_id FROM scope_t "
        "WHERE status = 'error' ORDER BY recorded_at, media_id LIMIT 200"
    ).fetchall()
    reasons = con.sql(
        "SELECT error, count(*) AS n FROM scope_t WHERE status = 'error' "
        f"GROUP BY 1 ORDER BY n DESC, error LIMIT {_TOP}"
    ).fetchall()
    sections.append("<h2>Failures</h2>")
    sections.append("<h3>Reasons</h3>" + _table(["reason", "items"], reasons))
    sections.append("<h3>Items (first 200)</h3>")
    sections.append(_table(["media_id", "reason", "transcript_id", "flow_run_id"], failures))

    per_day = con.sql(
        "SELECT run_date, coalesce(sum(audio_duration_s) / 3600, 0), "
        "count(*) FILTER (status = 'completed'), count(*) FILTER (status = 'error') "
        "FROM scope_t GROUP BY 1 ORDER BY 1"
    ).fetchall()
    sections.append("<h2>Audio hours per day</h2>" + _per_day(per_day))

    sections.append("<h2>Confidence</h2>")
    for view, label in (
        ("scope_t WHERE status = 'completed' AND word_count > 0", "transcripts"),
        ("scope_w", "words"),
    ):
        bins = dict(
            con.sql(
                f"SELECT least(floor(confidence * {_BINS}), {_BINS - 1})::INTEGER AS bin, "
                f"count(*) FROM {view}{' AND' if 'WHERE' in view else ' WHERE'} "
                "confidence IS NOT NULL GROUP BY 1"
            ).fetchall()
        )
        sections.append(_histogram(bins, f"Confidence of {label}", "confidence"))

    lowest = con.sql(
        "SELECT media_id, confidence, word_count, audio_duration_s, flow_run_id FROM scope_t "
        "WHERE status = 'completed' AND word_count > 0 "
        f"ORDER BY confidence NULLS FIRST, media_id LIMIT {_TOP}"
    ).fetchall()
    sections.append("<h2>Lowest-confidence items</h2>")
    sections.append(_table(["media_id", "confidence", "words", "audio s", "flow_run_id"], lowest))
    if figures.no_words:
        silent = con.sql(
            "SELECT media_id FROM scope_t WHERE status = 'completed' AND "
            f"coalesce(word_count, 0) = 0 ORDER BY media_id LIMIT {_TOP}"
        ).fetchall()
        names = ", ".join(html.escape(str(m)) for (m,) in silent)
        more = " …" if figures.no_words > len(silent) else ""
        sections.append(
            f"<p class=meta>Not counted above: {_plural(figures.no_words, 'item')} with no "
            f"words ({names}{more}).</p>"
        )

    # Words compared without case and punctuation, so "Smoke," and "smoke" are one word.
    unsure = con.sql(
        "SELECT word, below, total, below / total AS share FROM ("
        "  SELECT lower(regexp_replace(text, '[^[:alnum:]'']+', '', 'g')) AS word,"
        f"        count(*) FILTER (confidence < {float(word_threshold)!r}) AS below,"
        "        count(*) AS total"
        "  FROM scope_w GROUP BY 1"
        f") WHERE below > 0 AND word <> '' ORDER BY below DESC, word LIMIT {_TOP}"
    ).fetchall()
    sections.append(f"<h2>Words most often below confidence {word_threshold:g}</h2>")
    sections.append(_table(["word", "below", "occurrences", "share below"], unsure))

    talk = con.sql(
        "SELECT coalesce(speaker, '(none)'), sum(end_ms - start_ms) / 1000.0 AS s, "
        "count(DISTINCT media_id) FROM scope_u GROUP BY 1 ORDER BY s DESC"
    ).fetchall()
    sections.append("<h2>Talk time per speaker</h2>")
    if talk:
        sections.append(
            _bars([t[0] for t in talk], [t[1] for t in talk], "Talk time per speaker", "seconds")
        )
        sections.append(_table(["speaker", "seconds", "items"], talk))
    else:
        sections.append("<p class=none>No utterances in scope (speaker_labels was off).</p>")

    sections += understanding_sections(con, Page(table=_table, figure=_figure, png=_png))
    sections.append(_at_assemblyai(con, run_id))

    if references is not None:
        sections.append("<h2>Word error rate</h2>" + _wer_section(con, references))

    generated = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    return (
        "<!DOCTYPE html>\n<html lang=en><head><meta charset=utf-8>"
        f"<title>voxlake report: {html.escape(scope.title)}</title><style>{_STYLE}</style>"
        "</head><body>"
        f"<h1>voxlake report: {html.escape(scope.title)}</h1>"
        + _headline(figures)
        + f"<p class=meta>{html.escape(scope.about)} Generated {generated}.</p>"
        + "\n".join(sections)
        + "</body></html>\n"
    )


@dataclass(frozen=True)
class Figures:
    """The headline figures of the rows in scope."""

    items: int
    completed: int
    failed: int
    audio_hours: float  # of the completed rows
    confidence: float | None  # mean transcript confidence of completed rows with words
    with_words: int
    no_words: int  # completed with no words: in no confidence figure
    words: int
    cost_usd: float  # at list prices, of the rows whose speech model has one
    unpriced: dict[str, int]  # speech model -> completed rows with no list price


def _figures(con: duckdb.DuckDBPyConnection) -> Figures:
    (items, completed, failed, hours, confidence, with_words, no_words, words) = con.sql(
        "SELECT count(*), count(*) FILTER (status = 'completed'), "
        "count(*) FILTER (status <> 'completed'), "
        "coalesce(sum(audio_duration_s) FILTER (status = 'completed'), 0) / 3600, "
        "avg(confidence) FILTER (status = 'completed' AND word_count > 0), "
        "count(*) FILTER (status = 'completed' AND word_count > 0), "
        "count(*) FILTER (status = 'completed' AND coalesce(word_count, 0) = 0), "
        "coalesce(sum(word_count), 0) FROM scope_t"
    ).fetchall()[0]
    cost, unpriced = 0.0, {}
    for model, model_hours, n in con.sql(
        "SELECT coalesce(speech_model, 'unknown'), sum(audio_duration_s) / 3600, count(*) "
        "FROM scope_t WHERE status = 'completed' GROUP BY 1 ORDER BY 1"
    ).fetchall():
        price = DEFAULT_PRICES_USD_PER_HOUR.get(model)
        if price is None:
            unpriced[model] = n
        else:
            cost += (model_hours or 0.0) * price
    return Figures(items, completed, failed, hours, confidence, with_words, no_words, words,
                   cost, unpriced)  # fmt: skip


def _plural(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _headline(f: Figures) -> str:
    """The four figures a person reads first, above every table and chart."""
    cost_note = "at list prices"
    if f.unpriced:
        models = ", ".join(f"{m} ({_plural(n, 'item')})" for m, n in f.unpriced.items())
        cost_note += f"; no list price for {models}"
    if f.confidence is None:
        confidence, confidence_note = "n/a", "no item with words"
    else:
        confidence = f"{f.confidence:.3f}"
        confidence_note = f"over {_plural(f.with_words, 'item')} with words"
    if f.no_words:
        confidence_note += f"; {_plural(f.no_words, 'item')} had no words"
    # Nothing priced (every model unknown, as on the local server): no figure, not "$0.00".
    priced = f.completed > sum(f.unpriced.values())
    figures = [
        (str(f.items), "items", f"{f.completed} completed, {f.failed} failed"),
        (
            f"{f.audio_hours:.{2 if f.audio_hours >= 0.1 else 3}f}",
            "audio hours",
            "of completed items",
        ),
        (f"${f.cost_usd:.2f}" if priced else "n/a", "estimated cost", cost_note),
        (confidence, "mean confidence", confidence_note),
    ]
    cells = "".join(
        f"<div class=figure><span class=value>{html.escape(value)}</span> "
        f"<span class=label>{html.escape(label)}</span> "
        f"<span class=note>({html.escape(note)})</span></div>"
        for value, label, note in figures
    )
    return f"<div class=headline>{cells}</div>"


def _at_assemblyai(con: duckdb.DuckDBPyConnection, run_id: str | None) -> str:
    """How many collected transcripts were deleted at AssemblyAI and how many it still holds
    (the ledger's view ``ledger_transcripts``; docs/ledger.md)."""
    by_run = f"deleted_by_run_id = {_literal(run_id)}" if run_id else "false"
    deleted, by_this_run, held = con.sql(
        "SELECT count(deleted_at), count(*) FILTER (" + by_run + "), "
        "count(*) FILTER (deleted_at IS NULL) FROM ledger_transcripts"
    ).fetchall()[0]
    rows: list[tuple[str, int]] = [("transcripts deleted", deleted)]
    if run_id:
        rows.append(("deleted by this run", by_this_run))
    rows.append(("transcripts still held at AssemblyAI", held))
    note = (
        "<p class=meta>Every transcript this output root's ledger knows was collected; "
        "<code>voxlake purge</code> deletes those still held.</p>"
    )
    return "<h2>Transcripts at AssemblyAI</h2>" + note + _table(["measure", "value"], rows)


def _wer_section(con: duckdb.DuckDBPyConnection, references: dict[str, str]) -> str:
    import jiwer

    # Each item's latest completed row in scope; texts only for items with a reference.
    rows = con.sql(
        "SELECT media_id, text, confidence FROM scope_t WHERE status = 'completed' "
        "QUALIFY row_number() OVER (PARTITION BY media_id ORDER BY recorded_at DESC) = 1 "
        "ORDER BY media_id"
    ).fetchall()
    refs, hyps, table = [], [], []
    for media_id, text, confidence in rows:
        if media_id not in references:
            continue
        ref, hyp = normalise(references[media_id]), normalise(text or "")
        if not ref:
            continue
        refs.append(ref)
        hyps.append(hyp)
        table.append((media_id, len(ref.split()), f"{jiwer.wer(ref, hyp):.1%}", confidence))
    if not refs:
        return "<p class=none>No completed item in scope has a reference text.</p>"
    overall = jiwer.wer(refs, hyps)
    return (
        f"<p>Overall WER <b>{overall:.1%}</b> over {len(refs)} items (texts compared lower-case, "
        "without punctuation).</p>"
        + _table(["media_id", "reference words", "WER", "confidence"], table)
    )


def write_report(
    root: str | os.PathLike[str],
    *,
    out: str | os.PathLike[str] | None = None,
    run_id: str | None = None,
    since: str | None = None,
    until: str | None = None,
    word_threshold: float = 0.5,
    references: str | os.PathLike[str] | None = None,
    filesystem: Any | None = None,
    s3: S3Options | None = None,
) -> str:
    """Write the report (default ``<root>/report.html``, local or S3); returns where.

    ``s3``: the endpoint, region and profile of an ``s3://`` root and target."""
    refs = reference_texts(references) if references is not None else None
    output = OutputRoot.of(root, filesystem=filesystem, s3=s3)
    root_text = output.url
    try:
        check_output_root(output)
        con = connect(output)
    except NotAnOutputRootError as exc:
        raise ReportError(str(exc)) from None
    except (duckdb.Error, OSError) as exc:
        raise ReportError(f"cannot read the tables under {root_text}: {exc}") from None
    with con:
        try:
            page = build_report_html(
                con,
                run_id=run_id,
                since=since,
                until=until,
                word_threshold=word_threshold,
                references=refs,
                root_label=root_text,
            )
        except duckdb.Error as exc:
            raise ReportError(str(exc)) from None
    # Published like the tables (s3fs for an S3 target), into the folder that holds it.
    if out is None:
        target, parent, name = f"{root_text.rstrip('/')}/report.html", output, "report.html"
    else:
        target = os.fspath(out)
        folder, name = target.rstrip("/").rsplit("/", 1) if "/" in target else (".", target)
        parent = OutputRoot.of(folder or "/", s3=s3)
    out_path = parent.publish_bytes(name, page.encode("utf-8"))
    return target if "://" in target else out_path
