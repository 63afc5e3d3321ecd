"""`voxlake report`: what the page says for a run, a date range, references; and its errors.

Real Parquet written by TableSink (two demo-like runs, tests/test_docs_queries.py), the real
CLI; the page is checked as text here and rendered by chromium in test_report_browser.py.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.test_docs_queries import write_demo_runs
from voxlake.analytics_report import normalise, reference_texts
from voxlake.cli import app
from voxlake.emulator.harvard import H1


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


def test_default_is_the_latest_run(root: Path) -> None:
    code, path, err = report(str(root))
    assert (code, err) == (0, "")
    assert path == str(root / "report.html")
    page = Path(path).read_text()
    assert "<h1>voxlake report: latest run run-late</h1>" in page
    runs = section(page, "Runs")
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
    assert page.count("<img") == 5 and "Word error rate" not in page


def test_run_id_and_a_date_range(root: Path, tmp_path: Path) -> None:
    code, path, _ = report(str(root), "--run-id", "run-early", "--out", str(tmp_path / "a.html"))
    assert code == 0 and path == str(tmp_path / "a.html")
    assert "<td>0.400</td>" in section(Path(path).read_text(), "Lowest-confidence items")
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
    assert code == 0 and "run dates 2026-11-19 to 2026-11-20" in page
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
        (["--run-id", "no-such-run"], "no transcripts rows for flow run 'no-such-run'"),
        (["--since", "yesterday"], "--since/--until"),
        (["--run-id", "run-late", "--since", "2026-11-01"], "not both"),
        (["--references", "/nonexistent/manifest.csv"], "cannot read"),
    ],
)
def test_errors_are_messages_with_exit_2(root: Path, args: list[str], message: str) -> None:
    code, out, err = report(str(root), *args)
    assert code == 2 and out == "" and message in err and "Traceback" not in err


def test_an_empty_root_is_an_error_not_an_empty_page(tmp_path: Path) -> None:
    code, _, err = report(str(tmp_path / "nothing"))
    assert code == 2 and "no transcripts rows" in err
