"""voxlake.manifest: formats, validation messages with row numbers, skip mode, media_id rule."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from voxlake.errors import VoxlakeError
from voxlake.manifest import (
    MEDIA_EXTENSIONS,
    ManifestError,
    MediaItem,
    SourceKind,
    TranscriptionOptions,
    options_hash,
    read_manifest,
)


def media(root: Path, *names: str, data: bytes = b"RIFF....WAVEfmt ") -> list[Path]:
    out = []
    for name in names:
        p = root / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
        out.append(p)
    return out


def write_csv(path: Path, text: str) -> Path:
    path.write_text(text.lstrip("\n"), encoding="utf-8")
    return path


def error_lines(exc: pytest.ExceptionInfo[ManifestError]) -> list[str]:
    return [line.strip() for line in str(exc.value).splitlines()[1:]]


# --- happy paths -----------------------------------------------------------------------------


def test_csv_relative_paths_resolve_against_manifest_folder(tmp_path: Path) -> None:
    media(tmp_path / "m", "audio/a.wav", "b.mp3")
    manifest = write_csv(tmp_path / "m" / "list.csv", "source\naudio/a.wav\n./b.mp3\n")
    result = read_manifest(manifest)
    assert [i.media_id for i in result] == ["audio/a.wav", "b.mp3"]
    assert [i.source for i in result] == [
        str(tmp_path / "m" / "audio" / "a.wav"),
        str(tmp_path / "m" / "b.mp3"),
    ]
    assert all(i.kind is SourceKind.local for i in result)
    assert [i.row for i in result] == [2, 3]
    assert result.invalid == []
    assert result.path == manifest


def test_media_id_is_stable_regardless_of_cwd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    media(tmp_path / "m", "a.wav")
    manifest = write_csv(tmp_path / "m" / "list.csv", "source\na.wav\n")
    first = read_manifest(manifest).items[0].media_id
    monkeypatch.chdir(tmp_path / "m")
    assert read_manifest("list.csv").items[0].media_id == first == "a.wav"


def test_explicit_media_id_and_urls(tmp_path: Path) -> None:
    media(tmp_path, "a.wav")
    manifest = write_csv(
        tmp_path / "list.csv",
        "source,media_id\n"
        "a.wav,interview-1\n"
        "https://cdn.example.com/x/talk.mp3?X-Amz-Signature=abc#t=1,\n",
    )
    items = read_manifest(manifest).items
    assert items[0].media_id == "interview-1"
    assert items[1].kind is SourceKind.http
    # The query (presigned signature) and fragment are not part of the id; the source keeps them.
    assert items[1].media_id == "https://cdn.example.com/x/talk.mp3"
    assert items[1].source == "https://cdn.example.com/x/talk.mp3?X-Amz-Signature=abc#t=1"


def test_absolute_path_outside_manifest_folder_gets_absolute_id(tmp_path: Path) -> None:
    (outside,) = media(tmp_path / "elsewhere", "c.flac")
    (tmp_path / "m").mkdir()
    manifest = write_csv(tmp_path / "m" / "list.csv", f"source\n{outside}\n../elsewhere/c.flac\n")
    result = read_manifest(manifest, on_invalid="skip")
    # Both rows name the same file, so the second is a duplicate of the first.
    assert result.invalid[0].row == 3
    assert result.items[0].media_id == outside.as_posix()


def test_jsonl_manifest_with_options_and_line_numbers(tmp_path: Path) -> None:
    media(tmp_path, "a.wav", "b.wav")
    manifest = tmp_path / "list.jsonl"
    manifest.write_text(
        '{"source": "a.wav", "speaker_labels": true, "speakers_expected": 2}\n'
        "\n"
        '{"source": "b.wav", "keyterms_prompt": ["voxlake", "DuckDB"], "language_code": null}\n'
    )
    items = read_manifest(manifest, defaults={"language_code": "de"}).items
    assert [i.row for i in items] == [1, 3]
    assert items[0].options.speaker_labels is True
    assert items[0].options.speakers_expected == 2
    assert items[0].options.language_code == "de"
    assert items[1].options.keyterms_prompt == ("voxlake", "DuckDB")
    # null means "not set": the run default stays.
    assert items[1].options.language_code == "de"


def test_parquet_manifest(tmp_path: Path) -> None:
    media(tmp_path, "a.wav", "b.wav")
    table = pa.table(
        {
            "source": ["a.wav", "b.wav"],
            "media_id": ["A", None],
            "punctuate": [False, None],
            "speech_models": [["universal-3-pro", "universal-2"], None],
        }
    )
    pq.write_table(table, tmp_path / "list.parquet")
    items = read_manifest(tmp_path / "list.parquet").items
    assert [i.media_id for i in items] == ["A", "b.wav"]
    assert items[0].options.punctuate is False
    assert items[0].options.speech_models == ("universal-3-pro", "universal-2")
    assert items[1].options == TranscriptionOptions()


def test_format_override_and_ndjson(tmp_path: Path) -> None:
    media(tmp_path, "a.wav")
    (tmp_path / "list.txt").write_text("source\na.wav\n")
    assert len(read_manifest(tmp_path / "list.txt", format="csv")) == 1
    (tmp_path / "list.ndjson").write_text('{"source": "a.wav"}\n')
    assert len(read_manifest(tmp_path / "list.ndjson")) == 1
    with pytest.raises(
        ManifestError, match=r"neither a manifest nor a media file \(extension '\.txt'\)"
    ):
        read_manifest(tmp_path / "list.txt")


def test_directory_manifest(tmp_path: Path) -> None:
    media(tmp_path / "data", "b/two.MP3", "a/one.wav", "a/notes.txt", "a/._one.wav", ".git/x.wav")
    result = read_manifest(tmp_path / "data")
    assert [i.media_id for i in result] == ["a/one.wav", "b/two.MP3"]
    assert [i.row for i in result] == [1, 2]
    assert {"wav", "mp3", "flac", "mp4", "m4a", "webm"} <= MEDIA_EXTENSIONS


def test_glob_manifest(tmp_path: Path) -> None:
    media(tmp_path / "data", "x/a.wav", "x/y/b.wav", "c.mp3")
    result = read_manifest(f"{tmp_path}/data/**/*.wav")
    assert [i.media_id for i in result] == ["x/a.wav", "x/y/b.wav"]
    with pytest.raises(ManifestError, match="no media files found"):
        read_manifest(f"{tmp_path}/data/**/*.ogg")


def test_defaults_and_overrides(tmp_path: Path) -> None:
    media(tmp_path, "a.wav", "b.wav", "c.wav")
    manifest = write_csv(
        tmp_path / "list.csv",
        "source,speaker_labels,speech_models,keyterms_prompt,audio_start_from\n"
        "a.wav,,,,\n"
        'b.wav,yes,"universal-3-pro, universal-2","[""Prefect"", ""Parquet""]",1500\n'
        "c.wav,false,universal-2,,\n",
    )
    defaults = TranscriptionOptions(speaker_labels=True, language_code="fr")
    a, b, c = read_manifest(manifest, defaults=defaults).items
    assert a.options is defaults  # nothing overridden: the very same object
    assert b.options.speaker_labels is True
    assert b.options.speech_models == ("universal-3-pro", "universal-2")
    assert b.options.keyterms_prompt == ("Prefect", "Parquet")
    assert b.options.audio_start_from == 1500
    assert b.options.language_code == "fr"
    assert c.options.speaker_labels is False
    assert c.options.to_request_params() == {
        "speech_models": ["universal-2"],
        "language_code": "fr",
        "speaker_labels": False,
    }


def test_options_hash_is_stable_and_ignores_api_defaults() -> None:
    base = TranscriptionOptions()
    assert options_hash(base) == options_hash(TranscriptionOptions())
    assert len(options_hash(base)) == 16
    # Setting an option to AssemblyAI's documented default does not change the transcript.
    assert options_hash(TranscriptionOptions(punctuate=True)) == options_hash(base)
    assert options_hash(TranscriptionOptions(punctuate=False)) != options_hash(base)
    assert options_hash(TranscriptionOptions(speech_models=["universal-3-pro"])) != options_hash(
        base
    )
    # Golden value: a change here changes every options_hash already written to the tables.
    assert options_hash(base) == "65df45e5fb1a4638"


def test_items_are_frozen_and_picklable(tmp_path: Path) -> None:
    media(tmp_path, "a.wav")
    item = read_manifest(write_csv(tmp_path / "l.csv", "source,punctuate\na.wav,false\n")).items[0]
    assert pickle.loads(pickle.dumps(item)) == item
    with pytest.raises(AttributeError):
        item.media_id = "x"  # type: ignore[misc]
    assert isinstance(item, MediaItem)
    assert item.path == tmp_path / "a.wav"


# --- errors ----------------------------------------------------------------------------------


def test_every_bad_row_is_reported_at_once(tmp_path: Path) -> None:
    media(tmp_path, "ok.wav", "dup.wav")
    (tmp_path / "empty.wav").write_bytes(b"")
    manifest = write_csv(
        tmp_path / "list.csv",
        "source,media_id,punctuate,speakers_expected\n"
        "ok.wav,,,\n"  # row 2
        ",,,\n"  # row 3 is blank: skipped but counted
        "   ,x,,\n"  # row 4: empty source
        "dup.wav,same,,\n"  # row 5
        "ok.wav,same,,\n"  # row 6: duplicate media_id of row 5
        "missing.wav,,,\n"  # row 7
        "s3://bucket/key.wav,,,\n"  # row 8
        "ftp://host/a.wav,,,\n"  # row 9
        "dup.wav,d2,maybe,two\n"  # row 10: two bad options
        "empty.wav,,,\n",  # row 11
    )
    with pytest.raises(ManifestError) as exc:
        read_manifest(manifest)
    assert isinstance(exc.value, VoxlakeError) and isinstance(exc.value, ValueError)
    assert exc.value.transient is False
    lines = error_lines(exc)
    assert len(lines) == len(exc.value.problems) == 8
    assert lines[0].startswith("row 4, column source: missing or empty source — ")
    assert lines[1].startswith("row 6, column media_id: duplicate media_id 'same' (also row 5)")
    assert lines[2].startswith("row 7, column source: file not found: ")
    assert str(tmp_path / "missing.wav") in lines[2]
    assert "relative paths are resolved against" in lines[2]
    # S3 rows are checked against the (moto) S3 endpoint: this bucket does not exist.
    assert lines[3].startswith(
        "row 8, column source: checking s3://bucket/key.wav: bucket s3://bucket/ does not exist"
    )
    assert lines[4].startswith("row 9, column source: unsupported scheme 'ftp'")
    assert lines[5].startswith("row 10, column punctuate: 'maybe' is not valid")
    assert lines[5].endswith("— write true or false")
    assert lines[6].startswith("row 10, column speakers_expected: 'two' is not valid")
    assert lines[6].endswith("— write a whole number of at least 1")
    assert lines[7].startswith("row 11, column source: file is empty (0 bytes)")


def test_unknown_column_in_csv_header_always_fails(tmp_path: Path) -> None:
    media(tmp_path, "a.wav")
    manifest = write_csv(tmp_path / "list.csv", "source,speaker_label\na.wav,true\n")
    for mode in ("fail", "skip"):
        with pytest.raises(ManifestError) as exc:
            read_manifest(manifest, on_invalid=mode)  # type: ignore[arg-type]
        assert error_lines(exc) == [
            "row 1, column speaker_label: unknown column — did you mean 'speaker_labels'?"
        ]


def test_missing_source_column(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="row 1, column source: missing required column"):
        read_manifest(write_csv(tmp_path / "list.csv", "path\na.wav\n"))


def test_jsonl_errors_use_line_numbers(tmp_path: Path) -> None:
    media(tmp_path, "a.wav")
    manifest = tmp_path / "list.jsonl"
    manifest.write_text(
        '{"source": "a.wav"}\n'
        "{not json\n"
        '["a.wav"]\n'
        '{"source": "a.wav", "media_id": "b", "diarize": true}\n'
        '{"source": "a.wav", "media_id": "c", "speakers_expected": 0}\n'
        '{"source": 5}\n'
    )
    with pytest.raises(ManifestError) as exc:
        read_manifest(manifest)
    lines = error_lines(exc)
    assert lines[0].startswith("row 2: not valid JSON")
    assert lines[1].startswith("row 3: a JSON list, not an object")
    assert lines[2].startswith("row 4, column diarize: unknown column")
    assert lines[3].startswith("row 5, column speakers_expected: 0 is not valid")
    assert lines[4].startswith("row 6, column source: expected text, got int")


def test_parquet_errors_use_index_plus_one(tmp_path: Path) -> None:
    pq.write_table(pa.table({"source": ["missing.wav"]}), tmp_path / "list.parquet")
    with pytest.raises(ManifestError, match="row 1, column source: file not found"):
        read_manifest(tmp_path / "list.parquet")
    pq.write_table(pa.table({"source": ["a"], "colour": ["red"]}), tmp_path / "bad.parquet")
    with pytest.raises(ManifestError, match="column colour: unknown column"):
        read_manifest(tmp_path / "bad.parquet")


def test_cross_field_option_error(tmp_path: Path) -> None:
    media(tmp_path, "a.wav")
    manifest = write_csv(tmp_path / "l.csv", "source,audio_end_at\na.wav,1000\n")
    with pytest.raises(ManifestError, match=r"row 2, column \(options\): audio_end_at \(1000\)"):
        read_manifest(manifest, defaults={"audio_start_from": 5000})


def test_bad_defaults_are_reported() -> None:
    with pytest.raises(ManifestError, match=r"option punctuate: 'maybe' is not valid"):
        read_manifest("unused.csv", defaults={"punctuate": "maybe"})
    with pytest.raises(
        ManifestError,
        match=r"option speaker_label: unknown option — did you mean 'speaker_labels'\?",
    ):
        read_manifest("unused.csv", defaults={"speaker_label": True})


def test_skip_returns_invalid_rows_and_runs_valid_ones(tmp_path: Path) -> None:
    media(tmp_path, "a.wav", "b.wav")
    manifest = write_csv(
        tmp_path / "list.csv",
        "source,media_id,punctuate\na.wav,,\nnope.wav,,\nb.wav,,perhaps\nb.wav,b2,\na.wav,,\n",
    )
    result = read_manifest(manifest, on_invalid="skip")
    assert [(i.media_id, i.row) for i in result.items] == [("a.wav", 2), ("b2", 5)]
    assert [(r.row, r.media_id, r.source) for r in result.invalid] == [
        (3, "nope.wav", "nope.wav"),
        (4, "b.wav", "b.wav"),
        (6, "a.wav", "a.wav"),
    ]
    assert result.invalid[0].reason.startswith("column source: file not found")
    assert result.invalid[1].reason.startswith("column punctuate: 'perhaps' is not valid")
    assert "duplicate media_id 'a.wav' (also row 2)" in result.invalid[2].reason


def test_empty_manifests_are_errors(tmp_path: Path) -> None:
    for name, text in [("a.csv", ""), ("b.csv", "source\n"), ("c.jsonl", "\n\n")]:
        with pytest.raises(ManifestError, match="no rows"):
            read_manifest(write_csv(tmp_path / name, text))
    pq.write_table(pa.table({"source": pa.array([], pa.string())}), tmp_path / "d.parquet")
    with pytest.raises(ManifestError, match="no rows"):
        read_manifest(tmp_path / "d.parquet")
    (tmp_path / "empty_dir").mkdir()
    with pytest.raises(ManifestError, match="no media files found"):
        read_manifest(tmp_path / "empty_dir")


def test_skip_with_no_valid_rows_still_fails(tmp_path: Path) -> None:
    manifest = write_csv(tmp_path / "list.csv", "source\nnope.wav\n")
    with pytest.raises(ManifestError, match="every row is invalid"):
        read_manifest(manifest, on_invalid="skip")


def test_missing_manifest(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match=r"nope\.csv: no such file or folder — check the path"):
        read_manifest(tmp_path / "nope.csv")


def test_options_reject_unknown_names_and_wrong_types() -> None:
    with pytest.raises(ValueError, match="Extra inputs are not permitted"):
        TranscriptionOptions(speaker_label=True)  # type: ignore[call-arg]
    with pytest.raises(ValueError):
        TranscriptionOptions(speech_models=[])
    with pytest.raises(ValueError, match="http"):
        TranscriptionOptions(webhook_url="ftp://x")
    assert json.loads(TranscriptionOptions().model_dump_json())["speech_models"] == ["universal-2"]


# --- pinned keys: the ledger at the output root keys items by these ----------------------------


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({}, "65df45e5fb1a4638"),
        ({"speaker_labels": True}, "6cd5c7b639e80ef5"),
        (
            {
                "speech_models": ["universal-3-pro", "universal-2"],
                "language_code": "fr",
                "keyterms_prompt": ["Prefect", "Parquet"],
            },
            "9b9a2065c62a6358",
        ),
        (
            {
                "punctuate": False,
                "audio_start_from": 1500,
                "audio_end_at": 9000,
                "language_confidence_threshold": 0.4,
            },
            "ae1b812207b41add",
        ),
        (
            {
                # webhook_url was here (12d825b630e1bda9): it is the run's now, not an option.
                "prompt": "Grüße, café",
                "speakers_expected": 2,
                "speech_threshold": 0.5,
            },
            "c2cf996d27f2a482",
        ),
        (
            {
                "sentiment_analysis": True,
                "redact_pii": True,
                "redact_pii_policies": ["person_name"],
                "speaker_options": {"min_speakers_expected": 2},
                "custom_spelling": [{"from": ["dicarlo"], "to": "DiCarlo"}],
            },
            "376afd5a52a60444",
        ),
        (
            {
                "language_detection": True,
                "multichannel": True,
                "format_text": False,
                "disfluencies": True,
                "filter_profanity": True,
            },
            "29c760f4b2b82697",
        ),
    ],
)
def test_options_hashes_are_pinned(options: dict[str, object], expected: str) -> None:
    # Golden values computed before the options model moved into voxlake/manifest/options.py:
    # a change here re-keys every ledger entry, and the next run bills every item again.
    assert options_hash(TranscriptionOptions.model_validate(options)) == expected


def test_options_hashes_from_csv_cells_are_pinned(tmp_path: Path) -> None:
    media(tmp_path, "a.wav", "b.wav")
    manifest = write_csv(
        tmp_path / "list.csv",
        "source,speaker_labels,speech_models,keyterms_prompt,language_code,punctuate\n"
        'a.wav,yes,"universal-3-pro, universal-2","[""Prefect"", ""Parquet""]",fr,\n'
        "b.wav,,,,,true\n",
    )
    a, b = read_manifest(manifest).items
    assert a.options_hash == "f8537236d11640ed"
    assert b.options_hash == "65df45e5fb1a4638"  # punctuate=true is the API default


def test_local_fingerprints_are_pinned(tmp_path: Path) -> None:
    import datetime as dt
    import os

    (path,) = media(tmp_path, "a.wav")
    os.utime(path, ns=(1_700_000_000_123_456_789, 1_700_000_000_123_456_789))
    (plain,) = read_manifest(tmp_path).items
    assert plain.info is not None
    assert plain.info.size == 16
    assert plain.info.fingerprint == "16:1700000000123456789"
    assert plain.info.modified_at == dt.datetime(2023, 11, 14, 22, 13, 20, 123457, tzinfo=dt.UTC)
    assert plain.info.etag is None
    (hashed,) = read_manifest(tmp_path, content_hash=True).items
    assert hashed.fingerprint == (
        "16:1700000000123456789"
        ":sha256=aeb852048e35be4391685af966e670f32bb52a5064ce93030911a087d7f115f7"
    )


def test_options_build_the_request_directly() -> None:
    from voxlake.models import TranscriptParams

    options = TranscriptionOptions(
        speech_models=["universal-3-pro"], speaker_labels=True, keyterms_prompt=["Prefect"]
    )
    params = options.request("https://cdn.example.com/a.mp3")
    assert isinstance(params, TranscriptParams)
    assert params.to_request() == {
        "audio_url": "https://cdn.example.com/a.mp3",
        "speech_models": ["universal-3-pro"],
        "speaker_labels": True,
        "keyterms_prompt": ["Prefect"],
    }
    # The options are declared once (TranscriptionOptions); the wire model takes them as given.
    assert not set(TranscriptionOptions.model_fields) & set(TranscriptParams.model_fields) - {
        "speech_models"
    }


def test_latin1_manifest_names_the_file_the_byte_offset_and_the_fix(tmp_path: Path) -> None:
    media(tmp_path, "a.wav", "café.wav")
    # The bad byte lies beyond the text reader's first buffer (8 KiB) and the read chunk of
    # the offset scan is larger still: the offset is the file's, counted from its first byte.
    head = "source\n" + "a.wav\n" * 2000
    fix = "save it as UTF-8 (a spreadsheet's 'CSV UTF-8'), or: iconv -f latin1 -t utf-8"
    for name, text in [
        ("list.csv", head + "café.wav\n"),
        ("list.jsonl", '{"source": "a.wav"}\n{"source": "café.wav"}\n'),
    ]:
        manifest = tmp_path / name
        manifest.write_bytes(text.encode("latin-1"))
        with pytest.raises(ManifestError) as exc:
            read_manifest(manifest)
        at = text.index("é")
        line = text.count("\n", 0, at) + 1
        problem = f"not UTF-8 (byte 0xe9 at offset {at}, line {line})"
        assert str(exc.value) == f"manifest {manifest}: {problem} — {fix}"
    # A BOM is not a problem, and counts in the offset like any other bytes.
    bom = tmp_path / "bom.csv"
    bom.write_bytes(b"\xef\xbb\xbfsource\na.wav\nca\xe9.wav\n")
    with pytest.raises(ManifestError, match=r"byte 0xe9 at offset 18, line 3\)"):
        read_manifest(bom)


def test_nested_options_read_alike_from_csv_json_cells_jsonl_objects_and_parquet_structs(
    tmp_path: Path,
) -> None:
    media(tmp_path, "a.wav", "b.wav")
    speakers = {"min_speakers_expected": 2, "max_speakers_expected": 3}
    spelling = [{"from": ["dicarlo", "di carlo"], "to": "DiCarlo"}]
    understanding = {"request": {"translation": {"target_languages": ["es", "de"]}}}
    write_csv(
        tmp_path / "list.csv",
        "source,sentiment_analysis,redact_pii_policies,speaker_options,custom_spelling,"
        "speech_understanding\n"
        'a.wav,true,"person_name, phone_number",'
        + ",".join(
            '"' + json.dumps(v).replace('"', '""') + '"'
            for v in (speakers, spelling, understanding)
        )
        + "\nb.wav,,,,,\n",
    )
    row = {
        "sentiment_analysis": True,
        "redact_pii_policies": ["person_name", "phone_number"],
        "speaker_options": speakers,
        "custom_spelling": spelling,
        "speech_understanding": understanding,
    }
    (tmp_path / "list.jsonl").write_text(
        json.dumps({"source": "a.wav", **row}) + "\n" + json.dumps({"source": "b.wav"}) + "\n"
    )
    # Parquet: structs and lists of structs; b's nulls (and a's null struct keys) are unset.
    pq.write_table(
        pa.Table.from_pylist(
            [
                {"source": "a.wav", **row, "speaker_options": speakers},
                {"source": "b.wav", "speaker_options": dict.fromkeys(speakers)},
            ]
        ),
        tmp_path / "list.parquet",
    )
    expected = TranscriptionOptions.model_validate(row)
    for name in ("list.csv", "list.jsonl", "list.parquet"):
        a, b = read_manifest(tmp_path / name).items
        assert a.options == expected, name
        assert a.options_hash == options_hash(expected) != b.options_hash, name
        assert a.options.request("https://x/a.wav").to_request()["custom_spelling"] == spelling
    # In Parquet, b's struct of nulls sets nothing: b has the run defaults.
    assert read_manifest(tmp_path / "list.parquet").items[1].options == TranscriptionOptions()
