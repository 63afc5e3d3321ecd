"""The wire models parse the real fixtures and dump them back without losing a field."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from tests.support.reference import assemblyai
from voxlake.models import (
    PageDetails,
    ParagraphsResponse,
    RedactedAudioResponse,
    SentencesResponse,
    Transcript,
    TranscriptList,
    TranscriptListItem,
    TranscriptParams,
    TranscriptStatus,
    UploadedFile,
    Utterance,
    Word,
    WordSearchResponse,
)

CASES: list[tuple[str, type[BaseModel]]] = [
    ("go-sdk/completed.json", Transcript),
    ("go-sdk/queued.json", Transcript),
    ("go-sdk/deleted.json", Transcript),
    ("go-sdk/list.json", TranscriptList),
    ("go-sdk/word-search.json", WordSearchResponse),
    ("spec-examples/Transcript.json", Transcript),
    ("spec-examples/DeleteTranscriptResponse.json", Transcript),
    ("spec-examples/TranscriptList.json", TranscriptList),
    ("spec-examples/TranscriptListItem.json", TranscriptListItem),
    ("spec-examples/PageDetails.json", PageDetails),
    ("spec-examples/SentencesResponse.json", SentencesResponse),
    ("spec-examples/ParagraphsResponse.json", ParagraphsResponse),
    ("spec-examples/WordSearchResponse.json", WordSearchResponse),
    ("spec-examples/RedactedAudioResponse.json", RedactedAudioResponse),
    ("spec-examples/UploadedFile.json", UploadedFile),
]


def _load(name: str) -> Any:
    return json.loads(assemblyai("fixtures", name).read_text())


@pytest.mark.parametrize(("name", "model"), CASES, ids=[c[0] for c in CASES])
def test_fixture_round_trips_without_losing_a_field(name: str, model: type[BaseModel]) -> None:
    raw = _load(name)
    parsed = model.model_validate(raw)
    assert parsed.model_dump(mode="json", exclude_unset=True) == raw


def test_completed_transcript_is_typed() -> None:
    t = Transcript.model_validate(_load("go-sdk/completed.json"))
    assert t.status is TranscriptStatus.completed
    assert t.is_final
    assert t.words and isinstance(t.words[0], Word)
    assert isinstance(t.words[0].start, int) and t.words[0].end > t.words[0].start
    assert t.text and t.text.startswith("Smoke from hundreds of wildfires")
    if t.utterances:
        assert isinstance(t.utterances[0], Utterance)


def test_unknown_fields_survive() -> None:
    raw = _load("go-sdk/queued.json") | {"brand_new_field": {"x": [1, 2]}}
    t = Transcript.model_validate(raw)
    assert t.model_dump(mode="json", exclude_unset=True)["brand_new_field"] == {"x": [1, 2]}
    assert not t.is_final


def test_transcript_params_require_speech_models_and_drop_nones() -> None:
    with pytest.raises(ValidationError):
        TranscriptParams.model_validate({"audio_url": "https://x/a.mp3"})
    with pytest.raises(ValidationError):
        TranscriptParams(audio_url="https://x/a.mp3", speech_models=[])
    params = TranscriptParams(
        audio_url="https://x/a.mp3",
        speech_models=["universal-2"],
        speaker_labels=True,
        language_code=None,
        word_boost=["voxlake"],  # removed from the spec, still accepted: extra field
    )
    assert params.to_request() == {
        "audio_url": "https://x/a.mp3",
        "speech_models": ["universal-2"],
        "speaker_labels": True,
        "word_boost": ["voxlake"],
    }


def test_spec_transcript_params_example_parses_with_speech_models() -> None:
    raw = _load("spec-examples/TranscriptParams.json") | {"speech_models": ["universal-3-pro"]}
    params = TranscriptParams.model_validate(raw)
    body = params.to_request()
    # Everything non-null in the example is sent; nulls are dropped (server defaults apply).
    assert body == {k: v for k, v in raw.items() if v is not None}


def test_status_enum_values() -> None:
    assert [s.value for s in TranscriptStatus] == ["queued", "processing", "completed", "error"]
    assert TranscriptStatus("error").is_final and not TranscriptStatus.processing.is_final
