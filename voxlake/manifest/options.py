"""The transcription options: the one model a run's defaults and a manifest row's option columns
validate into, which builds the ``POST /v2/transcript`` request and fingerprints it.

:class:`TranscriptionOptions` has a field for every property of the spec's
``TranscriptOptionalParams`` (openapi.yml) except the webhook fields, which belong to a run's
delivery, not to what is transcribed. Its types, ranges and enumerations are the spec's;
tests/unit/test_options_spec.py loads openapi.yml and checks that the two agree, so a new option
AssemblyAI adds fails a test until it is declared here. Each field's ``json_schema_extra``
carries the spec's default (what AssemblyAI does when the option is not sent), and
``deprecated`` the spec's deprecation, so both are read from one place.

:class:`voxlake.models.TranscriptParams` is the request's wire shape (lenient, for callers of
the client); an item's options build it with :meth:`TranscriptionOptions.request`.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import types
import typing
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    StringConstraints,
    Tag,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo

from voxlake.manifest.enums import LanguageCode, PiiPolicy
from voxlake.models import TranscriptParams

__all__ = [
    "API_DEFAULTS",
    "DEFAULT_SPEECH_MODELS",
    "DEPRECATED_OPTIONS",
    "OPTION_COLUMNS",
    "RUN_ONLY_FIELDS",
    "SPEECH_MODELS",
    "TranscriptionOptions",
    "deprecation_warning",
    "option_path",
    "options_hash",
    "type_hint",
    "unknown_option_fix",
]

#: The model voxlake asks for when neither the run defaults nor the row choose one. AssemblyAI has
#: no server-side default and rejects a request without ``speech_models``.
DEFAULT_SPEECH_MODELS: tuple[str, ...] = ("universal-2",)
#: The speech models AssemblyAI has (its docs' current list; the spec no longer enumerates them).
#: Checked here so that a typo fails before any upload instead of at submit, after the upload
#: was paid for in time. The local server keeps its own copy (voxlake/emulator/params.py): it
#: shares no code with the client by design, so both lists change together.
SPEECH_MODELS: tuple[str, ...] = ("universal-3-pro", "universal-2")

#: Request fields of ``TranscriptOptionalParams`` that are not transcription options: where the
#: result is announced (and the secret header it is announced with) is the run's business, and
#: must neither vary per row nor change an item's options hash.
RUN_ONLY_FIELDS: frozenset[str] = frozenset(
    ("webhook_url", "webhook_auth_header_name", "webhook_auth_header_value")
)

_LLM_GATEWAY = "deprecated by AssemblyAI in favour of its LLM Gateway"
_NO_EFFECT = "deprecated by AssemblyAI: it has no functionality attached to it"

Text = Annotated[str, StringConstraints(min_length=1)]


def _api(default: Any = None, **constraints: Any) -> Any:
    """An option that is not sent unless set (``None``).

    ``default`` is the spec's: what AssemblyAI does without the option. It is shown in the JSON
    schema and :data:`API_DEFAULTS` reads it from there for :func:`options_hash`.
    """
    extra = {"default": default} if default is not None else None
    return Field(None, json_schema_extra=extra, **constraints)


class _Nested(BaseModel):
    """A nested option object. Keys the spec does not have are refused, like top-level names.

    A key whose value is ``null`` counts as absent: a Parquet struct column has every key of
    every row, so a row that sets one key of ``speaker_options`` has the others as nulls.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @model_validator(mode="before")
    @classmethod
    def _nulls_are_absent(cls, data: Any) -> Any:
        if isinstance(data, Mapping):
            return {k: v for k, v in data.items() if v is not None}
        return data


class CustomSpelling(_Nested):
    """``TranscriptCustomSpelling``: replace the words ``from`` with ``to``."""

    from_: tuple[Text, ...] = Field(alias="from", min_length=1)
    to: str


class LanguageDetectionOptions(_Nested):
    expected_languages: tuple[Text, ...] | None = None
    fallback_language: Text | None = _api("auto")
    code_switching: bool | None = _api(False)
    code_switching_confidence_threshold: float | None = _api(0.3, ge=0, le=1)


class SpeakerOptions(_Nested):
    min_speakers_expected: int | None = _api(1, ge=1)
    max_speakers_expected: int | None = _api(ge=1)

    @model_validator(mode="after")
    def _min_not_above_max(self) -> SpeakerOptions:
        low, high = self.min_speakers_expected, self.max_speakers_expected
        if low is not None and high is not None and low > high:
            raise ValueError(
                f"min_speakers_expected ({low}) must not exceed max_speakers_expected ({high})"
            )
        return self


class RedactPiiAudioOptions(_Nested):
    return_redacted_no_speech_audio: bool | None = _api(False)
    override_audio_redaction_method: Literal["silence"] | None = None


class Translation(_Nested):
    target_languages: tuple[Text, ...] = Field(min_length=1)
    formal: bool | None = _api(True)
    match_original_utterance: bool | None = _api(False)


class TranslationRequest(_Nested):
    """``TranslationRequestBody``."""

    translation: Translation


class Speaker(BaseModel):
    """A speaker to identify; the spec allows any further keys (company, title...)."""

    model_config = ConfigDict(extra="allow", frozen=True)

    role: str | None = None
    name: str | None = None
    description: str | None = None


class SpeakerIdentification(_Nested):
    speaker_type: Literal["role", "name"]
    known_values: (
        tuple[Annotated[str, StringConstraints(min_length=1, max_length=35)], ...] | None
    ) = None
    speakers: tuple[Speaker, ...] | None = None

    @model_validator(mode="after")
    def _roles_are_named(self) -> SpeakerIdentification:
        # The spec: known_values is "required if speaker_type is role"; speakers replaces it.
        if self.speaker_type == "role" and not (self.known_values or self.speakers):
            raise ValueError('speaker_type "role" needs known_values (or speakers) to choose from')
        return self


class SpeakerIdentificationRequest(_Nested):
    """``SpeakerIdentificationRequestBody``."""

    speaker_identification: SpeakerIdentification


class CustomFormatting(_Nested):
    date: str | None = None
    phone_number: str | None = None
    email: str | None = None


class CustomFormattingRequest(_Nested):
    """``CustomFormattingRequestBody``."""

    custom_formatting: CustomFormatting


# The keys that tell the speech understanding requests apart (their bodies' one property).
_REQUEST_KINDS = ("translation", "speaker_identification", "custom_formatting")


def _request_kind(value: Any) -> str | None:
    """Which of the spec's ``oneOf`` a speech understanding request is: its one key."""
    if isinstance(value, BaseModel):
        return next(iter(type(value).model_fields))
    if isinstance(value, Mapping):
        present = [k for k in _REQUEST_KINDS if value.get(k) is not None]
        return present[0] if len(present) == 1 else None
    return None


class SpeechUnderstanding(_Nested):
    request: Annotated[
        Annotated[TranslationRequest, Tag("translation")]
        | Annotated[SpeakerIdentificationRequest, Tag("speaker_identification")]
        | Annotated[CustomFormattingRequest, Tag("custom_formatting")],
        Discriminator(
            _request_kind,
            custom_error_type="one_request",
            custom_error_message=f"request must have exactly one of {', '.join(_REQUEST_KINDS)}",
        ),
    ]


class TranscriptionOptions(BaseModel):
    """The ``POST /v2/transcript`` options a manifest row or a run may set.

    ``None`` means "not sent": AssemblyAI's own default applies. ``speech_models`` is the one
    option that always has a value, because the API has no default model. Unknown names are
    rejected (``extra="forbid"``) so a typo such as ``speaker_label`` fails validation instead of
    silently transcribing without diarization.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    # models and language
    speech_models: tuple[Text, ...] = Field(default=DEFAULT_SPEECH_MODELS, min_length=1)
    speech_model: Text | None = Field(
        None, deprecated="replaced by speech_models, which voxlake always sends"
    )
    language_code: Text | None = _api("en_us")
    language_codes: tuple[LanguageCode, ...] | None = None
    language_detection: bool | None = _api(False)
    language_confidence_threshold: float | None = _api(0, ge=0, le=1)
    language_detection_options: LanguageDetectionOptions | None = None
    # text
    punctuate: bool | None = _api(True)
    format_text: bool | None = _api(True)
    disfluencies: bool | None = _api(False)
    filter_profanity: bool | None = _api(False)
    custom_spelling: tuple[CustomSpelling, ...] | None = None
    keyterms_prompt: tuple[Text, ...] | None = None
    prompt: Text | None = None
    temperature: float | None = _api(0.0, ge=0, le=1)
    remove_audio_tags: Literal["all"] | None = None
    # speakers and channels
    speaker_labels: bool | None = _api(False)
    speakers_expected: int | None = Field(None, ge=1)
    speaker_options: SpeakerOptions | None = None
    multichannel: bool | None = _api(False)
    # what part of the audio
    audio_start_from: int | None = Field(None, ge=0)
    audio_end_at: int | None = Field(None, ge=0)
    speech_threshold: float | None = _api(0, ge=0, le=1)
    # PII redaction
    redact_pii: bool | None = _api(False)
    redact_pii_policies: tuple[PiiPolicy, ...] | None = None
    redact_pii_sub: Literal["entity_name", "hash"] | None = _api("hash")
    redact_pii_audio: bool | None = _api(False)
    redact_pii_audio_quality: Literal["mp3", "wav"] | None = _api("mp3")
    redact_pii_audio_options: RedactPiiAudioOptions | None = None
    # speech understanding (audio intelligence)
    sentiment_analysis: bool | None = _api(False)
    entity_detection: bool | None = _api(False)
    auto_highlights: bool | None = _api(False)
    iab_categories: bool | None = _api(False)
    content_safety: bool | None = _api(False)
    content_safety_confidence: int | None = _api(50, ge=25, le=100)
    speech_understanding: SpeechUnderstanding | None = None
    # deprecated by AssemblyAI, still sent
    auto_chapters: bool | None = _api(False, deprecated=_LLM_GATEWAY)
    summarization: bool | None = _api(False, deprecated=_LLM_GATEWAY)
    summary_model: Literal["informative", "conversational", "catchy"] | None = _api(
        "informative", deprecated=_LLM_GATEWAY
    )
    summary_type: Literal["bullets", "bullets_verbose", "gist", "headline", "paragraph"] | None = (
        _api("bullets", deprecated=_LLM_GATEWAY)
    )
    topics: tuple[str, ...] | None = Field(None, deprecated=_NO_EFFECT)
    custom_topics: bool | None = _api(False, deprecated=_NO_EFFECT)

    @model_validator(mode="before")
    @classmethod
    def _parse_cells(cls, data: Any) -> Any:
        # CSV cells (and lazy JSON writers) give lists as "a, b" or '["a", "b"]' and nested
        # options as JSON text: parse them here, so every format validates the same values.
        if not isinstance(data, Mapping):
            return data
        parsed = dict(data)
        for name, value in data.items():
            if isinstance(value, str) and name in _CELL_SHAPES:
                parsed[name] = value = _parse_cell(value, _CELL_SHAPES[name])
            if isinstance(value, Mapping) and all(v is None for v in value.values()):
                # A Parquet struct column gives a row that sets none of its keys as an object
                # of nulls: that row sets nothing, as a null cell does.
                del parsed[name]
        return parsed

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

    @field_validator("language_code", "prompt", "speech_model")
    @classmethod
    def _blank_is_error(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("must not be blank")
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
        return self.model_dump(mode="json", exclude_none=True, by_alias=True)

    def request(self, audio_url: str) -> TranscriptParams:
        """The ``POST /v2/transcript`` request for the media at ``audio_url`` with these options."""
        return TranscriptParams(audio_url=audio_url, **self.to_request_params())

    def merged(self, overrides: Mapping[str, Any]) -> TranscriptionOptions:
        """These options with ``overrides`` on top, validated again as a whole.

        Revalidating (rather than ``model_copy(update=...)``) catches wrong types and
        cross-field problems such as an ``audio_end_at`` before the default ``audio_start_from``.
        A nested option (``speaker_options``) is replaced as a whole, not merged key by key.
        """
        if not overrides:
            return self
        base = self.model_dump(exclude_unset=True, by_alias=True)
        return TranscriptionOptions.model_validate({**base, **overrides})

    @property
    def deprecated(self) -> list[str]:
        """The options set here that AssemblyAI deprecated (see :data:`DEPRECATED_OPTIONS`)."""
        return sorted(DEPRECATED_OPTIONS.keys() & self.model_fields_set)


#: What AssemblyAI does when an option is not sent (the spec's defaults, from the fields).
API_DEFAULTS: dict[str, Any] = {
    name: field.json_schema_extra["default"]
    for name, field in TranscriptionOptions.model_fields.items()
    if isinstance(field.json_schema_extra, dict) and "default" in field.json_schema_extra
}
#: The options the spec marks deprecated, with why: they still work, and a run warns once.
DEPRECATED_OPTIONS: dict[str, str] = {
    name: str(field.deprecated)
    for name, field in TranscriptionOptions.model_fields.items()
    if field.deprecated
}
#: The manifest columns that set an option.
OPTION_COLUMNS: frozenset[str] = frozenset(TranscriptionOptions.model_fields)


def _shape(annotation: Any) -> Literal["list", "json"] | None:
    """How a text cell for a field of this type is read: a list of words, JSON, or as is."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    inner = (
        args[0] if typing.get_origin(annotation) in (typing.Union, types.UnionType) else annotation
    )
    if isinstance(inner, type) and issubclass(inner, BaseModel):
        return "json"
    if typing.get_origin(inner) is tuple:
        item = typing.get_args(inner)[0]
        return "json" if isinstance(item, type) and issubclass(item, BaseModel) else "list"
    return None


_CELL_SHAPES: dict[str, Literal["list", "json"]] = {
    name: shape
    for name, field in TranscriptionOptions.model_fields.items()
    if (shape := _shape(field.annotation)) is not None
}


def deprecation_warning(options: typing.Iterable[TranscriptionOptions]) -> str | None:
    """One line saying which deprecated options these items request, or None if none does.

    They still work (voxlake sends them); a run says so once, not once per item.
    """
    used: set[str] = set()
    seen: set[int] = set()
    for item_options in options:
        if id(item_options) not in seen:  # rows share their options objects: check each once
            seen.add(id(item_options))
            used.update(item_options.deprecated)
    if not used:
        return None
    why: dict[str, list[str]] = {}
    for name in sorted(used):
        why.setdefault(DEPRECATED_OPTIONS[name], []).append(name)
    reasons = "; ".join(f"{', '.join(names)}: {reason}" for reason, names in why.items())
    return (
        f"deprecated options requested ({reasons}). They are still sent and still work; "
        "AssemblyAI's LLM Gateway (https://www.assemblyai.com/docs/llm-gateway/overview) is what "
        "replaces chapters and summaries"
    )


def options_hash(options: TranscriptionOptions) -> str:
    """A short, stable fingerprint of the effective options (16 hex chars of a sha256).

    Options left unset and options set to AssemblyAI's documented default hash alike, and so do
    options added to :class:`TranscriptionOptions` later (they default to unset): a hash only
    changes when the request would change what AssemblyAI does. The ledger keys items by it, so
    turning a feature on for one row re-transcribes that row and no other.
    """
    params = {
        k: v
        for k, v in options.to_request_params().items()
        if not (k in API_DEFAULTS and v == API_DEFAULTS[k])
    }
    canonical = json.dumps(params, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:16]


def _parse_cell(text: str, shape: Literal["list", "json"]) -> Any:
    text = text.strip()
    if shape == "json" or text.startswith("["):
        try:
            return json.loads(text)
        except json.JSONDecodeError:
            return text  # let pydantic report "not a valid list/object" with the original text
    return [part.strip() for part in text.split(",") if part.strip()]


def unknown_option_fix(name: str, among: typing.Iterable[str] = OPTION_COLUMNS) -> str:
    """What to do about an option name that is not one: a webhook field, a typo, or neither."""
    if name in RUN_ONLY_FIELDS:
        return (
            "webhooks are not a transcription option: a webhook belongs to the run, not to a "
            "manifest row or the options; remove it, and give the run --webhook-url "
            "(docs/webhooks.md)"
        )
    close = difflib.get_close_matches(name, sorted(among), n=1)
    if close:
        return f"did you mean {close[0]!r}?"
    return "remove it or rename it to a known column or option (see docs/manifest.md)"


def option_path(loc: typing.Sequence[int | str]) -> str:
    """A validation error's ``loc`` as a user writes it: ``speaker_options.max_speakers_expected``.

    The speech understanding union puts its tag before the member's field, which has the same
    name (``request.translation.translation``): it is said once.
    """
    parts: list[str] = []
    for part in loc:
        if isinstance(part, int):
            parts[-1:] = [f"{parts[-1]}[{part}]"] if parts else [f"[{part}]"]
        elif not (parts and parts[-1] == part and part in _REQUESTS):
            parts.append(part)
    return ".".join(parts)


_REQUESTS: dict[str, type[BaseModel]] = {
    "translation": TranslationRequest,
    "speaker_identification": SpeakerIdentificationRequest,
    "custom_formatting": CustomFormattingRequest,
}


def _field_at(loc: typing.Sequence[int | str]) -> tuple[FieldInfo | None, type[BaseModel] | None]:
    """The field of the (nested) option at a validation error's ``loc``, and its value's model.

    An unknown key gives ``(None, the model it is not a key of)``.
    """
    model: type[BaseModel] | None = TranscriptionOptions
    field: FieldInfo | None = None
    previous: int | str | None = None
    for part in loc:
        after, previous = previous, part
        if isinstance(part, int):
            continue  # a list index: the item's type is the list's
        if after == "request" and part in _REQUESTS:
            model = _REQUESTS[part]  # the speech understanding union's tag names its member
            continue
        if model is None:
            break
        fields = {f.alias or n: f for n, f in model.model_fields.items()}
        if part not in fields:
            return None, model
        field = fields[part]
        model = _model_in(field.annotation)
    return field, model


def _model_in(annotation: Any) -> type[BaseModel] | None:
    for candidate in (annotation, *typing.get_args(annotation)):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
        for inner in typing.get_args(candidate):
            if isinstance(inner, type) and issubclass(inner, BaseModel):
                return inner
    return None


def _literal_values(annotation: Any) -> tuple[str, ...]:
    if typing.get_origin(annotation) is Literal:
        return tuple(typing.get_args(annotation))
    for inner in typing.get_args(annotation):
        found = _literal_values(inner)
        if found:
            return found
    return ()


def type_hint(loc: str | typing.Sequence[int | str], value: Any = None) -> str:
    """How to write a valid value for the option at ``loc`` (a name, or a nested error's loc)."""
    path = (loc,) if isinstance(loc, str) else tuple(loc)
    if path == ("speech_models",):
        return f"use {' or '.join(SPEECH_MODELS)}, or both in priority order (a, b)"
    field, model = _field_at(path)
    annotation = field.annotation if field is not None else None
    if path[-2:] == ("speech_understanding", "request") or path[-1:] == ("request",):
        return (
            "write one request, e.g. "
            '{"request": {"translation": {"target_languages": ["es"]}}}; its key is one of '
            + ", ".join(_REQUESTS)
        )
    if annotation is None:
        if model is not None and path and isinstance(path[-1], str):
            known = [f.alias or n for n, f in model.model_fields.items()]
            return unknown_option_fix(path[-1], known)
        return "fix the option values"
    choices = _literal_values(annotation)
    if choices:
        close = difflib.get_close_matches(str(value), choices, n=1) if value is not None else []
        if close:
            return f"did you mean {close[0]!r}?"
        if len(choices) <= 8:
            return f"use {' or '.join(map(repr, choices))}"
        return f"use one of the {len(choices)} values AssemblyAI lists (see docs/manifest.md)"
    if model is not None and model is _model_in(annotation):
        keys = ", ".join(f.alias or n for n, f in model.model_fields.items())
        is_list = (
            _shape(annotation) == "json" and typing.get_origin(_strip_optional(annotation)) is tuple
        )
        what = "a JSON list of objects" if is_list else "a JSON object"
        return f"write {what} with the keys {keys} (JSON text in a CSV cell)"
    inner = _strip_optional(annotation)
    if typing.get_origin(inner) is tuple:
        return 'write a comma-separated list (a, b) or a JSON list (["a", "b"])'
    if typing.get_origin(inner) is Annotated:
        inner = typing.get_args(inner)[0]
    hints: dict[Any, str] = {
        bool: "write true or false",
        int: "write a whole number",
        float: "write a number",
        str: "write text",
    }
    metadata = field.metadata if field is not None else []
    low = next((m.ge for m in metadata if getattr(m, "ge", None) is not None), None)
    high = next((m.le for m in metadata if getattr(m, "le", None) is not None), None)
    hint = hints.get(inner, "fix the option value")
    if low is not None and high is not None:
        return f"{hint} from {low} to {high}"
    if low is not None:
        return f"{hint} of at least {low}"
    return hint


def _strip_optional(annotation: Any) -> Any:
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType) and len(args) == 1:
        return args[0]
    return annotation
