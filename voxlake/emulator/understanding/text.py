"""Shared text helpers of the understanding features: tokens, stop words, segments.

Every feature reads the same sentences (``render.split_sentences``, the ones ``/sentences``
serves), so a result's ``start``/``end`` always line up with a sentence or a word the client
also has.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence

from voxlake.emulator.engines import EngineWord
from voxlake.emulator.render import split_sentences

Sentence = list[EngineWord]

# Kept at the edges: currency and a redaction's "#" or "[...]" (and "%", ")" at the end).
_EDGE = re.compile(r"^[^\w$#@(\[]+|[^\w%#)\]]+$", re.UNICODE)

#: A segment (topics, content safety) is at most this many sentences and this long, and ends
#: at a pause this long: AssemblyAI's segments are a few sentences each (its example: 6).
SEGMENT_SENTENCES = 6
SEGMENT_MS = 60_000
PAUSE_MS = 2_000


def wordset(text: str) -> frozenset[str]:
    """The words of ``text`` (word lists are written as text, wrapped, to keep them short)."""
    return frozenset(text.split())


STOPWORDS = wordset(
    """a about above after again against all also am an and any are aren't as at be because
    been before being below between both but by can can't could couldn't did didn't do does
    doesn't doing don't down during each even ever every few for from further get gets got
    had hadn't has hasn't have haven't having he he'd he'll he's her here here's hers
    herself him himself his how how's i i'd i'll i'm i've if in into is isn't it it's its
    itself just know let's like made make many may me might more most much must mustn't my
    myself no nor not now of off oh ok okay on once one only or other ought our ours
    ourselves out over own really right said same say says see shan't she she'd she'll she's
    should shouldn't so some such than that that's the their theirs them themselves then
    there there's these they they'd they'll they're they've thing things think this those
    though through to too under until up upon us very was wasn't we we'd we'll we're we've
    well were weren't what what's when when's where where's which while who who's whom why
    why's will with won't would wouldn't yeah yes yet you you'd you'll you're you've your
    yours yourself yourselves going gonna want wanted lot lots bit little kind sort something
    anything actually mean way couple pretty maybe probably hi hello goodbye thank thanks
    please"""
)


# Cached: every feature reads the same words again and again (a word list's worth of entries).
@functools.lru_cache(maxsize=1 << 16)
def bare(text: str) -> str:
    """A word without the punctuation around it (``"Canada,"`` -> ``Canada``; ``$5`` stays)."""
    return _EDGE.sub("", text)


@functools.lru_cache(maxsize=1 << 16)
def norm(text: str) -> str:
    """A word as the word lists spell it: bare, lower case."""
    return bare(text).lower()


def join(words: Sequence[EngineWord]) -> str:
    return " ".join(w.text for w in words)


def span_text(words: Sequence[EngineWord]) -> str:
    """The text of a span of words, without the punctuation at its two ends."""
    if not words:
        return ""
    return bare(join(words))


def sentences(words: Sequence[EngineWord]) -> list[Sentence]:
    return split_sentences(words)


def segments(sents: Sequence[Sentence]) -> list[tuple[int, int]]:
    """Sentences grouped into segments, as (first index, last index) inclusive."""
    out: list[tuple[int, int]] = []
    first = 0
    for i in range(1, len(sents) + 1):
        if i == len(sents):
            out.append((first, i - 1))
            break
        long = sents[i - 1][-1].end - sents[first][0].start >= SEGMENT_MS
        paused = sents[i][0].start - sents[i - 1][-1].end >= PAUSE_MS
        if i - first >= SEGMENT_SENTENCES or long or paused:
            out.append((first, i - 1))
            first = i
    return out if sents else []


def rounded(x: float) -> float:
    return round(min(1.0, max(0.0, x)), 4)
