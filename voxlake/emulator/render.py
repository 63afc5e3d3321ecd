"""Wire JSON for transcripts and their derived views (sentences, paragraphs, captions, search).

Transcript bodies carry every property of the spec's ``Transcript`` schema that has a meaningful
value and never a property outside it (the schema has ``additionalProperties: false``), except
``word_boost``/``boost_param`` echoed when the client sent them.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from voxlake.emulator.engines import EngineWord
from voxlake.emulator.params import OFF_SPEC_ECHO, TRANSCRIPT_ECHO
from voxlake.emulator.store import TranscriptRecord

DELETED_URL = "http://deleted_by_user"
#: The feature results a transcript may carry; DELETE nulls them (GO fixture deleted.json).
UNDERSTANDING_RESULTS = (
    "auto_highlights_result",
    "chapters",
    "content_safety_labels",
    "entities",
    "iab_categories_result",
    "sentiment_analysis_results",
    "summary",
)
DEFAULT_CHARS_PER_CAPTION = 64
_PARAGRAPH_SENTENCES = 4


def _word(w: EngineWord) -> dict[str, Any]:
    return {
        "text": w.text,
        "start": w.start,
        "end": w.end,
        "confidence": w.confidence,
        "speaker": w.speaker,
        "channel": w.channel,
    }


def _mean_conf(words: Sequence[EngineWord]) -> float:
    return round(sum(w.confidence for w in words) / len(words), 4) if words else 0.0


def _join(words: Sequence[EngineWord]) -> str:
    return " ".join(w.text for w in words)


def _ends_sentence(text: str) -> bool:
    return text.rstrip("\"')]").endswith((".", "?", "!"))


def split_sentences(words: Sequence[EngineWord]) -> list[list[EngineWord]]:
    out: list[list[EngineWord]] = []
    cur: list[EngineWord] = []
    for w in words:
        if cur and (w.speaker != cur[-1].speaker or w.channel != cur[-1].channel):
            out.append(cur)
            cur = []
        cur.append(w)
        if _ends_sentence(w.text):
            out.append(cur)
            cur = []
    if cur:
        out.append(cur)
    return out


def split_paragraphs(words: Sequence[EngineWord]) -> list[list[EngineWord]]:
    out: list[list[EngineWord]] = []
    cur: list[EngineWord] = []
    count = 0
    for sent in split_sentences(words):
        if cur and (count >= _PARAGRAPH_SENTENCES or sent[0].speaker != cur[-1].speaker):
            out.append(cur)
            cur, count = [], 0
        cur.extend(sent)
        count += 1
    if cur:
        out.append(cur)
    return out


def _utterances(words: Sequence[EngineWord]) -> list[dict[str, Any]]:
    out: list[list[EngineWord]] = []
    for w in words:
        if out and out[-1][-1].speaker == w.speaker and out[-1][-1].channel == w.channel:
            out[-1].append(w)
        else:
            out.append([w])
    return [
        {
            "confidence": _mean_conf(u),
            "start": u[0].start,
            "end": u[-1].end,
            "text": _join(u),
            "words": [_word(w) for w in u],
            "speaker": u[0].speaker or "A",
            "channel": u[0].channel,
        }
        for u in out
    ]


def transcript_json(rec: TranscriptRecord) -> dict[str, Any]:
    p = rec.params
    body: dict[str, Any] = {
        "id": rec.id,
        "status": rec.status,
        "audio_url": rec.audio_url,
        "language_model": "assemblyai_default",
        "acoustic_model": "assemblyai_default",
        "speech_model": p.get("speech_model"),
        "speech_models": p.get("speech_models"),
        "language_code": p.get("language_code") or "en_us",
        "language_confidence_threshold": p.get("language_confidence_threshold"),
        "language_confidence": None,
        "text": None,
        "words": None,
        "utterances": None,
        "confidence": None,
        "audio_duration": None,
        "punctuate": p.get("punctuate", True),
        "format_text": p.get("format_text", True),
        "disfluencies": p.get("disfluencies", False),
        "filter_profanity": p.get("filter_profanity", False),
        "speaker_labels": p.get("speaker_labels", False),
        "speakers_expected": p.get("speakers_expected"),
        "multichannel": p.get("multichannel", False),
        "audio_start_from": p.get("audio_start_from"),
        "audio_end_at": p.get("audio_end_at"),
        "webhook_url": p.get("webhook_url"),
        "webhook_status_code": rec.webhook_status_code,
        # Only whether a header is configured is visible; its value never leaves the server.
        "webhook_auth": bool(p.get("webhook_auth_header_name")),
        "webhook_auth_header_name": p.get("webhook_auth_header_name"),
        "speed_boost": False,
        "auto_highlights": p.get("auto_highlights", False),
        "auto_highlights_result": None,
        "redact_pii": p.get("redact_pii", False),
        "redact_pii_audio": p.get("redact_pii_audio", False),
        "redact_pii_audio_quality": p.get("redact_pii_audio_quality"),
        "redact_pii_policies": p.get("redact_pii_policies"),
        "content_safety": p.get("content_safety", False),
        "content_safety_labels": None,
        "iab_categories": p.get("iab_categories", False),
        "iab_categories_result": None,
        "language_detection": p.get("language_detection", False),
        "custom_spelling": p.get("custom_spelling"),
        "throttled": rec.throttled,
        "auto_chapters": p.get("auto_chapters", False),
        "chapters": None,
        "summarization": p.get("summarization", False),
        "summary_type": p.get("summary_type"),
        "summary_model": p.get("summary_model"),
        "summary": None,
        "custom_topics": p.get("custom_topics", False),
        "topics": p.get("topics", []),
        "speech_threshold": p.get("speech_threshold"),
        "sentiment_analysis": p.get("sentiment_analysis", False),
        "sentiment_analysis_results": None,
        "entity_detection": p.get("entity_detection", False),
        "entities": None,
    }
    for name in TRANSCRIPT_ECHO:
        if name in p and name not in body:
            body[name] = p[name]
    for name in OFF_SPEC_ECHO:
        if name in p:
            body[name] = p[name]
    if rec.result is not None and rec.status == "completed":
        res = rec.result
        words = res.words
        body.update(
            text=_join(words),
            words=[_word(w) for w in words],
            confidence=_mean_conf(words),
            audio_duration=round(res.audio_duration),
            language_code=res.language_code,
            language_confidence=res.language_confidence,
            speech_model_used=res.speech_model_used,
        )
        # The speech-understanding results (voxlake.emulator.understanding); the features
        # not asked for stay null, as AssemblyAI returns them.
        body.update(res.extra.get("understanding") or {})
        if p.get("speaker_labels") or p.get("multichannel"):
            body["utterances"] = _utterances(words)
        if p.get("multichannel"):
            body["audio_channels"] = res.audio_channels
    if rec.status == "error":
        body["error"] = rec.error or "Server error, developers have been alerted."
        if rec.result is not None:
            body["audio_duration"] = round(rec.result.audio_duration)
    if rec.deleted:
        _redact(body)
    return body


def _redact(body: dict[str, Any]) -> None:
    """What DELETE leaves behind (GO fixture deleted.json): the shell of the transcript."""
    body.update(
        audio_url=DELETED_URL,
        text="Deleted by user.",
        webhook_url=DELETED_URL,
        words=None,
        utterances=None,
        confidence=None,
        punctuate=None,
        format_text=None,
        speaker_labels=None,
        filter_profanity=None,
        redact_pii_audio=None,
        redact_pii_audio_quality=None,
        redact_pii_policies=None,
        content_safety=None,
        iab_categories=None,
        language_detection=None,
        custom_spelling=None,
        custom_topics=None,
        speed_boost=None,
        speech_threshold=None,
        speakers_expected=None,
        throttled=None,
        **dict.fromkeys(UNDERSTANDING_RESULTS),
    )
    for key in ("prompt", "keyterms_prompt", "audio_channels", "error", "speech_understanding"):
        body.pop(key, None)
    if body.get("status") == "error":
        # A deleted errored transcript still reports error; keep the schema-required text.
        body["error"] = "Deleted by user."


def list_item(rec: TranscriptRecord, base_url: str) -> dict[str, Any]:
    return {
        "id": rec.id,
        "resource_url": f"{base_url}/v2/transcript/{rec.id}",
        "status": rec.status,
        "created": rec.created,
        "completed": rec.completed,
        "audio_url": DELETED_URL if rec.deleted else rec.audio_url,
        "error": rec.error if rec.status == "error" else None,
    }


def sentences_json(rec: TranscriptRecord) -> dict[str, Any]:
    assert rec.result is not None
    words = rec.result.words
    return {
        "id": rec.id,
        "confidence": _mean_conf(words),
        "audio_duration": round(rec.result.audio_duration),
        "sentences": [
            {
                "text": _join(s),
                "start": s[0].start,
                "end": s[-1].end,
                "confidence": _mean_conf(s),
                "words": [_word(w) for w in s],
                "speaker": s[0].speaker,
                "channel": s[0].channel,
            }
            for s in split_sentences(words)
        ],
    }


def paragraphs_json(rec: TranscriptRecord) -> dict[str, Any]:
    assert rec.result is not None
    words = rec.result.words
    return {
        "id": rec.id,
        "confidence": _mean_conf(words),
        "audio_duration": round(rec.result.audio_duration),
        "paragraphs": [
            {
                "text": _join(para),
                "start": para[0].start,
                "end": para[-1].end,
                "confidence": _mean_conf(para),
                "words": [_word(w) for w in para],
            }
            for para in split_paragraphs(words)
        ],
    }


def _captions(words: Sequence[EngineWord], chars: int) -> list[list[EngineWord]]:
    out: list[list[EngineWord]] = []
    cur: list[EngineWord] = []
    length = 0
    for w in words:
        add = len(w.text) + (1 if cur else 0)
        if cur and length + add > chars:
            out.append(cur)
            cur, length, add = [], 0, len(w.text)
        cur.append(w)
        length += add
        if _ends_sentence(w.text) and chars >= DEFAULT_CHARS_PER_CAPTION:
            # Without a tight character budget, captions also break at sentence ends.
            out.append(cur)
            cur, length = [], 0
    if cur:
        out.append(cur)
    return out


def _ts(ms: int, sep: str, hours: bool) -> str:
    h, rem = divmod(ms, 3_600_000)
    m, rem = divmod(rem, 60_000)
    s, milli = divmod(rem, 1000)
    core = f"{m:02d}:{s:02d}{sep}{milli:03d}"
    return f"{h:02d}:{core}" if hours else core


def subtitles(rec: TranscriptRecord, fmt: str, chars_per_caption: int | None) -> str:
    assert rec.result is not None
    caps = _captions(rec.result.words, chars_per_caption or DEFAULT_CHARS_PER_CAPTION)
    if fmt == "srt":
        blocks = [
            f"{i}\n{_ts(c[0].start, ',', True)} --> {_ts(c[-1].end, ',', True)}\n{_join(c)}\n"
            for i, c in enumerate(caps, 1)
        ]
        return "\n".join(blocks)
    hours = bool(caps) and caps[-1][-1].end >= 3_600_000
    blocks = [
        f"{_ts(c[0].start, '.', hours)} --> {_ts(c[-1].end, '.', hours)}\n{_join(c)}\n"
        for c in caps
    ]
    return "WEBVTT\n\n" + "\n".join(blocks)


_NORM = re.compile(r"[^\w']+", re.UNICODE)


def _norm(text: str) -> str:
    return _NORM.sub("", text.lower())


def word_search(rec: TranscriptRecord, terms: list[str]) -> dict[str, Any]:
    """One match entry per requested term (request order), phrases matched word by word."""
    assert rec.result is not None
    normed = [_norm(w.text) for w in rec.result.words]
    words = rec.result.words
    matches = []
    total = 0
    for term in terms:
        toks = [t for t in (_norm(x) for x in term.split()) if t]
        if not toks:
            continue
        idx = [i for i in range(len(normed) - len(toks) + 1) if normed[i : i + len(toks)] == toks]
        total += len(idx)
        matches.append(
            {
                "text": term,
                "count": len(idx),
                "timestamps": [[words[i].start, words[i + len(toks) - 1].end] for i in idx],
                "indexes": idx,
            }
        )
    return {"id": rec.id, "total_count": total, "matches": matches}
