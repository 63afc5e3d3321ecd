"""The transcription options: the one model a run's defaults and a manifest row's option columns
validate into, which builds the ``POST /v2/transcript`` request and fingerprints it.

:class:`voxlake.models.TranscriptParams` is the request's wire shape (it also takes options
voxlake does not set, for callers of the client); an item's options build it directly with
:meth:`TranscriptionOptions.request`.
"""

from __future__ import annotations

import hashlib
import json
import typing
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from voxlake.models import TranscriptParams

__all__ = [
    "DEFAULT_SPEECH_MODELS",
    "OPTION_COLUMNS",
    "SPEECH_MODELS",
    "TranscriptionOptions",
    "options_hash",
    "type_hint",
]

#: The model voxlake asks for when neither the run defaults nor the row choose one. AssemblyAI has
#: no server-side default and rejects a request without ``speech_models``.
DEFAULT_SPEECH_MODELS: tuple[str, ...] = ("universal-2",)
#: The speech models AssemblyAI has (its docs' current list; the spec no longer enumerates them).
#: Checked here so that a typo fails before any upload instead of at submit, after the upload
#: was paid for in time. The local server keeps its own copy (voxlake/emulator/params.py): it
#: shares no code with the client by design, so both lists change together.
SPEECH_MODELS: tuple[str, ...] = ("universal-3-pro", "universal-2")

# AssemblyAI's documented defaults (openapi.yml TranscriptOptionalParams). Only used by
# options_hash, so that writing `punctuate=true` explicitly hashes like leaving it unset: the
# transcript is the same, so the hash must be too.
_API_DEFAULTS: dict[str, Any] = {
    "language_code": "en_us",
    "language_detection": False,
    "language_confidence_threshold": 0,
    "punctuate": True,
    "format_text": True,
    "disfluencies": False,
    "filter_profanity": False,
    "speaker_labels": False,
    "multichannel": False,
}


class TranscriptionOptions(BaseModel):
    """The ``POST /v2/transcript`` options a manifest row or a run may set.

    ``None`` means "not sent": AssemblyAI's own default applies. ``speech_models`` is the one
    option that always has a value, because the API has no default model. Unknown names are
    rejected (``extra="forbid"``) so a typo such as ``speaker_label`` fails validation instead of
    silently transcribing without diarization.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    speech_models: tuple[str, ...] = Field(default=DEFAULT_SPEECH_MODELS, min_length=1)
    language_code: str | None = None
    language_detection: bool | None = None
    language_confidence_threshold: float | None = Field(default=None, ge=0, le=1)
    punctuate: bool | None = None
    format_text: bool | None = None
    disfluencies: bool | None = None
    filter_profanity: bool | None = None
    speaker_labels: bool | None = None
    speakers_expected: int | None = Field(default=None, ge=1)
    multichannel: bool | None = None
    audio_start_from: int | None = Field(default=None, ge=0)
    audio_end_at: int | None = Field(default=None, ge=0)
    speech_threshold: float | None = Field(default=None, ge=0, le=1)
    keyterms_prompt: tuple[str, ...] | None = None
    prompt: str | None = None
    webhook_url: str | None = None

    @field_validator("speech_models", "keyterms_prompt", mode="before")
    @classmethod
    def _split_list(cls, value: Any) -> Any:
        # CSV cells (and lazy JSON writers) give lists as "a, b" or '["a", "b"]'.
        return _parse_list_cell(value) if isinstance(value, str) else value

    @field_validator("speech_models", "keyterms_prompt")
    @classmethod
    def _no_blank_entries(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if value is not None and any(not v.strip() for v in value):
            raise ValueError("entries must not be empty")
        return value

    @field_validator("speech_models")
    @classmethod
    def _known_speech_models(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        unknown = [model for model in value if model not in SPEECH_MODELS]
        if unknown:
            raise ValueError(
                f"AssemblyAI has no speech model {', '.join(map(repr, unknown))}; "
                f"its models are {', '.join(SPEECH_MODELS)}"
            )
        return value

    @field_validator("language_code", "prompt", "webhook_url")
    @classmethod
    def _blank_is_error(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("must not be blank")
        return value

    @field_validator("webhook_url")
    @classmethod
    def _webhook_is_http(cls, value: str | None) -> str | None:
        if value is not None and urlsplit(value).scheme not in ("http", "https"):
            raise ValueError("must be an http(s) URL")
        return value

    @model_validator(mode="after")
    def _window_is_ordered(self) -> TranscriptionOptions:
        if (
            self.audio_start_from is not None
            and self.audio_end_at is not None
            and self.audio_end_at <= self.audio_start_from
        ):
            raise ValueError(
                f"audio_end_at ({self.audio_end_at}) must be greater than audio_start_from "
                f"({self.audio_start_from})"
            )
        return self

    def to_request_params(self) -> dict[str, Any]:
        """The options as JSON-ready ``POST /v2/transcript`` fields (``audio_url`` not included).

        ``None`` options are left out: an explicit ``null`` would override AssemblyAI's default.
        """
        return self.model_dump(mode="json", exclude_none=True)

    def request(self, audio_url: str) -> TranscriptParams:
        """The ``POST /v2/transcript`` request for the media at ``audio_url`` with these options."""
        return TranscriptParams(audio_url=audio_url, **self.to_request_params())

    def merged(self, overrides: Mapping[str, Any]) -> TranscriptionOptions:
        """These options with ``overrides`` on top, validated again as a whole.

        Revalidating (rather than ``model_copy(update=...)``) catches wrong types and
        cross-field problems such as an ``audio_end_at`` before the default ``audio_start_from``.
        """
        if not overrides:
            return self
        base = self.model_dump(exclude_unset=True)
        return TranscriptionOptions.model_validate({**base, **overrides})


def options_hash(options: TranscriptionOptions) -> str:
    """A short, stable fingerprint of the effective options (16 hex chars of a sha256).

    Options left unset and options set to AssemblyAI's documented default hash alike, and so do
    options added to :class:`TranscriptionOptions` later (they default to unset): a hash only
    changes when the request would change what AssemblyAI does. The ledger keys items by it.
    """
    params = {
        k: v
        for k, v in options.to_request_params().items()
        if not (k in _API_DEFAULTS and v == _API_DEFAULTS[k])
    }
    canonical = json.dumps(params, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:16]


#: The manifest columns that set an option.
OPTION_COLUMNS: frozenset[str] = frozenset(TranscriptionOptions.model_fields)


def _parse_list_cell(text: str) -> Any:
    text = text.strip()
    if text.startswith("["):
        try:
            return json.loads(text)
        except json.JSONDecodeError:
            return text  # let pydantic report "not a valid list" with the original text
    return [part.strip() for part in text.split(",") if part.strip()]


def type_hint(name: str) -> str:
    """How to write a valid value for option ``name``, derived from its annotation."""
    if name == "speech_models":
        return f"use {' or '.join(SPEECH_MODELS)}, or both in priority order (a, b)"
    annotation = TranscriptionOptions.model_fields[name].annotation
    args = set(typing.get_args(annotation)) - {type(None)}
    inner = args.pop() if len(args) == 1 else annotation
    if typing.get_origin(inner) is tuple:
        return 'write a comma-separated list (a, b) or a JSON list (["a", "b"])'
    hints: dict[Any, str] = {
        bool: "write true or false",
        int: "write a whole number",
        float: "write a number",
        str: "write text",
    }
    return hints.get(inner, f"write a value of type {inner}")
