"""The output tables: one module per table family, registered here.

Each family module declares its schema (explicit, never inferred) and how its rows are built
from a transcript, and ends with a ``TABLE`` registration (:class:`~.schema.Table`). A new
table (say, ``chapters``) is a new module beside ``words.py`` plus one line below; the writer
(:mod:`voxlake.lake.writer`), the normaliser (:mod:`voxlake.lake.normalize`) and the readers
(:mod:`voxlake.lake.read`) take every registered table from :data:`TABLES`. Its views are two
statements in ``voxlake/sql/views.sql`` (history and current, as ``words``).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping

import pyarrow as pa

from voxlake.lake.tables import (
    chapters,
    content_safety,
    entities,
    key_phrases,
    paragraphs,
    sentences,
    sentiment,
    topics,
    transcript_insights,
    transcripts,
    utterances,
    words,
)
from voxlake.lake.tables.paragraphs import PARAGRAPHS_SCHEMA
from voxlake.lake.tables.schema import PARTITION_COLUMN, RUN_DATE, Table, schema_markdown
from voxlake.lake.tables.sentences import SENTENCES_SCHEMA
from voxlake.lake.tables.transcripts import TRANSCRIPTS_SCHEMA, transcript_row, transcripts_batch
from voxlake.lake.tables.utterances import UTTERANCES_SCHEMA, utterances_batch
from voxlake.lake.tables.words import WORDS_SCHEMA, words_batch

__all__ = [
    "NESTED",
    "OPTIONAL",
    "PARAGRAPHS_SCHEMA",
    "PARTITION_COLUMN",
    "RUN_DATE",
    "SCHEMAS",
    "SENTENCES_SCHEMA",
    "TABLES",
    "TRANSCRIPTS_SCHEMA",
    "UTTERANCES_SCHEMA",
    "VERSIONS",
    "WORDS_SCHEMA",
    "Table",
    "optional_tables_of",
    "schema_markdown",
    "stale_tables",
    "table",
    "tables_record",
    "transcript_row",
    "transcripts_batch",
    "utterances_batch",
    "words_batch",
]

#: The tables nested under a transcript, built from completed transcripts and written before
#: the ``transcripts`` rows that commit them. One line per table family.
NESTED: tuple[Table, ...] = (
    words.TABLE,
    utterances.TABLE,
    sentences.TABLE,
    paragraphs.TABLE,
    # Speech understanding: one table per result (docs/tables.md#speech-understanding).
    transcript_insights.TABLE,
    sentiment.TABLE,
    entities.TABLE,
    chapters.TABLE,
    key_phrases.TABLE,
    topics.TABLE,
    topics.SUMMARY_TABLE,
    content_safety.TABLE,
    content_safety.SUMMARY_TABLE,
)

#: Every table by name, ``transcripts`` first.
TABLES: dict[str, Table] = {t.name: t for t in (transcripts.TABLE, *NESTED)}
SCHEMAS: dict[str, pa.Schema] = {name: t.schema for name, t in TABLES.items()}


def table(name: str) -> Table:
    """The registered table ``name``; a ValueError naming the known ones otherwise."""
    found = TABLES.get(name)
    if found is None:
        raise ValueError(f"unknown table {name!r}; expected one of {sorted(TABLES)}")
    return found


#: The version of every table's rows (:attr:`Table.version`).
VERSIONS: dict[str, int] = {name: t.version for name, t in TABLES.items()}
#: The tables filled only when asked for (:attr:`Table.optional`): sentences, paragraphs.
OPTIONAL: tuple[str, ...] = tuple(name for name, t in TABLES.items() if t.optional)


def optional_tables_of(transcript: object) -> list[str]:
    """The optional tables whose rows ``transcript`` carries: those whose field was set on it
    (by :mod:`voxlake.run.extras`, even to an empty list: fetched, no rows)."""
    return [name for name in OPTIONAL if getattr(transcript, name, None) is not None]


def tables_record(optional: Iterable[str] = ()) -> str:
    """What a ``completed`` ledger event records of the rows just written for an item: every
    table that is not optional and the ``optional`` ones filled for it (:data:`OPTIONAL`,
    :func:`optional_tables_of`), each with its version, as JSON (``{"transcripts": 1, ...}``)."""
    filled = set(optional)
    if unknown := filled - set(OPTIONAL):
        raise ValueError(f"not optional tables: {sorted(unknown)}; expected some of {OPTIONAL}")
    record = {n: v for n, v in VERSIONS.items() if n in filled or not TABLES[n].optional}
    return json.dumps(record, sort_keys=True, separators=(",", ":"))


def stale_tables(record: str | Mapping[str, int] | None, wanted: Iterable[str] = ()) -> list[str]:
    """The tables whose rows an item with this record lacks or has at an older version: every
    table that is not optional, and the optional tables ``wanted`` (``recollect --sentences``).
    An optional table not wanted is never stale: an item rewritten for another table gets the
    optional tables its record names again (:mod:`voxlake.run.recollect`).

    ``None`` (an item completed before the ledger recorded versions) is stale for every such
    table: which tables its rows were written with is not known, and fetching it again is
    free.
    """
    asked = set(wanted)
    if unknown := asked - set(OPTIONAL):
        raise ValueError(f"not optional tables: {sorted(unknown)}; expected some of {OPTIONAL}")
    names = [n for n in VERSIONS if n in asked or not TABLES[n].optional]
    if record is None:
        return names
    recorded = json.loads(record) if isinstance(record, str) else record
    return [name for name in names if recorded.get(name, 0) < VERSIONS[name]]
