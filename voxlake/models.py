"""Pydantic v2 models of the AssemblyAI v2 wire format (openapi.yml, info.version 1.3.4).

Every model allows extra fields, so a field AssemblyAI adds tomorrow survives a
``model_validate`` → ``model_dump(mode="json", exclude_unset=True)`` round trip. Fields the spec
marks nullable are ``X | None``; fields a response may omit default to ``None`` (and are then
"unset", so they are not invented on dump). Nested feature results (highlights, entities,
content safety, ...) are kept as plain JSON (``dict``/``list``): voxlake does not interpret them.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr

JSONDict = dict[str, Any]


class _Wire(BaseModel):
    # extra="allow": never lose a field; populate_by_name for aliases like `from`.
    model_config = ConfigDict(extra="allow", populate_by_name=True)


class TranscriptStatus(StrEnum):
    queued = "queued"
    processing = "processing"
    completed = "completed"
    error = "error"

    @property
    def is_final(self) -> bool:
        return self in (TranscriptStatus.completed, TranscriptStatus.error)


class Word(_Wire):
    """``TranscriptWord``: times in milliseconds."""

    text: str
    start: int
    end: int
    confidence: float
    speaker: str | None = None
    channel: str | None = None


class Utterance(_Wire):
    """``TranscriptUtterance`` (present with ``speaker_labels`` or ``multichannel``)."""

    text: str
    start: int
    end: int
    confidence: float
    speaker: str | None = None
    channel: str | None = None
    words: list[Word] = Field(default_factory=list)
    translated_texts: dict[str, str] | None = None


class TranscriptOptions(_Wire):
    """The transcription options a transcript echoes (lenient, extra fields kept).

    What a run or a manifest sets, validated against the spec, is declared once, in
    :class:`voxlake.manifest.options.TranscriptionOptions`, which builds the request.
    """

    language_code: str | None = None
    language_codes: list[str] | None = None
    language_detection: bool | None = None
    language_confidence_threshold: float | None = None
    punctuate: bool | None = None
    format_text: bool | None = None
    disfluencies: bool | None = None
    filter_profanity: bool | None = None
    speaker_labels: bool | None = None
    speakers_expected: int | None = None
    multichannel: bool | None = None
    audio_start_from: int | None = None
    audio_end_at: int | None = None
    webhook_url: str | None = None
    webhook_auth_header_name: str | None = None
    speech_threshold: float | None = None
    keyterms_prompt: list[str] | None = None
    prompt: str | None = None
    temperature: float | None = None
    custom_spelling: list[JSONDict] | None = None
    redact_pii: bool | None = None
    redact_pii_audio: bool | None = None
    redact_pii_policies: list[str] | None = None
    redact_pii_sub: str | None = None
    auto_highlights: bool | None = None
    content_safety: bool | None = None
    iab_categories: bool | None = None
    sentiment_analysis: bool | None = None
    entity_detection: bool | None = None


class Transcript(TranscriptOptions):
    """``Transcript``: returned by POST/GET/DELETE /v2/transcript[/{id}].

    A failed job is HTTP 200 with ``status == error`` and ``error`` text: it is data, not an
    exception (see :func:`voxlake.polling.raise_for_status`).
    """

    id: str
    status: TranscriptStatus
    audio_url: str
    text: str | None = None
    words: list[Word] | None = None
    utterances: list[Utterance] | None = None
    confidence: float | None = None
    audio_duration: int | None = None  # seconds
    audio_channels: int | None = None
    error: str | None = None
    throttled: bool | None = None

    # models / language
    speech_model: str | None = None
    speech_models: list[str] | None = None
    speech_model_used: str | None = None
    language_model: str | None = None
    acoustic_model: str | None = None
    language_confidence: float | None = None
    language_detection_options: JSONDict | None = None

    # echoed request options
    dual_channel: bool | None = None
    speaker_options: JSONDict | None = None
    remove_audio_tags: str | None = None
    word_boost: list[str] | None = None
    boost_param: str | None = None
    speed_boost: bool | None = None

    # webhooks
    webhook_status_code: int | None = None
    webhook_auth: bool | None = None

    # PII redaction
    redact_pii_audio_quality: str | None = None
    redact_pii_audio_options: JSONDict | None = None

    # audio intelligence (kept as raw JSON)
    auto_highlights_result: JSONDict | None = None
    content_safety_labels: JSONDict | None = None
    iab_categories_result: JSONDict | None = None
    sentiment_analysis_results: list[JSONDict] | None = None
    entities: list[JSONDict] | None = None
    speech_understanding: JSONDict | None = None
    translated_texts: JSONDict | None = None

    # deprecated, still echoed
    auto_chapters: bool | None = None
    chapters: list[JSONDict] | None = None
    summarization: bool | None = None
    summary: str | None = None
    summary_model: str | None = None
    summary_type: str | None = None
    custom_topics: bool | None = None
    topics: list[str] | None = None

    @property
    def is_final(self) -> bool:
        return self.status.is_final


class TranscriptParams(_Wire):
    """Request body of POST /v2/transcript. Serialise with :meth:`to_request`.

    The wire shape, lenient: the transcription options are passed as keyword arguments and sent
    as given. They are declared and validated once, in
    :class:`voxlake.manifest.options.TranscriptionOptions` (every option of the spec), which
    builds this request with ``TranscriptionOptions.request``. ``speech_models`` is required:
    AssemblyAI has no default model and rejects requests without it. The webhook fields are
    declared here because they are not transcription options (they belong to a run).
    """

    audio_url: str
    speech_models: list[str] = Field(min_length=1)
    webhook_url: str | None = None
    webhook_auth_header_name: str | None = None
    # A secret (the receiver's password): masked in reprs, logs and errors; only the request
    # body carries it.
    webhook_auth_header_value: SecretStr | None = None

    def to_request(self) -> JSONDict:
        # exclude_none: an explicit null would override AssemblyAI's defaults.
        body = self.model_dump(mode="json", exclude_none=True, by_alias=True)
        if self.webhook_auth_header_value is not None:
            body["webhook_auth_header_value"] = self.webhook_auth_header_value.get_secret_value()
        return body


class UploadedFile(_Wire):
    upload_url: str


class PageDetails(_Wire):
    limit: int
    result_count: int
    current_url: str
    prev_url: str | None = None
    next_url: str | None = None


class TranscriptListItem(_Wire):
    id: str
    resource_url: str
    status: TranscriptStatus
    created: str  # "2023-09-04T17:02:23.506984", no timezone on the wire
    completed: str | None = None
    audio_url: str
    error: str | None = None


class TranscriptList(_Wire):
    page_details: PageDetails
    transcripts: list[TranscriptListItem]


class Sentence(_Wire):
    text: str
    start: int
    end: int
    confidence: float
    words: list[Word]
    speaker: str | None = None
    channel: str | None = None


class SentencesResponse(_Wire):
    id: str
    confidence: float
    audio_duration: float
    sentences: list[Sentence]


class Paragraph(_Wire):
    text: str
    start: int
    end: int
    confidence: float
    words: list[Word]
    speaker: str | None = None
    channel: str | None = None


class ParagraphsResponse(_Wire):
    id: str
    confidence: float
    audio_duration: float
    paragraphs: list[Paragraph]


class WordSearchMatch(_Wire):
    text: str
    count: int
    timestamps: list[list[int]]
    indexes: list[int]


class WordSearchResponse(_Wire):
    id: str
    total_count: int
    matches: list[WordSearchMatch]


class RedactedAudioResponse(_Wire):
    status: str  # "redacted_audio_ready"
    redacted_audio_url: str


class ErrorBody(_Wire):
    error: str
    status: str | None = None
