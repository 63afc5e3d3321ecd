"""`voxlake query`: the predefined views, every output format, the shell on stdin, bad SQL.

The CLI runs in-process (typer's runner) for the formats, and as a real child process where
stdin, exit codes and stderr matter (the shell, bad SQL). Data: two runs written by TableSink.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from tests.integration.test_views import write_ledger, write_two_runs
from tests.support.s3_fixtures import MotoS3
from voxlake.cli import app

REPO = Path(__file__).resolve().parent.parent.parent


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("query") / "output"
    write_two_runs(out)
    write_ledger(out)
    return out


def query(*args: str) -> tuple[int, bytes, str]:
    result = CliRunner().invoke(app, ["query", *args])
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout_bytes, result.stderr


def query_process(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "voxlake.cli", "query", *args],
        input=stdin,
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize(
    ("view", "rows"),
    [
        ("transcripts", 10),  # 5 items x 2 runs
        ("words", 23),  # run 1: 4 + 3 + 2, run 2: 5 + 6 + 3
        ("utterances", 4),  # "twice", written by both runs
        ("transcripts_current", 5),  # one per media_id
        ("words_current", 16),  # 5 + 2 + 6 + 3: "twice" once
        ("utterances_current", 2),
    ],
)
def test_each_predefined_view(root: Path, view: str, rows: int) -> None:
    code, out, err = query(str(root), f"select count(*) as n from {view}", "--format", "csv")
    assert (code, err) == (0, "")
    assert out.decode().splitlines() == ['"n"', str(rows)]


def test_format_table(root: Path) -> None:
    code, out, _ = query(str(root), "select media_id, status from transcripts_current order by 1")
    text = out.decode()
    assert code == 0
    assert "│ media_id │  status   │" in text and "│ never    │ error     │" in text


def test_format_csv_keeps_types_readable(root: Path) -> None:
    sql = "select media_id, run_date, word_count from transcripts_current order by media_id"
    code, out, _ = query(str(root), sql, "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(out.decode())))
    assert code == 0
    assert rows[0] == {"media_id": "again", "run_date": "2024-05-18", "word_count": "5"}
    assert rows[-2]["word_count"] == ""  # "never": error, null word_count


def test_format_csv_with_no_rows_still_has_the_header(root: Path) -> None:
    code, out, _ = query(str(root), "select media_id from words where false", "--format", "csv")
    assert (code, out.decode().strip()) == (0, '"media_id"')


def test_format_json_lines(root: Path) -> None:
    sql = "select media_id, run_date, recorded_at, confidence from transcripts_current order by 1"
    code, out, _ = query(str(root), sql, "--format", "json")
    rows = [json.loads(line) for line in out.decode().splitlines()]
    assert code == 0 and len(rows) == 5
    assert rows[0]["run_date"] == "2024-05-18"
    assert dt.datetime.fromisoformat(rows[0]["recorded_at"]) == dt.datetime(
        2024, 5, 18, 9, 0, tzinfo=dt.UTC
    )
    assert rows[3]["confidence"] is None  # "never"


def test_format_parquet_to_a_file_and_to_stdout(root: Path, tmp_path: Path) -> None:
    target = tmp_path / "words.parquet"
    sql = "select * from words_current order by media_id, word_index"
    code, out, _ = query(str(root), sql, "--format", "parquet", "--out", str(target))
    assert (code, out) == (0, b"")
    table = pq.read_table(target)
    assert table.num_rows == 16
    assert table.schema.field("run_date").type == pa.date32()
    assert table.schema.field("word_index").type == pa.int32()
    code, out, _ = query(str(root), sql, "--format", "parquet")  # bytes on a redirected stdout
    assert code == 0 and pq.read_table(pa.BufferReader(out)).equals(table)


def test_out_file_for_text_formats(root: Path, tmp_path: Path) -> None:
    target = tmp_path / "current.json"
    code, _, _ = query(
        str(root),
        "select media_id from transcripts_current",
        "--format",
        "json",
        "--out",
        str(target),
    )
    assert code == 0 and len(target.read_text().splitlines()) == 5


def test_bad_sql_gives_duckdbs_message_and_exit_2(root: Path) -> None:
    bad = query_process(str(root), "selec media_id from transcripts")
    assert bad.returncode == 2
    assert "Parser Error" in bad.stderr and 'syntax error at or near "selec"' in bad.stderr
    assert "Traceback" not in bad.stderr and bad.stdout == ""
    missing = query_process(str(root), "select * from transcript")
    assert missing.returncode == 2 and "Catalog Error" in missing.stderr
    assert "Traceback" not in missing.stderr


def test_unknown_format_is_a_usage_error(root: Path) -> None:
    code, _, err = query(str(root), "select 1", "--format", "xml")
    assert code == 2 and "--format must be one of" in err


def test_shell_reads_statements_from_stdin(root: Path) -> None:
    script = (
        "select count(*) as items\n  from transcripts_current;\n"
        "select nonsense from;\n"  # a bad statement is reported; the session goes on
        "select count(*) as words from words_current;\n"
        "select 'no semicolon at the end' as last"
    )
    done = query_process(str(root), "--format", "csv", stdin=script)
    assert done.stdout.splitlines() == [
        '"items"',
        "5",
        '"words"',
        "16",
        '"last"',
        '"no semicolon at the end"',
    ]
    assert "Parser Error" in done.stderr and "Traceback" not in done.stderr
    assert done.returncode == 2  # a statement failed


def test_shell_exit_code_is_0_when_every_statement_ran(root: Path) -> None:
    done = query_process(str(root), stdin="select 42 as answer;\n.quit\nselect 1;\n")
    assert done.returncode == 0, done.stderr
    assert "42" in done.stdout and "answer" in done.stdout


# --- through the real CLI process: the checks before any SQL, the ledger view --------------


def test_a_path_that_is_not_an_output_root_is_an_error_as_in_report(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    for bad in (tmp_path / "outptu", empty):  # a misspelled folder; a folder with no tables
        done = query_process(str(bad), "select count(*) from transcripts")
        report = subprocess.run(
            [sys.executable, "-m", "voxlake.cli", "report", str(bad)],
            capture_output=True, text=True, cwd=REPO, timeout=120, check=False,
        )  # fmt: skip
        assert (done.returncode, done.stdout) == (2, ""), done.stdout + done.stderr
        assert done.stderr.startswith(f"error: {bad} ") and done.stderr.count("\n") == 1
        assert "--output folder of a voxlake run" in done.stderr, done.stderr
        assert (report.returncode, report.stderr) == (2, done.stderr)  # one check, one message
    assert not (tmp_path / "outptu").exists()  # nothing was created by looking


def test_out_into_a_missing_folder_creates_it(root: Path, tmp_path: Path) -> None:
    target = tmp_path / "exports" / "2024" / "current.csv"
    done = query_process(
        str(root), "select media_id from transcripts_current order by 1", "--format", "csv",
        "--out", str(target),
    )  # fmt: skip
    assert done.returncode == 0 and done.stderr == "", done.stderr
    assert target.read_text().splitlines() == ['"media_id"', *[f'"{m}"' for m in sorted(
        ["again", "kept", "late", "never", "twice"])]]  # fmt: skip


def test_ledger_view_lists_deferred_in_flight_and_failed_items(root: Path) -> None:
    sql = (
        "select media_id, status, stage, transcript_id, audio_hours from ledger "
        "where status in ('deferred', 'submitting', 'submitted', 'failed', 'job_failed') "
        "order by media_id"
    )
    done = query_process(str(root), sql, "--format", "csv")
    assert done.returncode == 0, done.stderr
    assert list(csv.reader(io.StringIO(done.stdout))) == [
        ["media_id", "status", "stage", "transcript_id", "audio_hours"],
        ["big", "deferred", "", "", "2"],
        ["flying", "submitted", "", "t-flying", ""],
        ["never", "failed", "upload", "", ""],
        ["unknown", "submitting", "", "", ""],
    ]


def test_query_and_report_read_a_root_on_s3_given_the_s3_options_as_flags(
    s3fs_fs: Any, make_bucket: Callable[[str], str], moto_s3: MotoS3
) -> None:
    bucket = make_bucket("lake")
    write_two_runs(f"{bucket}/voxlake", filesystem=s3fs_fs)
    root = f"s3://{bucket}/voxlake"
    # The endpoint given only as flags, as for MinIO/R2/Ceph (as `voxlake run` takes them).
    env = {k: v for k, v in os.environ.items() if k != "AWS_ENDPOINT_URL_S3"}
    flags = ["--s3-endpoint-url", moto_s3.endpoint_url, "--s3-region", "us-east-1"]

    def voxlake(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "voxlake.cli", *args, *flags],
            env=env, capture_output=True, text=True, cwd=REPO, timeout=120, check=False,
        )  # fmt: skip

    done = voxlake("query", root, "select count(*) as n from transcripts_current", "--format=csv")
    assert (done.returncode, done.stderr) == (0, ""), done.stderr
    assert done.stdout.splitlines() == ['"n"', "5"]
    report = voxlake("report", root)
    assert (report.returncode, report.stderr) == (0, ""), report.stderr
    assert report.stdout.strip() == f"{root}/report.html"
    assert "<html" in s3fs_fs.cat_file(f"{bucket}/voxlake/report.html").decode()


def test_a_bad_s3_option_is_one_message_naming_the_flag(root: Path) -> None:
    for command in (["query", str(root), "select 1"], ["report", str(root)]):
        result = CliRunner().invoke(app, [*command, "--s3-endpoint-url", "ftp://minio:9000"])
        assert result.exit_code == 2, result.output
        assert result.stderr.startswith("error: --s3-endpoint-url: "), result.stderr
        assert "http(s) URL" in result.stderr and result.stderr.count("\n") == 1
