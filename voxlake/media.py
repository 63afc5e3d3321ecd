"""Local media pre-checks: catch files that are obviously not audio/video before uploading.

AssemblyAI accepts almost any container and only fails *after* upload and queueing
("File does not appear to contain audio"), so we reject only what is certainly not media:
known document/archive/executable signatures and text (HTML, JSON, XML, plain UTF-8). Unknown
binary data passes: the server decides.
"""

from __future__ import annotations

import codecs

SNIFF_BYTES = 4096

# Containers/codecs AssemblyAI transcribes. Checked first so e.g. an MP3 frame is never "text".
_MEDIA_PREFIXES: tuple[bytes, ...] = (
    b"RIFF",  # WAV / AVI
    b"ID3",  # MP3 with ID3 tag
    b"OggS",  # Ogg Vorbis / Opus
    b"fLaC",  # FLAC
    b"\x1a\x45\xdf\xa3",  # Matroska / WebM
    b"#!AMR",  # AMR
    b"FORM",  # AIFF
    b"\x30\x26\xb2\x75",  # ASF / WMA / WMV
    b"FLV",  # Flash video
    b"caff",  # Core Audio
    b".snd",  # AU
    b"MThd",  # (MIDI: not speech, but media; let the server answer)
)

# Certainly not media: (prefix, description).
_NON_MEDIA_PREFIXES: tuple[tuple[bytes, str], ...] = (
    (b"%PDF", "a PDF document"),
    (b"PK\x03\x04", "a ZIP archive (or an Office document)"),
    (b"PK\x05\x06", "an empty ZIP archive"),
    (b"\x7fELF", "an ELF executable"),
    (b"MZ", "a Windows executable"),
    (b"\x89PNG", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF8", "a GIF image"),
    (b"\x1f\x8b", "a gzip archive"),
    (b"7z\xbc\xaf\x27\x1c", "a 7-Zip archive"),
    (b"Rar!", "a RAR archive"),
    (b"SQLite format 3", "an SQLite database"),
    (b"PAR1", "a Parquet file"),
)


def _is_media_signature(head: bytes) -> bool:
    if head.startswith(_MEDIA_PREFIXES):
        return True
    if len(head) >= 8 and head[4:8] == b"ftyp":  # MP4 / M4A / MOV / 3GP
        return True
    # MPEG audio frame sync / ADTS AAC (11 set bits); MPEG-TS packets start with 0x47.
    return (len(head) >= 2 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0) or head[:1] == b"\x47"


def _as_text(head: bytes) -> str | None:
    """The head decoded as UTF-8 if it reads as printable text, else None."""
    try:
        # Incremental decoding tolerates a multi-byte character cut at the sniff boundary.
        text = codecs.getincrementaldecoder("utf-8")().decode(head, final=False)
    except UnicodeDecodeError:
        return None
    text = text.removeprefix("\ufeff")
    if not text:
        return None
    printable = sum(ch.isprintable() or ch in "\t\r\n" for ch in text)
    return text if printable / len(text) > 0.98 else None


def _describe_text(text: str) -> str:
    start = text.lstrip()[:15].lower()
    if start.startswith(("<!doctype html", "<html", "<head", "<body")):
        return "an HTML page (often an error or login page saved instead of the media)"
    if start.startswith("<?xml") or start.startswith("<"):
        return "an XML/HTML document"
    if start.startswith(("{", "[")):
        return "JSON text"
    return "plain text"


def sniff_non_media(head: bytes) -> str | None:
    """Describe ``head`` (the first bytes of a file) if it is certainly not media, else None."""
    if not head or _is_media_signature(head):
        return None
    for prefix, description in _NON_MEDIA_PREFIXES:
        if head.startswith(prefix):
            return description
    text = _as_text(head)
    if text is not None:
        return _describe_text(text)
    return None
