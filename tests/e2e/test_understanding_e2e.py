"""Speech understanding end to end, through the real CLI: a manifest whose rows ask for every
feature runs against `voxlake serve-local` (scripted engine, real understanding methods), and
every result table has rows for every spoken item, joined on the item keys, readable with
`voxlake query` (DuckDB), pandas and pyarrow, with the invariants holding. The same holds on
the embedded default (no API configured: PocketSphinx recognises real synthesised speech,
tests/media/understanding/, made by data/make_understanding.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pyarrow.dataset as ds
import pytest

from tests.support.clikit import REPO, ServeLocal, clean_env, run_env, voxlake_run
from tests.support.understanding import CALL
from voxlake.checks import check_invariants
from voxlake.emulator.synth import write_synth_wav
from voxlake.lake import tables

FEATURES = {
    "speaker_labels": True,
    "sentiment_analysis": True,
    "entity_detection": True,
    "auto_highlights": True,
    "iab_categories": True,
    "content_safety": True,
    "redact_pii": True,
    "redact_pii_policies": ["phone_number", "email_address"],
    "redact_pii_sub": "entity_name",
    "language_detection": True,
    "speech_understanding": {
        "request": {
            "speaker_identification": {
                "speaker_type": "name",
                "known_values": ["Sarah Connor", "John Smith"],
            }
        }
    },
}
# sentences and paragraphs are fetched only with --sentences / --paragraphs (test_captions.py).
NOT_RESULTS = ("transcripts", "words", "sentences", "paragraphs")
RESULT_TABLES = [name for name in tables.TABLES if name not in NOT_RESULTS]


def query(out: Path, sql: str) -> list[dict[str, object]]:
    cmd = [sys.executable, "-m", "voxlake.cli", "query", str(out), sql, "--format", "json"]
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    return [json.loads(line) for line in done.stdout.splitlines() if line.strip()]


def test_every_feature_lands_in_its_table_for_every_spoken_item(
    tmp_path: Path,
) -> None:
    for name in ("a", "b", "c"):
        write_synth_wav(tmp_path / f"{name}.wav", CALL, 40.0, sample_rate=8000)
    # a and b: chapters; c: a summary instead (AssemblyAI refuses both at once).
    rows = [
        {"source": "a.wav", "auto_chapters": True, **FEATURES},
        {"source": "b.wav", "auto_chapters": True, **FEATURES},
        {"source": "c.wav", "summarization": True, "summary_type": "bullets", **FEATURES},
    ]
    manifest, out = tmp_path / "calls.jsonl", tmp_path / "out"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    server = ServeLocal(tmp_path)
    try:
        done = voxlake_run([str(manifest), "--output", str(out)], run_env(server), report=True)
    finally:
        server.stop()
    assert done.returncode == 0, done.stdout + done.stderr
    assert "3/3 completed" in done.stdout, done.stdout
    check_invariants(out)

    # Every current view, through `voxlake query` (DuckDB): rows per table and item.
    counts = query(
        out,
        " UNION ALL ".join(
            f"SELECT '{name}' AS tbl, media_id, count(*) AS n FROM {name}_current GROUP BY media_id"
            for name in RESULT_TABLES
        ),
    )
    found = {(c["tbl"], c["media_id"]): c["n"] for c in counts}
    for name in RESULT_TABLES:
        items = ("a.wav", "b.wav") if name == "chapters" else ("a.wav", "b.wav", "c.wav")
        for media_id in items:
            assert found.get((name, media_id), 0) > 0, (name, media_id, found)
    assert ("chapters", "c.wav") not in found

    # The results, joined on the item keys.
    (insight,) = query(
        out,
        "SELECT i.summary, i.language_confidence, i.speaker_names['A'] AS a, "
        "i.speaker_names['B'] AS b, i.pii_redacted, i.pii_policies, i.pii_substitution "
        "FROM transcript_insights_current AS i JOIN transcripts_current AS t "
        "USING (media_id, transcript_id, flow_run_id) WHERE media_id = 'c.wav'",
    )
    assert str(insight["summary"]).startswith("- ")
    assert insight["language_confidence"] == pytest.approx(0.9876)
    assert {insight["a"], insight["b"]} == {"Sarah Connor", "John Smith"}
    assert insight["pii_redacted"] is True
    assert insight["pii_policies"] == ["phone_number", "email_address"]
    assert insight["pii_substitution"] == "entity_name"

    sentiments = query(
        out,
        "SELECT sentiment, count(*) AS n FROM sentiment_current s JOIN utterances_current u "
        "ON s.media_id = u.media_id AND s.start_ms BETWEEN u.start_ms AND u.end_ms "
        "WHERE s.media_id = 'a.wav' GROUP BY sentiment",
    )
    assert {s["sentiment"] for s in sentiments} >= {"POSITIVE", "NEGATIVE"}
    entities = {
        (e["entity_type"], e["text"])
        for e in query(out, "SELECT entity_type, text FROM entities_current WHERE media_id='a.wav'")
    }
    assert ("location", "Boston") in entities and ("money_amount", "$250") in entities
    assert ("phone_number", "[PHONE_NUMBER]") in entities  # redacted by its policy
    (phrase,) = query(
        out,
        "SELECT count, len(timestamps) AS mentions, timestamps[1].start_ms AS first "
        "FROM key_phrases_current WHERE media_id = 'a.wav' AND text = 'payment'",
    )
    assert phrase["count"] == phrase["mentions"] == 2 and isinstance(phrase["first"], int)
    (banking,) = query(
        out,
        "SELECT relevance FROM topics_summary_current "
        "WHERE media_id = 'a.wav' AND label = 'PersonalFinance>Banking'",
    )
    assert banking["relevance"] == 1.0
    safety = query(
        out,
        "SELECT DISTINCT s.label FROM content_safety_current s "
        "JOIN content_safety_summary_current m USING (media_id, transcript_id, label) "
        "WHERE s.media_id = 'b.wav'",
    )
    assert {"disasters", "profanity"} <= {s["label"] for s in safety}

    # The run's report shows them.
    (page,) = [p.read_text() for p in (out / "reports").glob("*.html")]
    for title in ("Sentiment", "Top entities", "Top key phrases", "Chapters"):
        assert f"<h2>{title}</h2>" in page, title
    assert "<td>Sarah Connor</td>" in page  # a speaker by the name identification gave it

    # pandas and pyarrow on the files, with the declared schemas.
    for name in RESULT_TABLES:
        frame = pd.read_parquet(out / name)
        assert len(frame) > 0 and {"media_id", "transcript_id", "flow_run_id"} <= set(frame)
        data = ds.dataset(out / name, schema=tables.SCHEMAS[name], partitioning="hive")
        assert data.to_table().num_rows == len(frame)


SPOKEN = REPO / "tests" / "media" / "understanding"


@pytest.mark.slow
@pytest.mark.sphinx
def test_every_feature_lands_for_real_speech_on_the_embedded_default(
    tmp_path: Path,
) -> None:
    # No ASSEMBLYAI_* variable: `voxlake run` starts its embedded server (engine auto: sphinx).
    env = clean_env(XDG_CACHE_HOME=str(tmp_path / "cache"))
    out = tmp_path / "out"
    # Recognition runs at about real time on a busy 2-core machine: a generous deadline.
    done = voxlake_run([str(SPOKEN / "manifest.jsonl"), "--output", str(out)], env, timeout_s=600)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "using the embedded local AssemblyAI-compatible server" in done.stdout + done.stderr
    assert "3/3 completed" in done.stdout, done.stdout
    check_invariants(out)

    items = ("call", "news", "trip")
    (model,) = query(out, "SELECT DISTINCT speech_model FROM transcripts_current")
    assert str(model["speech_model"]).startswith("pocketsphinx-")
    counts = query(
        out,
        " UNION ALL ".join(
            f"SELECT '{name}' AS tbl, media_id, count(*) AS n FROM {name}_current GROUP BY media_id"
            for name in RESULT_TABLES
        ),
    )
    found = {(c["tbl"], c["media_id"]): c["n"] for c in counts}
    missing = [(t, m) for t in RESULT_TABLES for m in items if not found.get((t, m))]
    assert not missing, (missing, found)

    # What the clips say, as recognised: the labels their words carry, and PII redacted.
    safety = {
        (s["media_id"], s["label"])
        for s in query(out, "SELECT media_id, label FROM content_safety_summary_current")
    }
    assert {("call", "crime_violence"), ("news", "disasters"), ("trip", "alcohol")} <= safety
    sentiments = {s["sentiment"] for s in query(out, "SELECT sentiment FROM sentiment_current")}
    assert sentiments >= {"POSITIVE", "NEGATIVE"}
    entities = query(out, "SELECT media_id, entity_type, text FROM entities_current")
    redacted = {e["media_id"] for e in entities if str(e["text"]).startswith("[")}
    assert redacted == set(items), entities
    texts = {
        t["media_id"]: t["text"]
        for t in query(out, "SELECT media_id, text FROM transcripts_current")
    }
    assert "[MONEY_AMOUNT]" in texts["call"] and "[MONEY_AMOUNT]" in texts["trip"], texts
    assert "[TIME]" in texts["news"], texts
    insights = query(out, "SELECT pii_redacted FROM transcript_insights_current")
    assert [i["pii_redacted"] for i in insights] == [True, True, True]
