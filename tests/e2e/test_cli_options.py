"""Every AssemblyAI transcription option, through the real `voxlake run`: per manifest row (a
column per option), as a run default (``--option NAME=VALUE``), checked before anything is
uploaded, in the options hash, and in the bill.

Input errors stop the command before any server starts (no AssemblyAI API configured, a Prefect
API that refuses connections: see tests/e2e/test_cli_inputs.py). Each such test makes every mistake
at once: the run reports them all in one message, and one process is all it costs.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.test_cli_inputs import assert_one_input_error, clip
from tests.support.clikit import ServeLocal, clean_env, run_env, voxlake_run


@pytest.fixture
def no_servers() -> Iterator[dict[str, str]]:
    with socket.socket() as sock:  # bound, never listening: a Prefect API that refuses
        sock.bind(("127.0.0.1", 0))
        yield clean_env(PREFECT_API_URL=f"http://127.0.0.1:{sock.getsockname()[1]}/api")


def test_bad_option_columns_fail_before_any_upload_naming_row_option_and_fix(
    tmp_path: Path, no_servers: dict[str, str]
) -> None:
    clip(tmp_path / "a.wav")
    clip(tmp_path / "b.wav", seed=1)
    manifest = tmp_path / "list.csv"
    manifest.write_text(
        "source,sentiment_analysis,sentimen_analysis,entity_detection,content_safety_confidence,"
        "redact_pii_policies,speaker_options,webhook_url\n"
        'a.wav,true,true,maybe,10,"person_name, phone_numbr","{""max_speakers"": 3}",'
        "https://example.com/hook\n"
        "b.wav,false,,,,,,\n"
    )

    done = voxlake_run([str(manifest), "--output", str(tmp_path / "out")], no_servers)

    assert_one_input_error(
        done,
        # an unknown option, with a suggestion
        "row 1, column sentimen_analysis: unknown column — did you mean 'sentiment_analysis'?",
        # a wrong type
        "row 2, column entity_detection: 'maybe' is not valid (Input should be a valid boolean",
        # out of range
        "row 2, column content_safety_confidence: '10' is not valid (Input should be greater "
        "than or equal to 25) — write a whole number from 25 to 100",
        # not in the enumeration
        "row 2, column redact_pii_policies: redact_pii_policies[1]: 'phone_numbr' is not valid "
        "(not one of the values AssemblyAI accepts) — did you mean 'phone_number'?",
        # a nested option, as JSON in a CSV cell
        "row 2, column speaker_options: speaker_options.max_speakers: unknown key — did you "
        "mean 'max_speakers_expected'?",
        # webhooks are the run's
        "row 1, column webhook_url: not a manifest column — webhooks are not a transcription "
        "option",
    )
    assert "row 3" not in done.stderr  # row 3 (b.wav) is fine
    assert not (tmp_path / "out").exists()


def test_bad_option_flags_fail_before_any_upload_naming_the_option_and_fix(
    tmp_path: Path, no_servers: dict[str, str]
) -> None:
    clip(tmp_path / "a.wav")
    flags = [
        "sentiment_analysis=true",  # fine
        "sentimen_analysis=true",
        "auto_highlights=often",
        "temperature=1.5",
        "redact_pii_sub=hashh",
        'speech_understanding={"request": {"translation": {}}}',
        "webhook_url=https://example.com/hook",
    ]

    args = [str(tmp_path / "a.wav"), "--output", str(tmp_path / "out")]
    done = voxlake_run([*args, *(f"--option={flag}" for flag in flags)], no_servers)

    assert_one_input_error(
        done,
        "option sentimen_analysis: unknown option — did you mean 'sentiment_analysis'?",
        "option auto_highlights: 'often' is not valid",
        "option temperature: 1.5 is not valid (Input should be less than or equal to 1) — "
        "write a number from 0 to 1",
        "option redact_pii_sub: 'hashh' is not valid (Input should be 'entity_name' or 'hash') "
        "— did you mean 'hash'?",
        "speech_understanding.request.translation.target_languages is missing — add it",
        "option webhook_url: unknown option — webhooks are not a transcription option",
    )
    assert "sentiment_analysis: " not in done.stderr  # the good one
    assert not (tmp_path / "out").exists()


def test_an_option_flag_without_a_value_is_a_usage_error(
    tmp_path: Path, no_servers: dict[str, str]
) -> None:
    clip(tmp_path / "a.wav")

    args = [str(tmp_path / "a.wav"), "--output", str(tmp_path / "out")]
    done = voxlake_run([*args, "--option", "sentiment_analysis"], no_servers)

    assert done.returncode == 2, done.stdout + done.stderr
    assert "is not NAME=VALUE" in done.stderr and "Traceback" not in done.stderr


# --- against `voxlake serve-local` and the suite's Prefect API ---------------------------------


@pytest.mark.slow
def test_changing_one_rows_feature_re_transcribes_that_item_only_and_prices_it(
    tmp_path: Path,
) -> None:
    for i, name in enumerate(("a", "b", "c")):
        clip(tmp_path / f"{name}.wav", seconds=1.0, seed=i)
    manifest, out = tmp_path / "list.csv", tmp_path / "out"
    manifest.write_text("source,speaker_labels\na.wav,true\nb.wav,true\nc.wav,false\n")
    server = ServeLocal(tmp_path)
    try:
        env = run_env(server)
        first = voxlake_run([str(manifest), "--output", str(out)], env)
        assert first.returncode == 0, first.stdout + first.stderr
        assert server.submissions() == 3

        # b asks for chapters (deprecated, still billed) and at most two speakers (a nested
        # option, JSON in its cell); a writes out punctuate=true, AssemblyAI's default: the
        # same request, so the same options hash.
        manifest.write_text(
            "source,speaker_labels,punctuate,auto_chapters,speaker_options\n"
            "a.wav,true,true,,\n"
            'b.wav,true,,true,"{""max_speakers_expected"": 2}"\n'
            "c.wav,false,,,\n"
        )
        dry = voxlake_run([str(manifest), "--output", str(out), "--dry-run"], env)
        assert dry.returncode == 0, dry.stdout + dry.stderr
        assert "would submit 1 items (1 new, 0 retried)" in dry.stdout, dry.stdout
        assert "skip 2 done" in dry.stdout, dry.stdout
        # b's features, priced at the list prices (voxlake/data/prices.json), b's hours only.
        assert "  + auto_chapters: 0.000 h x $0.08/h = $0.00" in dry.stdout, dry.stdout
        assert "  + speaker_labels: 0.000 h x $0.02/h = $0.00" in dry.stdout, dry.stdout
        assert server.submissions() == 3

        second = voxlake_run([str(manifest), "--output", str(out)], env)
        output = second.stdout + second.stderr
        assert second.returncode == 0, output
        assert server.submissions() == 4 and len(server.jobs()) == 4
        assert "1/1 completed" in second.stdout, output
        # The deprecated option: one warning per run (the dry run's own, and this one's).
        assert output.count("deprecated options requested (auto_chapters: deprecated by") == 1
        assert "LLM Gateway" in output
        assert "  + auto_chapters: 0.000 h x $0.08/h = $0.00" in second.stdout, output
    finally:
        server.stop()


def test_each_requested_feature_is_priced_by_the_table_which_a_user_overrides(
    tmp_path: Path,
) -> None:
    import json

    from voxlake.estimate import Estimate, load_prices, requested_features
    from voxlake.manifest import MediaItem, SourceKind, TranscriptionOptions

    options = TranscriptionOptions(
        speech_models=["universal-3-pro"],
        sentiment_analysis=True,
        punctuate=True,  # AssemblyAI's default: no feature
        multichannel=True,  # a feature without a list price: adds nothing
        keyterms_prompt=["Prefect"],
        speech_understanding={"request": {"translation": {"target_languages": ["es"]}}},
    )
    assert requested_features(options) == [
        "keyterms_prompt",
        "multichannel",
        "sentiment_analysis",
        "translation",
    ]
    table = tmp_path / "prices.json"
    table.write_text(json.dumps({"sentiment_analysis": 0.5}))
    estimate = Estimate(prices_usd_per_hour=load_prices(str(table)))
    item = MediaItem("a.wav", str(tmp_path / "a.wav"), SourceKind.local, options, 1)
    estimate.add_submission(item, 2 * 3600.0)
    estimate.add_submission(item, None)  # unknown duration: counted apart, not priced
    estimate.price()

    assert estimate.bill_lines() == [
        "  universal-3-pro: 2.000 h x $0.21/h = $0.42",
        "  + keyterms_prompt: 2.000 h x $0.05/h = $0.10",
        "  + sentiment_analysis: 2.000 h x $0.50/h = $1.00",  # the user's price
        "  + translation: 2.000 h x $0.06/h = $0.12",
        "estimated cost $1.64 (list prices; --price-table overrides)",
    ]
