"""``redact_pii``: the words of every entity whose type is among ``redact_pii_policies`` are
replaced, in ``words`` and so in ``text``, utterances, sentences, paragraphs, captions and every
other result (they are all built from the redacted words).

``redact_pii_sub: hash`` (the default) replaces each character of the word with ``#``;
``entity_name`` replaces the entity's words with one ``[ENTITY_TYPE]`` word spanning their
time. Punctuation at the entity's edges is kept, so sentences still end where they ended.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from voxlake.emulator.engines import EngineWord
from voxlake.emulator.understanding.entities import Found
from voxlake.emulator.understanding.text import bare


def _hashed(text: str) -> str:
    core = bare(text)
    if not core:
        return text
    at = text.find(core)
    return text[:at] + "#" * len(core) + text[at + len(core) :]


def substitute(words: Sequence[EngineWord], entity_type: str, sub: str) -> list[EngineWord]:
    """An entity's words as redaction leaves them."""
    if sub != "entity_name":
        return [replace(w, text=_hashed(w.text)) for w in words]
    head, tail = words[0].text, words[-1].text
    lead = head[: head.find(bare(head))] if bare(head) else ""
    trail = tail[len(tail.rstrip(".,!?;:\"')]")) :]
    merged = replace(
        words[0],
        text=f"{lead}[{entity_type.upper()}]{trail}",
        end=words[-1].end,
        confidence=round(sum(w.confidence for w in words) / len(words), 4),
    )
    return [merged]


def redact(
    words: Sequence[EngineWord], found: Sequence[Found], policies: Sequence[str], sub: str
) -> list[EngineWord]:
    """The words with every entity of a type in ``policies`` substituted."""
    out: list[EngineWord] = []
    i = 0
    for f in found:
        if f.entity_type in policies:
            out.extend(words[i : f.first])
            out.extend(substitute(words[f.first : f.stop], f.entity_type, sub))
            i = f.stop
    out.extend(words[i:])
    return out
