"""URL source cells: the fast path for plain http(s) URLs names what urlsplit would."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

import pytest

from voxlake.manifest.items import SourceKind
from voxlake.manifest.resolve import _classify, _plain_http

URLS = [
    "https://cdn.example.com/x/talk.mp3",
    "http://cdn.example.com/a.wav",
    "https://user:pw@cdn.example.com:8443/a%20b.wav",
    "https://cdn.example.com",
    "https://cdn.example.com/x/talk.mp3?X-Amz-Signature=abc#t=1",
    "https://cdn.example.com/x/talk.mp3?",
    "https://cdn.example.com/x/talk.mp3#",
    "HTTPS://cdn.example.com/A.wav",
    "https://[::1]:8080/a.wav",
    "https:///a.wav",
    "https://",
    "https://cdn.example.com/a b.wav",
    "https://cdn.example.com/a\tb.wav",
    "https://cdn.exämple.com/a.wav",
]


@pytest.mark.parametrize("text", URLS)
def test_url_cells_name_what_urlsplit_names(text: str) -> None:
    """Fast path or not, the id is the URL without query and fragment, as urlsplit splits it."""
    parts = urlsplit(text)
    resolved = _classify(text, "/base", 2)
    if not parts.netloc:
        assert resolved.problem is not None and "has no host" in resolved.problem.problem
        return
    assert resolved.kind is SourceKind.http
    assert resolved.source == text
    assert resolved.media_id == urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))


def test_fast_path_takes_the_common_rows_only() -> None:
    taken = [u for u in URLS if _plain_http(u)]
    assert taken == URLS[:4]
