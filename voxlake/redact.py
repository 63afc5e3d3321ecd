"""Redaction of signed URLs: a presigned URL's signature never reaches a log line, a table cell,
a ledger key or a Prefect artifact."""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlsplit, urlunsplit

__all__ = ["redact_text", "redact_url"]

# Query parameters that make a URL a credential: AWS SigV4/V2, GCS, Azure SAS, generic tokens.
_SECRET_PARAMS = frozenset(
    {
        "x-amz-signature",
        "x-amz-credential",
        "x-amz-security-token",
        "signature",
        "awsaccesskeyid",
        "x-goog-signature",
        "x-goog-credential",
        "sig",
        "token",
        "access_token",
        "key",
        "api_key",
    }
)
_URL_RE = re.compile(r"https?://[^\s\"'<>]+", re.IGNORECASE)


def redact_url(url: str) -> str:
    """``url`` without its query string and fragment if it carries a signature or token, and
    without any ``user:password@``. Other URLs are returned unchanged."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    if parts.scheme.lower() not in ("http", "https"):
        return url
    netloc = parts.netloc.rpartition("@")[2] if "@" in parts.netloc else parts.netloc
    query, fragment = parts.query, parts.fragment
    names = {k.lower() for k, _ in parse_qsl(query, keep_blank_values=True)}
    if names & _SECRET_PARAMS or "signature=" in query.lower():
        query, fragment = "", ""
    if (netloc, query, fragment) == (parts.netloc, parts.query, parts.fragment):
        return url
    return urlunsplit((parts.scheme, netloc, parts.path, query, fragment))


def redact_text(text: str | None) -> str | None:
    """Every http(s) URL in ``text`` passed through :func:`redact_url`."""
    if not text or "://" not in text:
        return text
    return _URL_RE.sub(lambda m: redact_url(m.group(0)), text)
