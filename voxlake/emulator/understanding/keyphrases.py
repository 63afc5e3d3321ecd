"""``auto_highlights``: key phrases by counts.

Candidates are runs of one to four words inside a sentence with no stop word and no punctuation
inside. A phrase's score is how often it occurs times the square root of its length (longer
phrases say more; a single word counts half), plus the counts of its content words across the
transcript (a phrase made of the transcript's frequent words is central to it). Single words
must occur at least twice to count. A phrase contained in a better one with the same count is
dropped. The best 15 are returned by rank (score over the best score, in (0, 1], two decimals as
AssemblyAI's), each with every occurrence's timestamps.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from typing import Any

from voxlake.emulator.understanding.text import STOPWORDS, Sentence, bare, norm

MAX_WORDS = 4
TOP = 15


def _candidates(sents: list[Sentence]) -> dict[tuple[str, ...], list[tuple[int, int]]]:
    where: dict[tuple[str, ...], list[tuple[int, int]]] = defaultdict(list)
    for s in sents:
        toks = [norm(w.text) for w in s]
        for i in range(len(s)):
            for n in range(1, MAX_WORDS + 1):
                j = i + n
                if j > len(s):
                    break
                if any(s[k].text != bare(s[k].text) for k in range(i, j - 1)):
                    break  # punctuation inside: the phrase would cross a clause
                phrase = tuple(toks[i:j])
                if not all(phrase) or any(t in STOPWORDS for t in phrase):
                    break  # longer phrases from here would contain it too
                if any(not t.replace("'", "").isalpha() for t in phrase):
                    continue
                where[phrase].append((s[i].start, s[j - 1].end))
    return where


def ranked_phrases(sents: list[Sentence], top: int = TOP) -> list[dict[str, Any]]:
    where = _candidates(sents)
    words = Counter(norm(w.text) for s in sents for w in s)
    scored: list[tuple[float, tuple[str, ...]]] = []
    for phrase, spots in where.items():
        if len(phrase) == 1 and len(spots) < 2:
            continue
        content = sum(words[t] for t in phrase if t not in STOPWORDS) / len(phrase)
        weight = math.sqrt(len(phrase)) if len(phrase) > 1 else 0.5  # phrases over words
        scored.append((len(spots) * weight + content / 10, phrase))
    scored.sort(key=lambda x: (-x[0], where[x[1]][0][0], x[1]))
    kept: list[tuple[float, tuple[str, ...]]] = []
    for score, phrase in scored:
        text = " ".join(phrase)
        if any(
            f" {text} " in f" {' '.join(k)} " and len(where[k]) == len(where[phrase])
            for _, k in kept
        ):
            continue
        kept.append((score, phrase))
        if len(kept) == top:
            break
    best = kept[0][0] if kept else 1.0
    originals = _original_case(sents)
    return [
        {
            "count": len(where[phrase]),
            "rank": max(0.01, round(score / best, 2)),
            "text": " ".join(originals.get(t, t) for t in phrase),
            "timestamps": [{"start": a, "end": b} for a, b in where[phrase]],
        }
        for score, phrase in kept
    ]


def _original_case(sents: list[Sentence]) -> dict[str, str]:
    """Each word as it is most often written (proper names keep their capital)."""
    seen: dict[str, Counter[str]] = defaultdict(Counter)
    for s in sents:
        for k, w in enumerate(s):
            b = bare(w.text)
            if k > 0 or not b[:1].isupper():  # a sentence's first word is capitalised anyway
                seen[b.lower()][b] += 1
    return {low: c.most_common(1)[0][0] for low, c in seen.items()}


def highlights_result(sents: list[Sentence]) -> dict[str, Any]:
    return {"status": "success", "results": ranked_phrases(sents)}
