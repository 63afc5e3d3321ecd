"""Speech understanding on the local server: every AssemblyAI audio-intelligence result,
computed from the words the engine recognised with small, deterministic methods (one module
each; docs/local-server.md lists them).

:func:`check_request` refuses, at ``POST /v2/transcript``, what the server cannot honour,
with AssemblyAI's 400 shape; :func:`understand` runs after recognition, in the engine's
worker thread, and returns the result with redacted/renamed words and the feature results in
``extra["understanding"]`` (kept on disk with the rest, rendered by ``render.transcript_json``).
Order: entities are found on the recognised words; PII is redacted; speakers are named; every
other feature reads the redacted words, so no result repeats what redaction removed.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from voxlake.emulator.engines import EngineResult
from voxlake.emulator.params import ParamError
from voxlake.emulator.understanding import chapters, keyphrases, labels, sentiment, speakers
from voxlake.emulator.understanding.entities import entity_results, find_entities
from voxlake.emulator.understanding.redaction import redact, substitute
from voxlake.emulator.understanding.text import segments, sentences, span_text

#: The features a request may ask for, in AssemblyAI's names; all need English text here.
FEATURES = (
    "auto_chapters",
    "auto_highlights",
    "content_safety",
    "entity_detection",
    "iab_categories",
    "redact_pii",
    "sentiment_analysis",
    "summarization",
)
EXTRA_KEY = "understanding"
DEFAULT_CONTENT_SAFETY_CONFIDENCE = 50


def _task(params: dict[str, Any]) -> dict[str, Any] | None:
    su = params.get("speech_understanding")
    request = su.get("request") if isinstance(su, dict) else None
    return request if isinstance(request, dict) else None


def check_request(params: dict[str, Any]) -> None:
    """Raise ParamError (a 400) for a request this server cannot honour as asked."""
    asked = [f for f in FEATURES if params.get(f)]
    language = params.get("language_code")
    if asked and language is not None and not str(language).startswith("en"):
        # AssemblyAI's wording for a model a language lacks (API_NOTES §2); ours are English.
        raise ParamError(
            f"The following models are not available in this language: {', '.join(asked)}"
        )
    if params.get("auto_chapters") and params.get("summarization"):
        raise ParamError(
            "Only one of the following models can be enabled at a time: "
            "auto_chapters, summarization."
        )
    if (
        params.get("summarization")
        and params.get("summary_model") == "conversational"
        and not (params.get("speaker_labels") or params.get("multichannel"))
    ):
        raise ParamError(
            "summary_model conversational requires speaker_labels or multichannel to be enabled"
        )
    if params.get("redact_pii") and not params.get("redact_pii_policies"):
        raise ParamError("redact_pii_policies is required when redact_pii is enabled")
    if "speech_understanding" in params:
        _check_speech_understanding(params)


def _check_speech_understanding(params: dict[str, Any]) -> None:
    request = _task(params)
    if request is None:
        raise ParamError("speech_understanding.request must be an Object")
    if "translation" in request or "custom_formatting" in request:
        task = "translation" if "translation" in request else "custom_formatting"
        raise ParamError(
            f"speech_understanding.request.{task} is not available on this server: it has no "
            "offline method for it. Remove it, or send the request to AssemblyAI."
        )
    config = request.get("speaker_identification")
    if not isinstance(config, dict):
        raise ParamError(
            "speech_understanding.request must have one of: translation, "
            "speaker_identification, custom_formatting"
        )
    kind = config.get("speaker_type")
    if kind not in ("name", "role"):
        raise ParamError(
            "speech_understanding.request.speaker_identification.speaker_type must be one of: "
            "role, name"
        )
    known = config.get("known_values")
    if known is not None and (
        not isinstance(known, list) or not all(isinstance(v, str) and len(v) <= 35 for v in known)
    ):
        raise ParamError(
            "speech_understanding.request.speaker_identification.known_values must be an Array "
            "of Strings of 35 characters or less"
        )
    found = config.get("speakers")
    if found is not None and (
        not isinstance(found, list) or not all(isinstance(s, dict) for s in found)
    ):
        raise ParamError(
            "speech_understanding.request.speaker_identification.speakers must be an Array of "
            "Objects"
        )
    if not speakers.names(config):
        # The real service can guess names from what is said; offline, only the request can.
        raise ParamError(
            f"speech_understanding.request.speaker_identification needs the speakers' {kind}s "
            f"in known_values or speakers[].{kind} on this server"
        )
    if not params.get("speaker_labels"):
        raise ParamError("Speaker identification requires speaker_labels to be enabled")


def understand(result: EngineResult, params: dict[str, Any]) -> EngineResult:
    """``result`` with the requested features computed (see the module doc)."""
    task = _task(params)
    if not any(params.get(f) for f in FEATURES) and task is None:
        return result
    words = list(result.words)
    out: dict[str, Any] = {}
    found = (
        find_entities(words) if params.get("entity_detection") or params.get("redact_pii") else []
    )
    policies = set(params.get("redact_pii_policies") or ()) if params.get("redact_pii") else set()
    sub = params.get("redact_pii_sub") or "hash"
    if params.get("entity_detection"):
        entities = entity_results(words, found)
        for item, f in zip(entities, found, strict=True):
            if f.entity_type in policies:
                item["text"] = span_text(substitute(words[f.first : f.stop], f.entity_type, sub))
        out["entities"] = entities
    if policies:
        words = redact(words, found, sorted(policies), sub)
    if task is not None and isinstance(task.get("speaker_identification"), dict):
        words, mapping = speakers.identify(words, task["speaker_identification"])
        response = {"speaker_identification": {"mapping": mapping, "status": "success"}}
        out["speech_understanding"] = {"request": task, "response": response}
    sents = sentences(words)
    if params.get("sentiment_analysis"):
        out["sentiment_analysis_results"] = sentiment.sentiment_results(sents)
    if params.get("auto_highlights"):
        out["auto_highlights_result"] = keyphrases.highlights_result(sents)
    if params.get("auto_chapters"):
        out["chapters"] = chapters.chapter_results(sents)
    if params.get("summarization"):
        out["summary"] = chapters.summary(sents, params.get("summary_type"))
    if params.get("iab_categories") or params.get("content_safety"):
        segs = segments(sents)
        if params.get("iab_categories"):
            out["iab_categories_result"] = labels.topics_result(sents, segs)
        if params.get("content_safety"):
            threshold = params.get("content_safety_confidence", DEFAULT_CONTENT_SAFETY_CONFIDENCE)
            out["content_safety_labels"] = labels.safety_result(sents, segs, threshold)
    return replace(result, words=words, extra={**result.extra, EXTRA_KEY: out})
