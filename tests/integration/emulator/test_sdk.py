"""AssemblyAI's own Python SDK against the local server: its ``Transcriber`` uploads,
submits with every understanding feature on and polls, and its typed models (pydantic, with
enums for entity types and content-safety labels) parse every result the server produces.

The SDK ignores fields it does not model, so each typed field is checked for values, not only
for the absence of an error. (``benchmarks/peers/sdk_group.py`` points it at the server the
same way.)"""

from __future__ import annotations

from pathlib import Path

import assemblyai as aai
import pytest

from tests.integration.emulator.helpers import MODELS
from tests.support.secrets import KEY_A
from voxlake.emulator import LocalServer
from voxlake.emulator.synth import write_synth_wav
from voxlake.emulator.understanding.labels import SAFETY

# Two speakers (the scripted engine's turns), names, numbers, topic and content-safety words.
CALL = (
    "Good morning, thank you for calling Acme Bank. My name is Sarah Connor. "
    "Hi Sarah, this is John Smith from Boston. I am really angry, my card payment failed again. "
    "Can you confirm your phone number? Sure, it is 555 123 4567. "
    "I was charged $250 on March 3rd, 2024 for the flight to London. "
    "Damn, the wildfire near my house was a disaster. "
    "I will refund the payment today. Great, that is excellent service, thank you so much."
)
# The SDK 1.8.2 calls pydantic's v1 methods (`copy()`, `dict()`): its warnings, not ours.
pytestmark = pytest.mark.filterwarnings(
    "ignore::pydantic.warnings.PydanticDeprecatedSince20:assemblyai"
)
POLICIES = [aai.PIIRedactionPolicy.phone_number, aai.PIIRedactionPolicy.money_amount]


def _config(**only: object) -> aai.TranscriptionConfig:
    config = aai.TranscriptionConfig(
        speech_models=MODELS,
        speaker_labels=True,
        sentiment_analysis=True,
        entity_detection=True,
        auto_highlights=True,
        iab_categories=True,
        content_safety=True,
        speech_understanding={
            "request": {
                "speaker_identification": {
                    "speaker_type": "name",
                    "known_values": ["Sarah Connor", "John Smith"],
                }
            }
        },
        **only,  # type: ignore[arg-type]
    )
    return config.set_redact_pii(
        policies=POLICIES, substitution=aai.PIISubstitutionPolicy.entity_name
    )


@pytest.fixture
def transcriber(local_server: LocalServer) -> aai.Transcriber:
    # Its own client and settings: the SDK's global `aai.settings` stays untouched for
    # whatever else runs in this process. A short poll interval keeps the test quick.
    settings = aai.Settings(base_url=local_server.base_url, api_key=KEY_A, polling_interval=0.05)
    return aai.Transcriber(client=aai.Client(settings=settings))


def test_the_sdk_parses_every_understanding_result(
    transcriber: aai.Transcriber, tmp_path: Path
) -> None:
    audio = write_synth_wav(tmp_path / "call.wav", CALL, 40.0)
    t = transcriber.transcribe(str(audio), config=_config(auto_chapters=True))
    assert t.status == aai.TranscriptStatus.completed, t.error

    # PII redaction, by policy, with the substitution asked for: text and words.
    assert t.text is not None and "[PHONE_NUMBER]" in t.text and "[MONEY_AMOUNT]" in t.text
    assert "555" not in t.text and "$250" not in t.text
    assert t.words and any(w.text.startswith("[MONEY_AMOUNT]") for w in t.words)

    # Speaker labels, named by speaker identification.
    assert t.utterances and {u.speaker for u in t.utterances} == {"Sarah Connor", "John Smith"}
    assert t.speech_understanding is not None and t.speech_understanding.response is not None
    ident = t.speech_understanding.response.speaker_identification
    assert ident is not None and ident.status == "success"
    assert ident.mapping == {"A": "Sarah Connor", "B": "John Smith"}

    assert t.sentiment_analysis
    assert {s.sentiment for s in t.sentiment_analysis} == {
        aai.SentimentType.positive,
        aai.SentimentType.negative,
        aai.SentimentType.neutral,
    }
    assert all(s.text and s.end > s.start and 0 < s.confidence <= 1 for s in t.sentiment_analysis)
    assert {s.speaker for s in t.sentiment_analysis} == {"Sarah Connor", "John Smith"}

    assert t.entities
    found = {(e.entity_type, e.text) for e in t.entities}
    assert (aai.EntityType.person_name, "Sarah Connor") in found
    assert (aai.EntityType.location, "Boston") in found
    assert (aai.EntityType.phone_number, "[PHONE_NUMBER]") in found  # redacted by its policy
    assert any(e.entity_type == aai.EntityType.date for e in t.entities)

    assert t.chapters and all(c.headline and c.summary and c.gist for c in t.chapters)
    assert all(c.end > c.start for c in t.chapters)

    assert t.auto_highlights is not None and t.auto_highlights.results
    assert t.auto_highlights.status == aai.types.StatusResult.success
    top = t.auto_highlights.results[0]
    assert top.text and top.count >= 1 and top.rank is not None and top.timestamps

    topics = t.iab_categories
    assert topics is not None and topics.results and topics.summary
    assert topics.summary["PersonalFinance>Banking"] == 1.0
    assert all(r.text and r.timestamp.end > r.timestamp.start for r in topics.results)
    assert any(lab.relevance > 0 for r in topics.results for lab in r.labels)

    safety = t.content_safety
    assert safety is not None and safety.results and safety.summary
    assert safety.severity_score_summary
    labels = {lab.label for r in safety.results for lab in r.labels}
    assert {aai.types.ContentSafetyLabel.profanity, aai.types.ContentSafetyLabel.disasters} <= (
        labels
    )
    assert all(lab.severity is not None for r in safety.results for lab in r.labels)


def test_the_sdk_parses_a_summary(transcriber: aai.Transcriber, tmp_path: Path) -> None:
    # Chapters and a summary are exclusive (AssemblyAI's rule): the summary on its own request.
    audio = write_synth_wav(tmp_path / "call.wav", CALL, 40.0)
    config = _config(
        summarization=True,
        summary_model=aai.SummarizationModel.informative,
        summary_type=aai.SummarizationType.bullets,
    )
    t = transcriber.transcribe(str(audio), config=config)
    assert t.status == aai.TranscriptStatus.completed, t.error
    assert t.summary and t.summary.startswith("- ") and t.chapters is None


def test_every_content_safety_label_the_server_gives_is_one_the_sdk_knows(
    transcriber: aai.Transcriber, tmp_path: Path
) -> None:
    # One sentence per label of the server's lists, with that label's first keyword.
    script = " ".join(f"They spoke about {words.split()[0]}." for words in SAFETY.values())
    audio = write_synth_wav(tmp_path / "all.wav", script, 60.0)
    t = transcriber.transcribe(
        str(audio), config=aai.TranscriptionConfig(speech_models=MODELS, content_safety=True)
    )
    assert t.status == aai.TranscriptStatus.completed, t.error
    assert t.content_safety is not None and t.content_safety.summary is not None
    assert {label.value for label in t.content_safety.summary} == set(SAFETY)
