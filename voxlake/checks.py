"""Consistency checks over a written output root, for end-to-end tests and paranoid analysts.

:func:`find_violations` lists every broken invariant; :func:`check_invariants` raises
:class:`TableInvariantError` with all of them. The invariants (also in docs/tables.md):

1. ``transcripts``: every ``media_id`` appears exactly once per ``flow_run_id``; ``status`` is
   ``completed`` or ``error``; a completed row has a ``transcript_id``; an error row has ``error``.
2. Each completed transcript's ``word_count`` equals its rows in ``words`` (same ``flow_run_id``
   and ``transcript_id``), and every ``words`` row belongs to such a transcript.
3. ``words``: ``0 <= confidence <= 1``; ``start_ms < end_ms``; ``start_ms`` non-decreasing in
   ``word_index`` order within a transcript; ``word_index`` is 0..n-1.
4. ``utterances``: ``0 <= confidence <= 1`` and ``start_ms <= end_ms``.
5. ``sentences``, ``paragraphs`` and the speech-understanding tables (:data:`RESULT_TABLES`):
   every row belongs to a completed ``transcripts`` row of the same run (``flow_run_id``,
   ``media_id``, ``transcript_id``); each table's index runs 0..n-1 within a transcript;
   scores (confidence, relevance, rank, severity) are in [0, 1]; ``start_ms <= end_ms``;
   ``transcript_insights`` has exactly one row per completed transcript.
"""

from __future__ import annotations

import os
from typing import Any

import pandas as pd

from voxlake.errors import VoxlakeError
from voxlake.lake.read import read_table

__all__ = ["TableInvariantError", "check_invariants", "find_violations"]

_MAX_EXAMPLES = 5

#: The sentences, paragraphs and speech-understanding tables, with the column that numbers
#: their rows per transcript (``transcript_insights``, one row per transcript, is checked on
#: its own).
RESULT_TABLES = {
    "sentences": "sentence_index",
    "paragraphs": "paragraph_index",
    "sentiment": "sentence_index",
    "entities": "entity_index",
    "chapters": "chapter_index",
    "key_phrases": "phrase_index",
    "topics": "row_index",
    "topics_summary": "label_index",
    "content_safety": "row_index",
    "content_safety_summary": "label_index",
}
_SCORES = ("confidence", "relevance", "rank", "severity")


class TableInvariantError(VoxlakeError, AssertionError):
    """The tables under a root break at least one invariant; the message lists them all."""

    def __init__(self, root: str, violations: list[str]) -> None:
        self.violations = violations
        lines = "\n".join(f"  - {v}" for v in violations)
        super().__init__(f"{len(violations)} invariant violation(s) under {root}:\n{lines}")


def _examples(df: pd.DataFrame, columns: list[str]) -> str:
    # A few concrete rows make a failure actionable; all of them would flood the report.
    rows = df[columns].head(_MAX_EXAMPLES).to_dict("records")
    more = f" (+{len(df) - _MAX_EXAMPLES} more)" if len(df) > _MAX_EXAMPLES else ""
    return f"{rows}{more}"


def find_violations(root: str | os.PathLike[str], *, filesystem: Any | None = None) -> list[str]:
    """Every invariant violation under ``root`` (empty list: all good)."""
    out: list[str] = []
    t = read_table(root, "transcripts", filesystem=filesystem).to_pandas()
    w = read_table(
        root,
        "words",
        filesystem=filesystem,
        columns=["flow_run_id", "transcript_id", "media_id", "word_index", "start_ms", "end_ms",
                 "confidence"],
    ).to_pandas()  # fmt: skip
    u = read_table(
        root,
        "utterances",
        filesystem=filesystem,
        columns=["flow_run_id", "transcript_id", "start_ms", "end_ms", "confidence"],
    ).to_pandas()

    # 1. transcripts
    dup = t[t.duplicated(["flow_run_id", "media_id"], keep=False)]
    if len(dup):
        out.append(
            "transcripts: media_id not unique per flow_run_id: "
            + _examples(dup, ["flow_run_id", "media_id", "transcript_id"])
        )
    bad_status = t[~t["status"].isin(["completed", "error"])]
    if len(bad_status):
        out.append(
            "transcripts: status not completed|error: "
            + _examples(bad_status, ["media_id", "status"])
        )
    completed = t[t["status"] == "completed"]
    no_id = completed[completed["transcript_id"].isna()]
    if len(no_id):
        out.append(
            "transcripts: completed without transcript_id: " + _examples(no_id, ["media_id"])
        )
    errors = t[t["status"] == "error"]
    no_error = errors[errors["error"].isna() | (errors["error"] == "")]
    if len(no_error):
        out.append(
            "transcripts: error row without error text: " + _examples(no_error, ["media_id"])
        )

    # 2. word_count == rows in words, and no orphan words
    keys = ["flow_run_id", "transcript_id"]
    counts = w.groupby(keys, dropna=False).size().rename("words_rows").reset_index()
    joined = completed[[*keys, "media_id", "word_count"]].merge(counts, on=keys, how="left")
    joined["words_rows"] = joined["words_rows"].fillna(0).astype("int64")
    mismatch = joined[joined["word_count"].fillna(-1).astype("int64") != joined["words_rows"]]
    if len(mismatch):
        out.append(
            "transcripts.word_count != rows in words: "
            + _examples(mismatch, ["media_id", "transcript_id", "word_count", "words_rows"])
        )
    orphans = counts.merge(completed[keys], on=keys, how="left", indicator=True)
    orphans = orphans[orphans["_merge"] == "left_only"]
    if len(orphans):
        out.append(
            "words without a completed transcripts row: "
            + _examples(orphans, [*keys, "words_rows"])
        )

    # 3. words
    conf = w["confidence"]
    bad_conf = w[conf.notna() & ((conf < 0) | (conf > 1))]
    if len(bad_conf):
        out.append(
            "words: confidence outside [0, 1]: "
            + _examples(bad_conf, ["transcript_id", "word_index", "confidence"])
        )
    bad_span = w[~(w["start_ms"] < w["end_ms"])]
    if len(bad_span):
        out.append(
            "words: start_ms >= end_ms (or null): "
            + _examples(bad_span, ["transcript_id", "word_index", "start_ms", "end_ms"])
        )
    if len(w):
        ordered = w.sort_values([*keys, "word_index"], kind="stable")
        grouped = ordered.groupby(keys, sort=False)
        back = ordered[grouped["start_ms"].diff() < 0]
        if len(back):
            out.append(
                "words: start_ms decreases within a transcript: "
                + _examples(back, ["transcript_id", "word_index", "start_ms"])
            )
        expected = grouped.cumcount()
        gaps = ordered[ordered["word_index"].to_numpy() != expected.to_numpy()]
        if len(gaps):
            out.append(
                "words: word_index is not 0..n-1 within a transcript: "
                + _examples(gaps, ["transcript_id", "word_index"])
            )

    # 4. utterances
    uconf = u["confidence"]
    bad_u = u[(uconf.notna() & ((uconf < 0) | (uconf > 1))) | ~(u["start_ms"] <= u["end_ms"])]
    if len(bad_u):
        out.append(
            "utterances: confidence outside [0, 1] or start_ms > end_ms: "
            + _examples(bad_u, ["transcript_id", "start_ms", "end_ms", "confidence"])
        )

    # 5. speech-understanding tables
    item = ["flow_run_id", "media_id", "transcript_id"]
    done = completed[item].drop_duplicates()
    insights = read_table(root, "transcript_insights", filesystem=filesystem, columns=item)
    per_item = insights.to_pandas().value_counts(item).rename("rows").reset_index()
    both = done.merge(per_item, on=item, how="outer", indicator=True).fillna({"rows": 0})
    not_one = both[(both["rows"] != 1) | (both["_merge"] == "right_only")]
    if len(not_one):
        out.append(
            "transcript_insights: not one row per completed transcript: "
            + _examples(not_one, [*item, "rows"])
        )
    for name, index in RESULT_TABLES.items():
        out += _result_violations(root, name, index, done, filesystem)
    return out


def _result_violations(
    root: str | os.PathLike[str], name: str, index: str, done: pd.DataFrame, filesystem: Any
) -> list[str]:
    out: list[str] = []
    r = read_table(root, name, filesystem=filesystem).to_pandas()
    item = list(done.columns)
    orphans = r.merge(done, on=item, how="left", indicator=True)
    orphans = orphans[orphans["_merge"] == "left_only"]
    if len(orphans):
        out.append(f"{name} without a completed transcripts row: " + _examples(orphans, item))
    if len(r):
        expected = r.sort_values([*item, index], kind="stable").groupby(item).cumcount()
        ordered = r.sort_values([*item, index], kind="stable")
        gaps = ordered[ordered[index].to_numpy() != expected.to_numpy()]
        if len(gaps):
            out.append(
                f"{name}: {index} is not 0..n-1 within a transcript: "
                + _examples(gaps, ["transcript_id", index])
            )
    for score in (c for c in _SCORES if c in r.columns):
        bad = r[r[score].notna() & ((r[score] < 0) | (r[score] > 1))]
        if len(bad):
            out.append(
                f"{name}: {score} outside [0, 1]: " + _examples(bad, ["transcript_id", score])
            )
    if "start_ms" in r.columns:
        bad = r[r["start_ms"].notna() & r["end_ms"].notna() & (r["start_ms"] > r["end_ms"])]
        if len(bad):
            out.append(
                f"{name}: start_ms > end_ms: "
                + _examples(bad, ["transcript_id", "start_ms", "end_ms"])
            )
    return out


def check_invariants(root: str | os.PathLike[str], *, filesystem: Any | None = None) -> None:
    """Raise :class:`TableInvariantError` listing every violation under ``root``."""
    violations = find_violations(root, filesystem=filesystem)
    if violations:
        raise TableInvariantError(os.fspath(root), violations)
