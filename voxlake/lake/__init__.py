"""Everything under an output root: the tables, the ledger, and reading them back.

An output root (a local folder or ``s3://bucket/prefix``) holds::

    <root>/transcripts/run_date=YYYY-MM-DD/part-<prefix>-<seq>.parquet   one row per item per run
    <root>/words/run_date=YYYY-MM-DD/part-<prefix>-<seq>.parquet         one row per word
    <root>/utterances/run_date=YYYY-MM-DD/part-<prefix>-<seq>.parquet    one row per speaker turn
    <root>/sentiment/, entities/, chapters/, key_phrases/, topics/, topics_summary/,
           content_safety/, content_safety_summary/, transcript_insights/  (same layout)
                                                       the speech-understanding results
    <root>/_ledger/events/*.parquet, <root>/_ledger/lease.json           the ledger (docs/ledger.md)

Modules, lowest first (none imports one listed after it):

- :mod:`voxlake.lake.root`: :class:`~voxlake.lake.root.OutputRoot`, the filesystem, paths,
  listing and the one atomic publish;
- :mod:`voxlake.lake.tables`: the table registry; one module per table family (schema and the
  transcript-to-rows of that table), so a new table is a new module and one registration line;
- :mod:`voxlake.lake.normalize`: finished items into one record batch per table;
- :mod:`voxlake.lake.writer`: ``DatasetWriter`` (one table) and ``TableSink`` (a run's tables,
  in the reader-safe order);
- :mod:`voxlake.lake.read`, :mod:`voxlake.lake.views`: ``read_table``, ``read_current`` and the
  DuckDB views;
- :mod:`voxlake.lake.ledger`: events, states, planning, the lease and its store.

Nothing is imported here, so importing one module costs only what it needs.
"""
