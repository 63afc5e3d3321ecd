"""Validation of POST /v2/transcript bodies, with AssemblyAI-style 400 messages.

Which request fields are echoed into the Transcript: the ones the spec's ``Transcript`` schema
defines (it has ``additionalProperties: false``), plus the removed-from-spec ``word_boost`` and
``boost_param`` when a client sends them (the Go SDK fixtures show them echoed).
``webhook_auth_header_value`` is never echoed. Unknown fields are ignored.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit


class ParamError(ValueError):
    """A 400 with ``message`` as the ``error`` string."""


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _bool(name: str, v: Any) -> None:
    if not isinstance(v, bool):
        raise ParamError(f"{name} must be a Boolean")


def _int(name: str, v: Any) -> None:
    if not _is_int(v):
        raise ParamError(f"{name} must be an Integer")


def _str(name: str, v: Any) -> None:
    if not isinstance(v, str):
        raise ParamError(f"{name} must be a String")


def _obj(name: str, v: Any) -> None:
    if not isinstance(v, dict):
        raise ParamError(f"{name} must be an Object")


def _str_list(name: str, v: Any) -> None:
    if not isinstance(v, list):
        raise ParamError(f"{name} must be an Array")
    if not all(isinstance(x, str) for x in v):
        raise ParamError(f"{name} must be an Array of Strings")


def _unit(name: str, v: Any) -> None:
    if not _is_num(v):
        raise ParamError(f"{name} must be a Number")
    if not 0 <= v <= 1:
        raise ParamError(f"{name} must be between 0 and 1")


def _enum(*allowed: str) -> Callable[[str, Any], None]:
    def check(name: str, v: Any) -> None:
        if v not in allowed:
            raise ParamError(f"{name} must be one of: {', '.join(allowed)}")

    return check


def _url(name: str, v: Any) -> None:
    _str(name, v)
    parts = urlsplit(v)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ParamError(f"{name} must be a valid URL")


def _content_safety_confidence(name: str, v: Any) -> None:
    _int(name, v)
    if not 25 <= v <= 100:
        raise ParamError(f"{name} must be between 25 and 100")


def _custom_spelling(name: str, v: Any) -> None:
    if not isinstance(v, list):
        raise ParamError(f"{name} must be an Array")
    for item in v:
        if (
            not isinstance(item, dict)
            or not isinstance(item.get("to"), str)
            or not isinstance(item.get("from"), list)
            or not all(isinstance(x, str) for x in item["from"])
        ):
            raise ParamError(f"{name} items must be objects with 'from' (Array) and 'to' (String)")


#: The speech models AssemblyAI has (API_NOTES: "Current models are universal-3-pro and
#: universal-2"; the spec dropped its enum, so the live list is the docs'). The client keeps its
#: own copy (voxlake/manifest/options.py SPEECH_MODELS): the emulator shares no code with the
#: client, so that a client mistake cannot hide behind the same mistake here. Change both.
SPEECH_MODELS = ("universal-3-pro", "universal-2")
#: The deprecated single ``speech_model``'s old enum (SDK ``SpeechModel``), still accepted.
LEGACY_SPEECH_MODELS = ("best", "nano", "slam-1", "universal", *SPEECH_MODELS)


def _speech_models(name: str, v: Any) -> None:
    _str_list(name, v)
    for model in v:
        if model not in SPEECH_MODELS:
            raise ParamError(
                f"{name} must contain only supported speech models "
                f"({', '.join(SPEECH_MODELS)}), got {model!r}"
            )


#: SPEC ``TranscriptLanguageCode`` (the live API rejects codes outside it).
LANGUAGE_CODES = frozenset(
    [
        "en",
        "en_au",
        "en_uk",
        "en_us",
        "es",
        "fr",
        "de",
        "it",
        "pt",
        "nl",
        "af",
        "sq",
        "am",
        "ar",
        "hy",
        "as",
        "az",
        "ba",
        "eu",
        "be",
        "bn",
        "bs",
        "br",
        "bg",
        "my",
        "ca",
        "zh",
        "hr",
        "cs",
        "da",
        "et",
        "fo",
        "fi",
        "gl",
        "ka",
        "el",
        "gu",
        "ht",
        "ha",
        "haw",
        "he",
        "hi",
        "hu",
        "is",
        "id",
        "ja",
        "jw",
        "kn",
        "kk",
        "km",
        "ko",
        "lo",
        "la",
        "lv",
        "ln",
        "lt",
        "lb",
        "mk",
        "mg",
        "ms",
        "ml",
        "mt",
        "mi",
        "mr",
        "mn",
        "ne",
        "no",
        "nn",
        "oc",
        "pa",
        "ps",
        "fa",
        "pl",
        "ro",
        "ru",
        "sa",
        "sr",
        "sn",
        "sd",
        "si",
        "sk",
        "sl",
        "so",
        "su",
        "sw",
        "sv",
        "tl",
        "tg",
        "ta",
        "tt",
        "te",
        "th",
        "bo",
        "tr",
        "tk",
        "uk",
        "ur",
        "uz",
        "vi",
        "cy",
        "yi",
        "yo",
    ]
)


#: SPEC ``PiiPolicy`` (the same names as ``EntityType``).
PII_POLICIES = frozenset(
    [
        "account_number",
        "banking_information",
        "blood_type",
        "credit_card_cvv",
        "credit_card_expiration",
        "credit_card_number",
        "date",
        "date_interval",
        "date_of_birth",
        "drivers_license",
        "drug",
        "duration",
        "email_address",
        "event",
        "filename",
        "gender_sexuality",
        "healthcare_number",
        "injury",
        "ip_address",
        "language",
        "location",
        "marital_status",
        "medical_condition",
        "medical_process",
        "money_amount",
        "nationality",
        "number_sequence",
        "occupation",
        "organization",
        "passport_number",
        "password",
        "person_age",
        "person_name",
        "phone_number",
        "physical_attribute",
        "political_affiliation",
        "religion",
        "statistics",
        "time",
        "url",
        "us_social_security_number",
        "username",
        "vehicle_id",
        "zodiac_sign",
    ]
)


def _pii_policies(name: str, v: Any) -> None:
    _str_list(name, v)
    for policy in v:
        if policy not in PII_POLICIES:
            raise ParamError(f"{name} must contain only PII policies, got {policy!r}")


def _language(name: str, v: Any) -> None:
    _str(name, v)
    if v not in LANGUAGE_CODES:
        raise ParamError(f"{name} must be a supported language code, got {v!r}")


def _language_list(name: str, v: Any) -> None:
    _str_list(name, v)
    for code in v:
        _language(name, code)


_BOOLS = [
    "auto_chapters",
    "auto_highlights",
    "content_safety",
    "disfluencies",
    "entity_detection",
    "filter_profanity",
    "format_text",
    "iab_categories",
    "language_detection",
    "multichannel",
    "punctuate",
    "redact_pii",
    "redact_pii_audio",
    "sentiment_analysis",
    "speaker_labels",
    "summarization",
    "custom_topics",
]

# name -> (checker, null allowed)
_RULES: dict[str, tuple[Callable[[str, Any], None], bool]] = {
    **{n: (_bool, False) for n in _BOOLS},
    "audio_url": (_url, False),
    "audio_start_from": (_int, False),
    "audio_end_at": (_int, False),
    "speakers_expected": (_int, True),
    "content_safety_confidence": (_content_safety_confidence, False),
    "language_confidence_threshold": (_unit, False),
    "speech_threshold": (_unit, True),
    "temperature": (_unit, False),
    "language_code": (_language, True),
    "language_codes": (_language_list, True),
    "speech_models": (_speech_models, False),
    "speech_model": (_enum(*LEGACY_SPEECH_MODELS), True),
    "keyterms_prompt": (_str_list, False),
    "prompt": (_str, False),
    "topics": (_str_list, False),
    "word_boost": (_str_list, False),
    "boost_param": (_enum("low", "default", "high"), True),
    "redact_pii_policies": (_pii_policies, False),
    "redact_pii_sub": (_enum("entity_name", "hash"), True),
    "redact_pii_audio_quality": (_enum("mp3", "wav"), False),
    "remove_audio_tags": (_enum("all"), True),
    "summary_model": (_enum("informative", "conversational", "catchy"), False),
    "summary_type": (
        _enum("bullets", "bullets_verbose", "gist", "headline", "paragraph"),
        False,
    ),
    "webhook_url": (_url, True),
    "webhook_auth_header_name": (_str, True),
    "webhook_auth_header_value": (_str, True),
    "custom_spelling": (_custom_spelling, False),
    "language_detection_options": (_obj, False),
    "speaker_options": (_obj, False),
    "speech_understanding": (_obj, False),
    "redact_pii_audio_options": (_obj, False),
}

#: Request fields the spec's Transcript schema has a property for (so they may be echoed).
TRANSCRIPT_ECHO = frozenset(
    [
        "audio_end_at",
        "audio_start_from",
        "auto_chapters",
        "auto_highlights",
        "content_safety",
        "custom_spelling",
        "disfluencies",
        "entity_detection",
        "filter_profanity",
        "format_text",
        "iab_categories",
        "keyterms_prompt",
        "language_code",
        "language_codes",
        "language_confidence_threshold",
        "language_detection",
        "language_detection_options",
        "multichannel",
        "prompt",
        "punctuate",
        "redact_pii",
        "redact_pii_audio",
        "redact_pii_audio_options",
        "redact_pii_audio_quality",
        "redact_pii_policies",
        "redact_pii_sub",
        "sentiment_analysis",
        "speaker_labels",
        "speakers_expected",
        "speech_models",
        "speech_threshold",
        "speech_understanding",
        "summarization",
        "summary_model",
        "summary_type",
        "remove_audio_tags",
        "temperature",
        "webhook_auth_header_name",
        "webhook_url",
        "custom_topics",
        "speech_model",
        "topics",
    ]
)
OFF_SPEC_ECHO = ("word_boost", "boost_param")


def validate_transcript_request(body: Any) -> dict[str, Any]:
    """Return the validated params (unknown keys dropped) or raise ParamError."""
    if not isinstance(body, dict):
        raise ParamError("Request body must be a JSON object")
    if body.get("audio_url") is None:
        raise ParamError("audio_url is required")
    if body.get("speech_models") is None:
        # The docs: "There is no default model. If you omit speech_models, the request will fail."
        raise ParamError("speech_models is required")
    out: dict[str, Any] = {}
    for name, value in body.items():
        rule = _RULES.get(name)
        if rule is None:
            continue
        check, nullable = rule
        if value is None:
            if not nullable:
                raise ParamError(_null_message(name, check))
        else:
            check(name, value)
        out[name] = value
    if not out["speech_models"]:
        raise ParamError("speech_models must contain at least one model")
    if out.get("webhook_auth_header_value") and not out.get("webhook_auth_header_name"):
        raise ParamError("webhook_auth_header_name is required with webhook_auth_header_value")
    start, end = out.get("audio_start_from"), out.get("audio_end_at")
    if start is not None and end is not None and end <= start:
        raise ParamError("audio_end_at must be greater than audio_start_from")
    return out


def _null_message(name: str, check: Callable[[str, Any], None]) -> str:
    try:
        check(name, object())
    except ParamError as exc:
        return str(exc)
    return f"{name} must not be null"  # pragma: no cover
