"""``speech_understanding.request.speaker_identification``: speakers named from the request.

Offline there is nothing to recognise a voice by, so the names (``speaker_type: name``) or
roles (``role``) come only from the request, ``speakers[].name``/``.role`` or else
``known_values``, and are given in order to the diarized speakers in the order they first
speak (A, B, ...). A speaker beyond the list keeps its letter. The words, and so utterances,
sentences and sentiment results, carry the names; the response's ``mapping`` says which.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from voxlake.emulator.engines import EngineWord


def names(config: dict[str, Any]) -> list[str]:
    key = "name" if config.get("speaker_type") == "name" else "role"
    given = [s[key] for s in config.get("speakers") or [] if isinstance(s.get(key), str)]
    return given or list(config.get("known_values") or [])


def identify(
    words: list[EngineWord], config: dict[str, Any]
) -> tuple[list[EngineWord], dict[str, str]]:
    order: list[str] = []
    for w in words:
        if w.speaker is not None and w.speaker not in order:
            order.append(w.speaker)
    mapping = dict(zip(order, names(config), strict=False))
    renamed = [
        replace(w, speaker=mapping.get(w.speaker, w.speaker)) if w.speaker else w for w in words
    ]
    return renamed, mapping
