"""The transcription options agree with the spec AssemblyAI's API validates requests against.

voxlake.manifest.options.TranscriptionOptions is written by hand (typed, documented fields);
these tests load openapi.yml and check that it has every property of ``TranscriptOptionalParams``
(but the webhook fields, which are the run's), with the spec's types of values, enumerations,
ranges, defaults and deprecations, nested objects included. A property AssemblyAI adds to the
spec fails here until it is declared.
"""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from tests.openapi import _resolve, schema_for, spec, validate_json
from voxlake.manifest.options import (
    API_DEFAULTS,
    DEPRECATED_OPTIONS,
    OPTION_COLUMNS,
    RUN_ONLY_FIELDS,
    TranscriptionOptions,
)

_MODEL = TranscriptionOptions.model_json_schema(by_alias=True)


def _spec_params() -> dict[str, Any]:
    return spec()["components"]["schemas"]["TranscriptOptionalParams"]


def _model_resolve(node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        node = _MODEL["$defs"][node["$ref"].rsplit("/", 1)[-1]]
    return node


def _facts(node: dict[str, Any], resolve: Any) -> dict[str, Any]:
    """What a schema says about a value, in one shape for the spec's and pydantic's schemas:
    the branches of anyOf/oneOf merged, ``null`` left out (an unset option is not sent)."""
    # OpenAPI 3.1 lets a $ref have siblings: summary_type is a $ref, deprecated beside it.
    facts: dict[str, Any] = {
        "default": node.get("default", resolve(node).get("default")),
        "deprecated": bool(node.get("deprecated") or resolve(node).get("deprecated")),
    }
    node = resolve(node)
    branches = node.get("anyOf") or node.get("oneOf")
    if branches:
        merged: dict[str, Any] = {"enum": set(), "types": set(), "properties": {}}
        free_text = False
        for branch in branches:
            sub = _facts(branch, resolve)
            if sub["types"] <= {"null"}:
                continue
            merged["types"] |= sub["types"]
            free_text |= sub["enum"] is None and "string" in sub["types"]
            merged["enum"] |= sub["enum"] or set()
            merged["properties"].update(sub["properties"])
            for key in ("minimum", "maximum", "items"):
                if key in sub:
                    merged[key] = sub[key]
        if free_text or not merged["enum"]:
            merged["enum"] = None  # an enum or any string (language_code): any string
        return {**merged, **facts}
    types = node.get("type", [])
    facts["types"] = set(types if isinstance(types, list) else [types]) - {"null"}
    if "enum" in node or "const" in node:
        facts["types"] |= {"string"}
    # A YAML 1.1 reader takes the language code `no` (Norwegian) for false.
    facts["enum"] = {"no" if v is False else v for v in node["enum"]} if "enum" in node else None
    if "const" in node:
        facts["enum"] = {node["const"]}
    for key in ("minimum", "maximum"):
        if key in node:
            facts[key] = node[key]
    if "items" in node:
        facts["items"] = _facts(node["items"], resolve)
    facts["properties"] = {
        name: _facts(sub, resolve) for name, sub in node.get("properties", {}).items()
    }
    return facts


def _compare(path: str, want: dict[str, Any], have: dict[str, Any], problems: list[str]) -> None:
    # pydantic writes a tuple as an array, an int as "integer", a float as "number".
    if want["types"] and have["types"] and not want["types"] & have["types"]:
        problems.append(f"{path}: type {sorted(have['types'])}, spec {sorted(want['types'])}")
    if want["enum"] != have["enum"]:
        problems.append(f"{path}: enum {have['enum']}, spec {want['enum']}")
    for key in ("minimum", "maximum"):
        if key in want and have.get(key) != want[key]:
            problems.append(f"{path}: {key} {have.get(key)}, spec {want[key]}")
    if want["default"] is not None and have["default"] != want["default"]:
        problems.append(f"{path}: default {have['default']!r}, spec {want['default']!r}")
    if want["deprecated"] != have["deprecated"]:
        problems.append(f"{path}: deprecated {have['deprecated']}, spec {want['deprecated']}")
    if "items" in want:
        if "items" not in have:
            problems.append(f"{path}: not a list")
        else:
            _compare(f"{path}[]", want["items"], have["items"], problems)
    if want["properties"] or have["properties"]:
        if set(want["properties"]) != set(have["properties"]):
            problems.append(
                f"{path}: keys {sorted(have['properties'])}, spec {sorted(want['properties'])}"
            )
        for name in set(want["properties"]) & set(have["properties"]):
            _compare(f"{path}.{name}", want["properties"][name], have["properties"][name], problems)


def _validate_request(request: dict[str, Any]) -> None:
    """``request`` against the spec's ``TranscriptParams``: ``audio_url`` and the optional
    params, each strictly. (Its ``allOf`` beside ``additionalProperties: false`` refuses every
    property in a strict JSON Schema validator, so the two parts are validated apart.)"""
    assert isinstance(request.pop("audio_url"), str)
    validate_json(schema_for("TranscriptOptionalParams"), request)


def test_every_spec_option_but_the_webhook_fields_is_an_option() -> None:
    properties = set(_spec_params()["properties"])
    assert properties >= RUN_ONLY_FIELDS
    assert set(TranscriptionOptions.model_fields) == properties - RUN_ONLY_FIELDS
    assert properties - RUN_ONLY_FIELDS == OPTION_COLUMNS


def test_types_enums_ranges_defaults_and_deprecations_are_the_specs() -> None:
    problems: list[str] = []
    for name, prop in _spec_params()["properties"].items():
        if name in RUN_ONLY_FIELDS:
            continue
        want = _facts(prop, _resolve)
        have = _facts(_MODEL["properties"][name], _model_resolve)
        _compare(name, want, have, problems)
    assert not problems, "\n".join(problems)


def test_deprecated_options_and_api_defaults_are_read_from_the_fields() -> None:
    properties = _spec_params()["properties"]
    assert set(DEPRECATED_OPTIONS) == {n for n, p in properties.items() if p.get("deprecated")}
    assert {"auto_chapters", "summarization", "summary_model", "summary_type", "topics",
            "custom_topics"} <= set(DEPRECATED_OPTIONS)  # fmt: skip
    expected = {
        n: _resolve(p).get("default", p.get("default"))
        for n, p in properties.items()
        if n not in RUN_ONLY_FIELDS and p.get("default", _resolve(p).get("default")) is not None
    }
    assert expected == API_DEFAULTS


def test_the_specs_example_request_is_valid_options_and_their_request_is_valid_for_the_spec() -> (
    None
):
    example = dict(spec()["components"]["schemas"]["TranscriptParams"]["example"])
    del example["audio_url"]
    example = {k: v for k, v in example.items() if k not in RUN_ONLY_FIELDS and v is not None}
    options = TranscriptionOptions(**example)
    _validate_request(options.request("https://cdn.example.com/a.mp3").to_request())


def test_every_nested_option_filled_in_makes_a_request_the_spec_accepts() -> None:
    options = TranscriptionOptions(
        speech_models=["universal-3-pro", "universal-2"],
        language_codes=["en", "es"],
        language_detection_options={
            "expected_languages": ["en", "es"],
            "fallback_language": "en",
            "code_switching": True,
            "code_switching_confidence_threshold": 0.5,
        },
        custom_spelling=[{"from": ["dicarlo", "di carlo"], "to": "DiCarlo"}],
        speaker_options={"min_speakers_expected": 2, "max_speakers_expected": 4},
        redact_pii=True,
        redact_pii_policies=["person_name", "phone_number"],
        redact_pii_sub="entity_name",
        redact_pii_audio=True,
        redact_pii_audio_quality="wav",
        redact_pii_audio_options={
            "return_redacted_no_speech_audio": True,
            "override_audio_redaction_method": "silence",
        },
        content_safety=True,
        content_safety_confidence=80,
        speech_understanding={
            "request": {
                "speaker_identification": {
                    "speaker_type": "role",
                    "known_values": ["agent", "customer"],
                    "speakers": [{"role": "agent", "description": "answers", "company": "X"}],
                }
            }
        },
        remove_audio_tags="all",
        temperature=0.2,
        summarization=True,
        summary_model="catchy",
        summary_type="gist",
    )
    request = options.request("https://cdn.example.com/a.mp3").to_request()
    _validate_request(request)
    assert request["custom_spelling"] == [{"from": ["dicarlo", "di carlo"], "to": "DiCarlo"}]
    assert request["speech_understanding"]["request"]["speaker_identification"]["speakers"] == [
        {"role": "agent", "description": "answers", "company": "X"}
    ]


@pytest.mark.parametrize(
    "values",
    [
        {"content_safety_confidence": 24},
        {"content_safety_confidence": 101},
        {"temperature": 1.5},
        {"redact_pii_sub": "mask"},
        {"redact_pii_policies": ["social_security"]},
        {"language_codes": ["klingon"]},
        {"summary_type": "essay"},
        {"remove_audio_tags": "some"},
        {"speaker_options": {"max_speakers": 3}},
        {"custom_spelling": [{"from": ["a"]}]},
        {"redact_pii_audio_options": {"override_audio_redaction_method": "beep"}},
        {"language_detection_options": {"code_switching_confidence_threshold": 2}},
        {"speech_understanding": {"request": {"translation": {"formal": True}}}},
    ],
)
def test_what_the_spec_refuses_the_options_refuse(values: dict[str, Any]) -> None:
    request = {"audio_url": "https://cdn.example.com/a.mp3", "speech_models": ["universal-2"]}
    with pytest.raises(AssertionError, match="does not match the spec"):
        _validate_request(request | values)
    with pytest.raises(ValidationError):
        TranscriptionOptions.model_validate(values)
