"""`voxlake report`: what the page says for a run, a date range, references; and its errors.

Real Parquet written by TableSink (two demo-like runs, tests/unit/test_docs_queries.py), the real
CLI; the page is checked as text here and rendered by chromium in test_report_browser.py.
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import io
import re
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.unit.test_docs_queries import write_demo_runs
from voxlake.analytics_report import normalise, reference_texts
from voxlake.cli import app
from voxlake.emulator.harvard import H1
from voxlake.lake.writer import TableSink

REPO = Path(__file__).resolve().parent.parent.parent


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("report") / "output"
    write_demo_runs(out)
    return out


def report(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, ["report", *args])
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout.strip(), result.stderr


def section(page: str, title: str) -> str:
    """The HTML from heading ``title`` to the next h2."""
    match = re.search(rf"<h2>{re.escape(title)}</h2>(.*?)(?=<h2>|</body>)", page, re.S)
    assert match, title
    return match.group(1)


def test_default_is_every_items_current_outcome(root: Path) -> None:
    code, path, err = report(str(root))
    assert (code, err) == (0, "")
    assert path == str(root / "report.html")
    page = Path(path).read_text()
    assert f"<h1>voxlake report: {root}</h1>" in page
    # Only the local server's model, which has no list price: no cost, rather than "$0.00".
    assert "n/a estimated cost (at list prices; no list price for pocketsphinx" in text_of(page)
    runs = section(page, "Runs")  # every item's current row is run-late's
    assert "run-late" in runs and "run-early" not in runs
    outcomes = section(page, "Outcomes")
    assert "<td>items completed</td><td>5</td>" in outcomes
    assert "<td>items error</td><td>2</td>" in outcomes
    failures = section(page, "Failures")
    assert "Audio duration is too short." in failures and "not-really-audio" in failures
    # Run "run-late" has confidences 0.8 (transcripts); none of run-early's 0.4 may appear.
    lowest = section(page, "Lowest-confidence items")
    assert "<td>0.800</td>" in lowest and "0.400" not in lowest
    talk = section(page, "Talk time per speaker")
    assert "<td>A</td>" in talk and "<td>B</td>" in talk and "<img" in talk
    # 5 charts and the demo's sentiment over time (tests/unit/test_understanding_report.py).
    assert page.count("<img") == 6 and "Word error rate" not in page


def test_run_id_and_a_date_range(root: Path, tmp_path: Path) -> None:
    code, path, _ = report(str(root), "--run-id", "run-early", "--out", str(tmp_path / "a.html"))
    assert code == 0 and path == str(tmp_path / "a.html")
    page = Path(path).read_text()
    assert "<h1>voxlake report: run of 2026-11-19 09:00 UTC</h1>" in page  # not its id
    assert "<td>0.400</td>" in section(page, "Lowest-confidence items")
    code, path, _ = report(
        str(root),
        "--since",
        "2026-11-19",
        "--until",
        "2026-11-20",
        "--out",
        str(tmp_path / "b.html"),
    )
    page = Path(path).read_text()
    assert code == 0 and "<h1>voxlake report: runs from 2026-11-19 to 2026-11-20</h1>" in page
    runs = section(page, "Runs")
    assert "run-early" in runs and "run-late" in runs
    assert "<td>items completed</td><td>10</td>" in section(page, "Outcomes")


def test_words_below_the_threshold(root: Path, tmp_path: Path) -> None:
    out = tmp_path / "r.html"
    code, _, _ = report(
        str(root), "--run-id", "run-early", "--word-threshold", "0.35", "--out", str(out)
    )
    words = section(out.read_text(), "Words most often below confidence 0.35")
    # run-early's word confidences are 0.30, 0.35, ...: every first word of a sentence is below.
    assert code == 0 and "<td>the</td>" in words


def test_word_error_rate_from_references(root: Path, tmp_path: Path) -> None:
    # A manifest with a reference column for two items, and one whose clip has a .ref.txt.
    media = tmp_path / "media"
    media.mkdir()
    (media / "harvard-03.ref.txt").write_text(H1[2])
    manifest = tmp_path / "manifest.csv"
    manifest.write_text(
        "source,media_id,reference\n"
        f'media/harvard-01.wav,harvard-01,"{H1[0]}"\n'
        f"media/harvard-02.wav,harvard-02,{normalise(H1[0])}\n"  # the wrong sentence
        "media/harvard-03.wav,harvard-03,\n"
    )
    assert set(reference_texts(manifest)) == {"harvard-01", "harvard-02", "harvard-03"}
    out = tmp_path / "r.html"
    code, _, err = report(str(root), "--references", str(manifest), "--out", str(out))
    assert (code, err) == (0, "")
    wer = section(out.read_text(), "Word error rate")
    assert "over 3 items" in wer
    assert "<td>harvard-01</td><td>8</td><td>0.0%</td>" in wer
    assert "<td>harvard-03</td>" in wer and "<td>harvard-02</td>" in wer


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--run-id", "no-such-run"], "no transcripts rows for flow run no-such-run"),
        (["--since", "yesterday"], "--since/--until"),
        (["--run-id", "run-late", "--since", "2026-11-01"], "not both"),
        (["--references", "/nonexistent/manifest.csv"], "cannot read"),
    ],
)
def test_errors_are_messages_with_exit_2(root: Path, args: list[str], message: str) -> None:
    code, out, err = report(str(root), *args)
    assert code == 2 and out == "" and message in err and "Traceback" not in err


def test_a_root_with_no_rows_yet_is_an_error_not_an_empty_page(tmp_path: Path) -> None:
    (tmp_path / "_ledger").mkdir()  # a run deferred everything: a root, with no rows yet
    code, _, err = report(str(tmp_path))
    assert code == 2 and "no transcripts rows" in err


# --- through the real CLI process ------------------------------------------------------------


def report_process(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "voxlake.cli", "report", *args],
        capture_output=True, text=True, cwd=REPO, timeout=120, check=False,
    )  # fmt: skip


def text_of(page: str) -> str:
    """The page's words as a reader sees them: no tags, single spaces."""
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", page)).split())


@pytest.fixture(scope="module")
def rerun_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo's two runs, then a rerun that worked on two items only: the text file again
    (failing again) and a new clip of silence (no words; an hour of it, on universal-2)."""
    out = tmp_path_factory.mktemp("rerun") / "output"
    write_demo_runs(out)
    recorded = dt.datetime(2026, 11, 21, 9, tzinfo=dt.UTC)
    with TableSink(out, flow_run_id="run-rerun", run_date=recorded.date()) as sink:
        fields = {"options_hash": "h", "recorded_at": recorded}
        sink.add("not-really-audio", None, source="/data/not-really-audio.mp3",
                 error="upload: looks like plain text, not audio or video", **fields)  # fmt: skip
        silence = {
            "id": "t-silence",
            "status": "completed",
            "text": "",
            "words": [],
            "confidence": 0.0,
            "audio_duration": 3600,
            "speech_model_used": "universal-2",
        }
        sink.add("silence", silence, source="/data/silence.wav", **fields)  # fmt: skip
    return out


def test_default_report_is_the_current_view_of_the_whole_root(rerun_root: Path) -> None:
    done = report_process(str(rerun_root))
    assert (done.returncode, done.stderr) == (0, ""), done.stderr
    page = Path(done.stdout.strip()).read_text()
    # A readable title, not a run id; every item's current outcome, not the latest run's two.
    title = re.search(r"<h1>(.*?)</h1>", page, re.S)
    assert title and "run-" not in title.group(1) and str(rerun_root) in title.group(1)
    outcomes = section(page, "Outcomes")
    assert "<td>items completed</td><td>6</td>" in outcomes  # harvard-01..05, silence
    assert "<td>items error</td><td>2</td>" in outcomes
    runs = section(page, "Runs")
    assert "run-late" in runs and "run-rerun" in runs and "run-early" not in runs


def test_headline_figures_come_first_and_confidence_counts_items_with_words(
    rerun_root: Path,
) -> None:
    done = report_process(str(rerun_root))
    assert done.returncode == 0, done.stderr
    page = Path(done.stdout.strip()).read_text()
    headline = page.split("<h1>", 1)[1].split("<h2>", 1)[0]  # before the first section
    words = text_of(headline)
    # run-late's five Harvard sentences at 0.4 s a word, then the hour of silence.
    hours = sum(0.4 * len(sentence.split()) for sentence in H1[:5]) / 3600 + 1.0
    assert "8 items (6 completed, 2 failed)" in words, words
    assert f"{hours:.2f} audio hours" in words, words
    # Priced from estimate.py's list prices: universal-2 $0.15 an hour; the local model has none.
    assert "$0.15 estimated cost" in words and "pocketsphinx" in words, words
    # run-late's transcripts have confidence 0.8; the clip of silence has no words and counts
    # in no mean (with it, 0.667).
    assert "0.800 mean confidence (over 5 items with words; 1 item had no words)" in words, words
    confidence = text_of(section(page, "Outcomes"))
    assert "mean transcript confidence (items with words) 0.800" in confidence, confidence
    assert "items with no words 1" in confidence, confidence
    assert "0.000" not in text_of(section(page, "Lowest-confidence items"))


def test_status_colours_mean_what_they_show(rerun_root: Path) -> None:
    from matplotlib.image import imread

    done = report_process(str(rerun_root))
    page = Path(done.stdout.strip()).read_text()
    found = re.search(r'alt="Items by status" src="data:image/png;base64,([^"]+)"', page)
    assert found, "no Items by status chart"
    pixels = imread(io.BytesIO(base64.b64decode(found.group(1))), format="png")
    colours = {tuple(round(float(c) * 255) for c in px[:3]) for row in pixels for px in row}
    red, green = (196, 78, 82), (85, 168, 104)  # error, completed
    assert red in colours and green in colours


def test_since_after_until_is_an_error(root: Path) -> None:
    done = report_process(str(root), "--since", "2026-11-20", "--until", "2026-11-19")
    assert done.returncode == 2 and done.stdout == "", done.stdout
    assert done.stderr == "error: --since 2026-11-20 is after --until 2026-11-19\n"
