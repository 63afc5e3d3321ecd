"""`voxlake report` with speech-understanding results: sentiment over time and by speaker (named
by speaker identification), the top entities and key phrases, the chapters as a timeline; and
none of these sections when no item asked for them."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from tests.e2e.test_analytics import section
from voxlake.cli import app
from voxlake.lake.writer import TableSink


def call(tid: str, minutes: int) -> dict[str, Any]:
    moods = ("POSITIVE", "NEGATIVE", "NEUTRAL")
    sentences = [
        {"text": f"Sentence {i}.", "start": 30_000 * i, "end": 30_000 * i + 20_000,
         "sentiment": moods[i % 3], "confidence": 0.8, "speaker": "AB"[i % 2]}
        for i in range(2 * minutes)
    ]  # fmt: skip
    return {
        "id": tid,
        "status": "completed",
        "text": " ".join(s["text"] for s in sentences),
        "words": [{"text": "Sentence", "start": 0, "end": 500, "confidence": 0.9}],
        "confidence": 0.9,
        "audio_duration": 60 * minutes,
        "sentiment_analysis_results": sentences,
        "entities": [
            {"entity_type": "location", "text": "Boston", "start": 100, "end": 400},
            {"entity_type": "person_name", "text": "Sarah Connor", "start": 500, "end": 900},
        ],
        "auto_highlights_result": {
            "status": "success",
            "results": [
                {
                    "text": "card payment",
                    "count": 3,
                    "rank": 0.9,
                    "timestamps": [{"start": 0, "end": 500}],
                }
            ],
        },
        "chapters": [
            {
                "start": 0,
                "end": 60_000 * minutes // 2,
                "headline": "The card was declined.",
                "gist": "card",
                "summary": "...",
            },
            {
                "start": 60_000 * minutes // 2,
                "end": 60_000 * minutes,
                "headline": "A refund is promised.",
                "gist": "refund",
                "summary": "...",
            },
        ],
        "speech_understanding": {
            "response": {"speaker_identification": {"mapping": {"A": "Sarah Connor"}}}
        },
    }


def report(root: Path) -> str:
    result = CliRunner().invoke(app, ["report", str(root)])
    assert result.exit_code == 0, result.output
    return Path(result.stdout.strip()).read_text()


def test_the_report_shows_the_understanding_results(tmp_path: Path) -> None:
    root = tmp_path / "out"
    with TableSink(root, flow_run_id="run-1", run_date=dt.date(2026, 12, 6)) as sink:
        for i, minutes in enumerate((4, 6)):
            sink.add(f"call-{i}", call(f"t{i}", minutes), source=f"/c{i}.wav", options_hash="h")
    page = report(root)

    sentiment = section(page, "Sentiment")
    assert 'alt="Sentiment of sentences over the audio"' in sentiment
    # By speaker: A under the name speaker identification gave it, B under its label.
    assert "<td>Sarah Connor</td><td>10</td>" in sentiment
    assert "<td>B</td><td>10</td>" in sentiment
    entities = section(page, "Top entities")
    assert "<td>location</td><td>Boston</td><td>2</td><td>2</td>" in entities
    phrases = section(page, "Top key phrases")
    assert "<td>card payment</td><td>6</td><td>2</td><td>0.900</td>" in phrases
    chapters = section(page, "Chapters")
    assert 'alt="Chapters per item"' in chapters
    assert "<td>call-1</td><td>2</td><td>3:00</td><td>6:00</td><td>A refund is promised.</td>" in (
        chapters
    )


def test_no_understanding_sections_without_results(tmp_path: Path) -> None:
    root = tmp_path / "out"
    plain = {k: v for k, v in call("t0", 2).items() if k in ("id", "status", "text", "words")}
    with TableSink(root, flow_run_id="run-1", run_date=dt.date(2026, 12, 6)) as sink:
        sink.add("call-0", plain, source="/c0.wav", options_hash="h")
    page = report(root)
    for title in ("Sentiment", "Top entities", "Top key phrases", "Chapters"):
        assert f"<h2>{title}</h2>" not in page
