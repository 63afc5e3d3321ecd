"""``auto_chapters`` and ``summarization``: extractive, by time windows.

Chapters: sentences in order, a new chapter once the current one is ``CHAPTER_MS`` long, or at a
pause of ``PAUSE_MS`` once it is ``MIN_CHAPTER_MS`` long. In each chapter a sentence scores the
frequencies, within the chapter, of its content words (the words the chapter keeps coming back
to), summed, over the square root of their number. The headline is the best sentence, the
summary the best three in the order they were said, the gist the chapter's top key phrase (else
the headline's first words).

The summary (``summarization``) does the same over the whole transcript, shaped by
``summary_type``: ``bullets`` (default: three "- " lines), ``bullets_verbose`` (six),
``paragraph`` (three sentences), ``headline`` (one) or ``gist`` (the top key phrase).
``summary_model`` does not change the method.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

from voxlake.emulator.understanding.keyphrases import ranked_phrases
from voxlake.emulator.understanding.text import STOPWORDS, Sentence, join, norm, span_text

CHAPTER_MS = 90_000
MIN_CHAPTER_MS = 20_000
PAUSE_MS = 3_000


def _windows(sents: list[Sentence]) -> list[list[Sentence]]:
    out: list[list[Sentence]] = []
    cur: list[Sentence] = []
    for s in sents:
        if cur:
            length = cur[-1][-1].end - cur[0][0].start
            paused = s[0].start - cur[-1][-1].end >= PAUSE_MS
            if length >= CHAPTER_MS or (paused and length >= MIN_CHAPTER_MS):
                out.append(cur)
                cur = []
        cur.append(s)
    if cur:
        out.append(cur)
    return out


def best_sentences(sents: list[Sentence], n: int) -> list[Sentence]:
    """The ``n`` most central sentences, in the order they were said."""
    freq = Counter(t for s in sents for t in (norm(w.text) for w in s) if t not in STOPWORDS)

    def score(s: Sentence) -> float:
        content = [norm(w.text) for w in s if norm(w.text) not in STOPWORDS]
        # Over the square root of their number: a long sentence of the chapter's words beats
        # a short greeting made of one of them.
        return sum(freq[t] for t in content) / math.sqrt(len(content)) if content else 0.0

    order = sorted(range(len(sents)), key=lambda i: (-score(sents[i]), i))[:n]
    return [sents[i] for i in sorted(order)]


def _gist(sents: list[Sentence], headline: Sentence) -> str:
    top = ranked_phrases(sents, top=1)
    if top:
        text: str = top[0]["text"]
        return text[:1].upper() + text[1:]
    return span_text(headline[:6])


def chapter_results(sents: list[Sentence]) -> list[dict[str, Any]]:
    out = []
    for chapter in _windows(sents):
        headline = best_sentences(chapter, 1)[0]
        out.append(
            {
                "start": chapter[0][0].start,
                "end": chapter[-1][-1].end,
                "headline": join(headline),
                "gist": _gist(chapter, headline),
                "summary": " ".join(join(s) for s in best_sentences(chapter, 3)),
            }
        )
    return out


def summary(sents: list[Sentence], summary_type: str | None) -> str:
    kind = summary_type or "bullets"
    if not sents:
        return ""
    if kind == "gist":
        return _gist(sents, best_sentences(sents, 1)[0])
    if kind == "headline":
        return join(best_sentences(sents, 1)[0])
    if kind == "paragraph":
        return " ".join(join(s) for s in best_sentences(sents, 3))
    n = 6 if kind == "bullets_verbose" else 3
    return "\n".join(f"- {join(s)}" for s in best_sentences(sents, n))
