"""The speech-understanding tables built from real AssemblyAI responses (the reference's
fixtures), before any response of the local server: every feature result a fixture holds lands
in its table, value for value, and a transcript without them adds no rows."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from tests.support.reference import assemblyai
from voxlake.lake import tables
from voxlake.lake.normalize import normalize
from voxlake.models import Transcript

RUN = {"flow_run_id": "run-1", "run_date": dt.date(2026, 12, 6)}
FIELDS = {"source": "/a.wav", "options_hash": "h"}
RESULT_TABLES = [t for t in tables.NESTED if t.name not in ("words", "utterances")]


def fixture(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(assemblyai("fixtures", name).read_text())
    return data


def rows(transcript: Any) -> dict[str, list[dict[str, Any]]]:
    batches = normalize([("m1", transcript, FIELDS)], **RUN)
    return {name: pa.Table.from_batches([b]).to_pylist() for name, b in batches.items()}


@pytest.mark.parametrize("as_model", [False, True], ids=["json", "model"])
def test_every_result_of_the_spec_example_lands_in_its_table(as_model: bool) -> None:
    raw = fixture("spec-examples/Transcript.json")
    got = rows(Transcript.model_validate(raw) if as_model else raw)
    for name, table_rows in got.items():
        for row in table_rows:  # the keys every table joins on
            assert (row["media_id"], row["flow_run_id"]) == ("m1", "run-1"), name
            assert row["transcript_id"] == raw["id"], name

    assert [(e["entity_type"], e["text"], e["start_ms"], e["end_ms"]) for e in got["entities"]] == [
        (e["entity_type"], e["text"], e["start"], e["end"]) for e in raw["entities"]
    ]
    assert [e["entity_index"] for e in got["entities"]] == list(range(len(raw["entities"])))

    highlights = raw["auto_highlights_result"]["results"]
    assert [(p["text"], p["count"], p["rank"]) for p in got["key_phrases"]] == [
        (h["text"], h["count"], h["rank"]) for h in highlights
    ]
    weather = next(p for p in got["key_phrases"] if p["text"] == "weather systems")
    assert weather["timestamps"] == [
        {"start_ms": 47344, "end_ms": 47958},
        {"start_ms": 205268, "end_ms": 205818},
        {"start_ms": 211588, "end_ms": 213434},
    ]

    iab = raw["iab_categories_result"]
    expected_topics = [
        (
            i,
            s["text"],
            s["timestamp"]["start"],
            s["timestamp"]["end"],
            lab["label"],
            lab["relevance"],
        )
        for i, s in enumerate(iab["results"])
        for lab in s["labels"]
    ]
    assert [
        (
            t["segment_index"],
            t["segment_text"],
            t["start_ms"],
            t["end_ms"],
            t["label"],
            t["relevance"],
        )
        for t in got["topics"]
    ] == expected_topics
    assert {t["label"]: t["relevance"] for t in got["topics_summary"]} == iab["summary"]

    safety = raw["content_safety_labels"]
    assert [
        (c["segment_index"], c["label"], c["confidence"], c["severity"])
        for c in got["content_safety"]
    ] == [
        (i, lab["label"], lab["confidence"], lab["severity"])
        for i, s in enumerate(safety["results"])
        for lab in s["labels"]
    ]
    summary = {s["label"]: s for s in got["content_safety_summary"]}
    assert set(summary) == set(safety["summary"]) | set(safety["severity_score_summary"])
    for label, severity in safety["severity_score_summary"].items():
        assert summary[label]["confidence"] == safety["summary"].get(label)
        assert (summary[label]["severity_low"], summary[label]["severity_medium"],
                summary[label]["severity_high"]) == (severity["low"], severity["medium"],
                                                     severity["high"])  # fmt: skip

    (insight,) = got["transcript_insights"]
    assert insight["language_confidence"] == raw["language_confidence"]
    assert insight["pii_redacted"] is True
    assert insight["pii_policies"] == raw["redact_pii_policies"]
    assert insight["pii_substitution"] == raw["redact_pii_sub"]
    assert insight["summary"] is None and insight["translated_texts"] is None
    # Not in this response: no rows, and the tables still have their schemas.
    assert got["sentiment"] == [] and got["chapters"] == []


def test_unavailable_results_of_the_go_sdk_fixture_add_no_rows() -> None:
    raw = fixture("go-sdk/completed.json")
    assert raw["content_safety_labels"]["status"] == "unavailable"
    got = rows(raw)
    for table in RESULT_TABLES:
        if table.name != "transcript_insights":
            assert got[table.name] == [], table.name
    (insight,) = got["transcript_insights"]
    assert insight["pii_redacted"] is False and insight["pii_policies"] is None


def test_transcript_level_results_and_the_local_servers_shapes() -> None:
    # The fields no fixture holds, in the shapes of the OpenAPI spec (and of the local server).
    raw = fixture("go-sdk/completed.json") | {
        "summary": "- smoke\n- air quality",
        "summary_type": "bullets",
        "translated_texts": {"es": "Humo", "de": "Rauch"},
        "speech_understanding": {
            "request": {"speaker_identification": {"speaker_type": "name"}},
            "response": {"speaker_identification": {"mapping": {"A": "Ana"}, "status": "success"}},
        },
        "sentiment_analysis_results": [
            {"text": "Good.", "start": 10, "end": 90, "sentiment": "POSITIVE",
             "confidence": 0.9, "speaker": "A", "channel": None},
        ],
        "chapters": [
            {"start": 0, "end": 900, "headline": "H", "gist": "G", "summary": "S"},
        ],
    }  # fmt: skip
    got = rows(raw)
    (insight,) = got["transcript_insights"]
    assert insight["summary"] == raw["summary"] and insight["summary_type"] == "bullets"
    assert dict(insight["translated_texts"]) == {"es": "Humo", "de": "Rauch"}
    assert dict(insight["speaker_names"]) == {"A": "Ana"}
    assert got["sentiment"][0] | {"run_date": None} == {
        "media_id": "m1", "transcript_id": raw["id"], "sentence_index": 0, "text": "Good.",
        "start_ms": 10, "end_ms": 90, "sentiment": "POSITIVE", "confidence": 0.9,
        "speaker": "A", "channel": None, "flow_run_id": "run-1", "run_date": None,
    }  # fmt: skip
    assert [
        (c["chapter_index"], c["headline"], c["gist"], c["summary"]) for c in got["chapters"]
    ] == [(0, "H", "G", "S")]


def test_an_error_transcript_has_no_result_rows() -> None:
    raw = fixture("spec-examples/Transcript.json") | {"status": "error", "error": "bad audio"}
    got = rows(raw)
    for table in RESULT_TABLES:
        assert got[table.name] == [], table.name


def test_check_invariants_covers_the_result_tables(tmp_path: Path) -> None:
    from voxlake.checks import RESULT_TABLES, find_violations
    from voxlake.lake.writer import DatasetWriter, TableSink

    assert set(RESULT_TABLES) | {"words", "utterances", "transcript_insights"} == {
        t.name for t in tables.NESTED
    }
    raw = fixture("spec-examples/Transcript.json")
    with TableSink(tmp_path, **RUN) as sink:
        sink.add("m1", raw, **FIELDS)
    assert find_violations(tmp_path) == []

    # Rows of a transcript no transcripts row commits (a crash between the two), and a score
    # out of range: each named.
    bad = normalize([("m2", raw | {"id": "t-orphan"}, FIELDS)], **RUN)["entities"]
    phrases = normalize([("m1", raw, FIELDS)], **RUN)["key_phrases"]
    phrases = phrases.set_column(
        phrases.schema.get_field_index("rank"), "rank", pa.array([1.5] * phrases.num_rows)
    )
    for name, batch in (("entities", bad), ("key_phrases", phrases)):
        with DatasetWriter(tmp_path, name, flow_run_id="run-1") as writer:
            writer.write(batch)
    found = find_violations(tmp_path)
    assert any(v.startswith("entities without a completed transcripts row") for v in found), found
    assert any(v.startswith("key_phrases: rank outside [0, 1]") for v in found), found
    assert any(v.startswith("key_phrases: phrase_index is not 0..n-1") for v in found), found


def test_result_views_read_lists_structs_and_maps_locally_and_on_s3(
    tmp_path: Path, s3fs_fs: Any, make_bucket: Callable[[str], str]
) -> None:
    from voxlake.lake.views import connect
    from voxlake.lake.writer import TableSink

    raw = fixture("spec-examples/Transcript.json") | {"translated_texts": {"es": "Humo"}}
    bucket = make_bucket("lake")
    with TableSink(f"{bucket}/voxlake", filesystem=s3fs_fs, **RUN) as sink:
        sink.add("m1", raw, **FIELDS)
    with TableSink(tmp_path, **RUN) as sink:
        sink.add("m1", raw, **FIELDS)
    for root in (str(tmp_path), f"s3://{bucket}/voxlake"):  # DuckDB's reader; Arrow datasets
        con = connect(root)
        (phrase,) = con.sql(
            "SELECT count, timestamps[3].end_ms, len(timestamps) FROM key_phrases_current "
            "WHERE text = 'weather systems'"
        ).fetchall()
        assert phrase == (3, 213434, 3), root
        insight = con.sql(
            "SELECT pii_policies, translated_texts['es'] FROM transcript_insights_current"
        ).fetchall()
        assert insight == [(raw["redact_pii_policies"], "Humo")], root
        counts = con.sql(
            "SELECT (SELECT count(*) FROM topics_current), (SELECT count(*) FROM sentiment)"
        ).fetchall()
        assert counts == [
            (sum(len(s["labels"]) for s in raw["iab_categories_result"]["results"]), 0)
        ]


def test_a_malformed_result_fails_its_item_alone(tmp_path: Path) -> None:
    from voxlake.lake.read import read_table
    from voxlake.lake.writer import TableSink

    good = fixture("spec-examples/Transcript.json")
    bad = good | {"id": "t-bad", "auto_highlights_result": {"results": ["not an object"]}}
    with TableSink(tmp_path, **RUN) as sink:
        errors = sink.add_many([("good", good, FIELDS), ("bad", bad, FIELDS)])
    assert errors[0] is None
    assert isinstance(errors[1], ValueError)
    assert "auto_highlights_result is not a list of objects" in str(errors[1])
    for name in ("transcripts", "key_phrases", "entities"):  # nothing of the bad item
        assert set(read_table(tmp_path, name).column("media_id").to_pylist()) == {"good"}, name


def test_a_channel_given_as_a_number_is_stored_as_text() -> None:
    sentence = {"text": "Hi.", "start": 0, "end": 500, "sentiment": "NEUTRAL", "channel": 2}
    raw = fixture("go-sdk/completed.json") | {"sentiment_analysis_results": [sentence]}
    (row,) = rows(raw)["sentiment"]
    assert row["channel"] == "2" and row["text"] == "Hi."
