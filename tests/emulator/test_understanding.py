"""Speech understanding on the local server: every feature's result, over HTTP, valid against
openapi.yml; PII redaction in text and words; what the server cannot honour refused with
AssemblyAI's 400 shape (voxlake/emulator/understanding/, docs/local-server.md)."""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.emulator.helpers import MODELS, client, submit, transcribe, upload
from tests.openapi import schema_for, validate_json, validate_response
from tests.reference import assemblyai
from voxlake.emulator import LocalServer
from voxlake.emulator.synth import synth_wav

# A call: a happy start, an angry middle, names, a phone number, an email, money, a date.
CALL = (
    "Good morning, thank you for calling Acme Bank. My name is Sarah Connor. "
    "Hi Sarah, this is John Smith from Boston. I am really angry, my card payment failed again. "
    "That is terrible and I am sorry. Can you confirm your phone number? "
    "Sure, it is 555 123 4567 and my email is john.smith@example.com. "
    "I was charged $250 on March 3rd, 2024 for the flight to London. "
    "I will refund the payment today. The account balance will be fine within 5 days. "
    "Great, that is excellent service, thank you so much. Goodbye."
)
FEATURES: dict[str, Any] = {
    "sentiment_analysis": True,
    "entity_detection": True,
    "auto_chapters": True,
    "auto_highlights": True,
    "iab_categories": True,
    "content_safety": True,
    "speaker_labels": True,
}
SPEC_EXAMPLES = ("fixtures", "spec-examples")
GO_SDK = ("fixtures", "go-sdk")
RESULTS = (
    "sentiment_analysis_results",
    "entities",
    "chapters",
    "auto_highlights_result",
    "iab_categories_result",
    "content_safety_labels",
    "summary",
)


def _get(srv: LocalServer, c: httpx.Client, text: str = CALL, **params: Any) -> dict[str, Any]:
    t = transcribe(srv, c, text=text, duration=40.0, **params)
    # The whole body against the spec's Transcript schema (additionalProperties: false).
    return validate_response("getTranscript", c.get(f"/v2/transcript/{t['id']}"))


def test_every_feature_is_produced_and_matches_the_spec(local_server: LocalServer) -> None:
    with client(local_server) as c:
        body = _get(local_server, c, **FEATURES)
        again = _get(local_server, c, **FEATURES)
        summarised = _get(
            local_server, c, summarization=True, summary_type="bullets", summary_model="informative"
        )
    assert body["status"] == "completed"

    sentiments = body["sentiment_analysis_results"]
    validate_json(schema_for("SentimentAnalysisResult"), sentiments[0])
    assert len(sentiments) == len(c_sentences(body))
    by_text = {s["text"]: s["sentiment"] for s in sentiments}
    assert by_text["That is terrible and I am sorry."] == "NEGATIVE"
    assert by_text["Great, that is excellent service, thank you so much."] == "POSITIVE"
    assert {s["speaker"] for s in sentiments} == {"A", "B"}  # diarized: sentences carry speakers

    found = {(e["entity_type"], e["text"]) for e in body["entities"]}
    for expected in [
        ("person_name", "Sarah Connor"),
        ("person_name", "John Smith"),
        ("location", "Boston"),
        ("organization", "Acme Bank"),
        ("phone_number", "555 123 4567"),
        ("email_address", "john.smith@example.com"),
        ("money_amount", "$250"),
        ("date", "March 3rd, 2024"),
        ("duration", "5 days"),
    ]:
        assert expected in found, (expected, found)
    words = {w["start"]: w for w in body["words"]}
    phone = next(e for e in body["entities"] if e["entity_type"] == "phone_number")
    assert words[phone["start"]]["text"] == "555"  # timed on its words

    (chapter,) = body["chapters"]  # 40 s of speech: one window
    assert chapter["start"] == body["words"][0]["start"]
    assert chapter["end"] == body["words"][-1]["end"]
    assert chapter["headline"] in body["text"] and chapter["gist"]

    highlights = body["auto_highlights_result"]
    assert highlights["status"] == "success"
    top = {h["text"]: h for h in highlights["results"]}
    assert top["payment"]["count"] == 2 and len(top["payment"]["timestamps"]) == 2
    assert all(0 < h["rank"] <= 1 for h in highlights["results"])

    topics = body["iab_categories_result"]
    assert topics["status"] == "success" and topics["results"]
    assert topics["summary"]["PersonalFinance>Banking"] == 1.0  # the call's main topic
    safety = body["content_safety_labels"]
    assert safety["status"] == "success"
    assert set(safety["summary"]) <= set(safety["severity_score_summary"])

    assert summarised["summary"].startswith("- ") and summarised["summary"].count("\n") == 2
    assert summarised["chapters"] is None  # not asked for: null, as AssemblyAI returns it

    # Deterministic: the same words give the same results.
    assert {k: body[k] for k in RESULTS} == {k: again[k] for k in RESULTS}


def c_sentences(body: dict[str, Any]) -> list[str]:
    return [w["text"] for w in body["words"] if w["text"].endswith((".", "?", "!"))]


def test_features_not_requested_stay_null(local_server: LocalServer) -> None:
    with client(local_server) as c:
        body = _get(local_server, c)
    assert {k: body[k] for k in RESULTS} == dict.fromkeys(RESULTS)


@pytest.mark.parametrize(
    ("sub", "name_as"),
    [("entity_name", "[PERSON_NAME]"), ("hash", "#### #####")],  # John Smith
)
def test_pii_redaction_removes_names_and_numbers_from_text_and_words(
    local_server: LocalServer, sub: str, name_as: str
) -> None:
    policies = ["person_name", "phone_number", "email_address"]
    with client(local_server) as c:
        body = _get(
            local_server,
            c,
            redact_pii=True,
            redact_pii_policies=policies,
            redact_pii_sub=sub,
            entity_detection=True,
            sentiment_analysis=True,
        )
        sentences = c.get(f"/v2/transcript/{body['id']}/sentences").json()
    assert body["redact_pii_policies"] == policies and body["redact_pii_sub"] == sub
    everything = " ".join(
        [
            body["text"],
            *(w["text"] for w in body["words"]),
            *(s["text"] for s in sentences["sentences"]),
            *(s["text"] for s in body["sentiment_analysis_results"]),
            *(e["text"] for e in body["entities"]),
        ]
    )
    for secret in ("Sarah", "Connor", "Smith", "555", "4567", "john.smith@example.com"):
        assert secret not in everything, secret
    assert name_as in body["text"]
    assert "Boston" in body["text"]  # a location: not among the policies
    if sub == "entity_name":
        assert "[PHONE_NUMBER] and my email is [EMAIL_ADDRESS]." in body["text"]
    # Entities still say where the redacted ones were, by type.
    assert ("person_name", name_as) in {(e["entity_type"], e["text"]) for e in body["entities"]}


SPEAKER_ID = {
    "request": {
        "speaker_identification": {
            "speaker_type": "name",
            "speakers": [{"name": "Sarah Connor", "description": "the agent"}, {"name": "John"}],
        }
    }
}


def test_speaker_identification_names_the_speakers_from_the_request(
    local_server: LocalServer,
) -> None:
    with client(local_server) as c:
        t = transcribe(
            local_server,
            c,
            text=CALL,
            duration=40.0,
            speaker_labels=True,
            speech_understanding=SPEAKER_ID,
        )
    body = dict(t)
    # The spec's response is a oneOf of three schemas that every object matches (none has a
    # required property), so no response can pass it: validated against its own schema.
    body["speech_understanding"] = dict(t["speech_understanding"])
    response = body["speech_understanding"].pop("response")
    validate_json(schema_for("Transcript"), body)
    validate_json(schema_for("SpeakerIdentificationResponse"), response)
    assert response == {
        "speaker_identification": {
            "mapping": {"A": "Sarah Connor", "B": "John"},
            "status": "success",
        }
    }
    assert {u["speaker"] for u in body["utterances"]} == {"Sarah Connor", "John"}
    assert {w["speaker"] for w in body["words"]} == {"Sarah Connor", "John"}


@pytest.mark.parametrize(
    ("params", "message"),
    [
        (
            {"speech_understanding": {"request": {"translation": {"target_languages": ["es"]}}}},
            "speech_understanding.request.translation is not available on this server",
        ),
        (
            {"speech_understanding": {"request": {"custom_formatting": {"date": "mm/dd/yyyy"}}}},
            "speech_understanding.request.custom_formatting is not available on this server",
        ),
        (
            {"speech_understanding": SPEAKER_ID},
            "Speaker identification requires speaker_labels to be enabled",
        ),
        (
            {"sentiment_analysis": True, "entity_detection": True, "language_code": "de"},
            "The following models are not available in this language: "
            "entity_detection, sentiment_analysis",
        ),
        (
            {"auto_chapters": True, "summarization": True},
            "Only one of the following models can be enabled at a time: "
            "auto_chapters, summarization.",
        ),
        ({"redact_pii": True}, "redact_pii_policies is required when redact_pii is enabled"),
        (
            {"redact_pii": True, "redact_pii_policies": ["person_name", "shoe_size"]},
            "redact_pii_policies must contain only PII policies, got 'shoe_size'",
        ),
    ],
)
def test_what_the_server_cannot_honour_is_a_400_in_assemblyais_shape(
    local_server: LocalServer, params: dict[str, Any], message: str
) -> None:
    with client(local_server) as c:
        audio_url = upload(c, synth_wav("Hello there.", 2.0))
        r = c.post(
            "/v2/transcript", json={"audio_url": audio_url, "speech_models": MODELS, **params}
        )
    assert r.status_code == 400
    body = validate_response("createTranscript", r)
    assert set(body) == {"error"} and body["error"].startswith(message), body


def test_deleting_a_transcript_nulls_its_results(local_server: LocalServer) -> None:
    with client(local_server) as c:
        t = submit(c, upload(c, synth_wav(CALL, 40.0)), **FEATURES)
        local_server.wait_for_transcript(t["id"])
        deleted = validate_response("deleteTranscript", c.delete(f"/v2/transcript/{t['id']}"))
    assert {k: deleted[k] for k in RESULTS} == dict.fromkeys(RESULTS)


def test_reference_transcript_gets_the_entities_assemblyai_found(local_server: LocalServer) -> None:
    """The spec's example transcript is AssemblyAI's own output for the wildfires interview
    (whose text is in the Go SDK's fixtures): the entities it lists whose words are the same in
    both are found here too, with AssemblyAI's types and spans, and every feature result of a
    4.7-minute transcript matches the spec."""
    example = json.loads(assemblyai(*SPEC_EXAMPLES, "Transcript.json").read_text())
    text = assemblyai(*GO_SDK, "wildfires.txt").read_text()
    expected = {(e["entity_type"], e["text"]) for e in example["entities"]}
    expected = {(kind, words) for kind, words in expected if words in text}
    with client(local_server) as c:
        t = transcribe(local_server, c, text=text, duration=281.0, **FEATURES)
        body = validate_response("getTranscript", c.get(f"/v2/transcript/{t['id']}"))
    found = {(e["entity_type"], e["text"]) for e in body["entities"]}
    assert len(expected) >= 8 and expected <= found, expected - found
    assert len(body["chapters"]) >= 3  # windows of at most 90 s
    ends = [(ch["start"], ch["end"]) for ch in body["chapters"]]
    assert all(a[1] < b[0] for a, b in itertools.pairwise(ends))  # in order, apart
    assert all(ch["headline"] in body["text"] for ch in body["chapters"])  # extractive


def test_results_outlive_a_restart_with_a_state_directory(
    tmp_path: Path, make_server: Callable[..., LocalServer]
) -> None:
    first = make_server(state_dir=tmp_path / "state")
    params = {**FEATURES, "redact_pii": True, "redact_pii_policies": ["person_name"]}
    with client(first) as c:
        t = transcribe(first, c, text=CALL, duration=40.0, **params)
    first.stop()
    with client(make_server(state_dir=tmp_path / "state")) as c:
        again = c.get(f"/v2/transcript/{t['id']}").json()
    assert again == t and again["entities"] and "Sarah" not in again["text"]
