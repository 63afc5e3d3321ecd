-- voxlake's DuckDB views over one output root (voxlake.lake.views.connect runs this file).
--
-- {transcripts}, {words}, {utterances}, {sentences}, {paragraphs} and each result table's
-- placeholder are replaced by the relation that reads each table with its declared schema:
-- read_parquet over <root>/<table>/**/*.parquet with hive partitioning (run_date typed DATE)
-- and union_by_name for a local root, a registered Arrow dataset for S3 and other
-- filesystems; {ledger} likewise reads the ledger's event files
-- (<root>/_ledger/events/*.parquet, voxlake.lake.ledger.EVENT_SCHEMA). The rest is plain SQL.

-- History: every row of every run.
CREATE OR REPLACE VIEW transcripts AS SELECT * FROM {transcripts};
CREATE OR REPLACE VIEW words AS SELECT * FROM {words};
CREATE OR REPLACE VIEW utterances AS SELECT * FROM {utterances};
CREATE OR REPLACE VIEW sentences AS SELECT * FROM {sentences};
CREATE OR REPLACE VIEW paragraphs AS SELECT * FROM {paragraphs};
-- The speech-understanding results (docs/tables.md#speech-understanding).
CREATE OR REPLACE VIEW transcript_insights AS SELECT * FROM {transcript_insights};
CREATE OR REPLACE VIEW sentiment AS SELECT * FROM {sentiment};
CREATE OR REPLACE VIEW entities AS SELECT * FROM {entities};
CREATE OR REPLACE VIEW chapters AS SELECT * FROM {chapters};
CREATE OR REPLACE VIEW key_phrases AS SELECT * FROM {key_phrases};
CREATE OR REPLACE VIEW topics AS SELECT * FROM {topics};
CREATE OR REPLACE VIEW topics_summary AS SELECT * FROM {topics_summary};
CREATE OR REPLACE VIEW content_safety AS SELECT * FROM {content_safety};
CREATE OR REPLACE VIEW content_safety_summary AS SELECT * FROM {content_safety_summary};

-- One row per media_id: its latest completed row, or, for an item that never completed, its
-- latest row. "Latest" is by recorded_at (when voxlake wrote the row): completed_at is null for
-- items that failed before submission. The tie-breakers only matter for rows written before
-- recorded_at existed (null) and make the choice deterministic.
CREATE OR REPLACE VIEW transcripts_current AS
SELECT *
FROM transcripts
QUALIFY row_number() OVER (
    PARTITION BY media_id
    ORDER BY (status = 'completed') DESC,
             recorded_at DESC NULLS LAST,
             completed_at DESC NULLS LAST,
             flow_run_id DESC
) = 1;

-- The words, utterances, sentences and paragraphs of the current completed transcripts.
-- Matching on flow_run_id too
-- keeps one copy of a transcript whose rows two runs wrote (a rerun that adopted the same job).
CREATE OR REPLACE VIEW words_current AS
SELECT w.*
FROM words AS w
SEMI JOIN (
    SELECT media_id, transcript_id, flow_run_id
    FROM transcripts_current
    WHERE status = 'completed'
) AS c USING (media_id, transcript_id, flow_run_id);

CREATE OR REPLACE VIEW utterances_current AS
SELECT u.*
FROM utterances AS u
SEMI JOIN (
    SELECT media_id, transcript_id, flow_run_id
    FROM transcripts_current
    WHERE status = 'completed'
) AS c USING (media_id, transcript_id, flow_run_id);

CREATE OR REPLACE VIEW sentences_current AS
SELECT s.*
FROM sentences AS s
SEMI JOIN (
    SELECT media_id, transcript_id, flow_run_id
    FROM transcripts_current
    WHERE status = 'completed'
) AS c USING (media_id, transcript_id, flow_run_id);

CREATE OR REPLACE VIEW paragraphs_current AS
SELECT p.*
FROM paragraphs AS p
SEMI JOIN (
    SELECT media_id, transcript_id, flow_run_id
    FROM transcripts_current
    WHERE status = 'completed'
) AS c USING (media_id, transcript_id, flow_run_id);

-- The speech-understanding results of the current completed transcripts, likewise.
CREATE OR REPLACE VIEW transcript_insights_current AS
SELECT r.*
FROM transcript_insights AS r
SEMI JOIN (
    SELECT media_id, transcript_id, flow_run_id
    FROM transcripts_current
    WHERE status = 'completed'
) AS c USING (media_id, transcript_id, flow_run_id);

CREATE OR REPLACE VIEW sentiment_current AS
SELECT r.*
FROM sentiment AS r
SEMI JOIN (
    SELECT media_id, transcript_id, flow_run_id
    FROM transcripts_current
    WHERE status = 'completed'
) AS c USING (media_id, transcript_id, flow_run_id);

CREATE OR REPLACE VIEW entities_current AS
SELECT r.*
FROM entities AS r
SEMI JOIN (
    SELECT media_id, transcript_id, flow_run_id
    FROM transcripts_current
    WHERE status = 'completed'
) AS c USING (media_id, transcript_id, flow_run_id);

CREATE OR REPLACE VIEW chapters_current AS
SELECT r.*
FROM chapters AS r
SEMI JOIN (
    SELECT media_id, transcript_id, flow_run_id
    FROM transcripts_current
    WHERE status = 'completed'
) AS c USING (media_id, transcript_id, flow_run_id);

CREATE OR REPLACE VIEW key_phrases_current AS
SELECT r.*
FROM key_phrases AS r
SEMI JOIN (
    SELECT media_id, transcript_id, flow_run_id
    FROM transcripts_current
    WHERE status = 'completed'
) AS c USING (media_id, transcript_id, flow_run_id);

CREATE OR REPLACE VIEW topics_current AS
SELECT r.*
FROM topics AS r
SEMI JOIN (
    SELECT media_id, transcript_id, flow_run_id
    FROM transcripts_current
    WHERE status = 'completed'
) AS c USING (media_id, transcript_id, flow_run_id);

CREATE OR REPLACE VIEW topics_summary_current AS
SELECT r.*
FROM topics_summary AS r
SEMI JOIN (
    SELECT media_id, transcript_id, flow_run_id
    FROM transcripts_current
    WHERE status = 'completed'
) AS c USING (media_id, transcript_id, flow_run_id);

CREATE OR REPLACE VIEW content_safety_current AS
SELECT r.*
FROM content_safety AS r
SEMI JOIN (
    SELECT media_id, transcript_id, flow_run_id
    FROM transcripts_current
    WHERE status = 'completed'
) AS c USING (media_id, transcript_id, flow_run_id);

CREATE OR REPLACE VIEW content_safety_summary_current AS
SELECT r.*
FROM content_safety_summary AS r
SEMI JOIN (
    SELECT media_id, transcript_id, flow_run_id
    FROM transcripts_current
    WHERE status = 'completed'
) AS c USING (media_id, transcript_id, flow_run_id);

-- One row per media_id: its latest ledger event (docs/ledger.md), so what is deferred, in
-- flight (submitting, submitted) or failed (failed, job_failed) is one WHERE away. stage and
-- error are those of that event; audio_hours is the latest duration recorded for the item
-- (AssemblyAI's once completed, the media header's when deferred). Events of one item never
-- share a timestamp; the tie-breakers only make the choice deterministic.
CREATE OR REPLACE VIEW ledger AS
SELECT media_id, source, status, stage, error, transcript_id,
       duration_s / 3600 AS audio_hours, run_id, "at" AS recorded_at, item_key
FROM (
    SELECT *,
           last_value(audio_duration_s IGNORE NULLS) OVER (
               PARTITION BY item_key ORDER BY "at"
               ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING
           ) AS duration_s
    FROM {ledger}
)
QUALIFY row_number() OVER (PARTITION BY media_id ORDER BY "at" DESC, run_id DESC, status) = 1;

-- One row per transcript the ledger knows was collected (its item completed, or its job
-- failed), and whether it is deleted at AssemblyAI (docs/ledger.md): deleted_at is null for a
-- transcript still held there, which `voxlake purge` deletes. An item submitted again
-- (--force) has a row per transcript.
CREATE OR REPLACE VIEW ledger_transcripts AS
SELECT transcript_id,
       arg_max(media_id, "at") AS media_id,
       min("at") FILTER (status IN ('completed', 'job_failed')) AS collected_at,
       min("at") FILTER (status = 'deleted') AS deleted_at,
       arg_min(run_id, "at") FILTER (status = 'deleted') AS deleted_by_run_id
FROM {ledger}
WHERE transcript_id IS NOT NULL
GROUP BY transcript_id
HAVING count(*) FILTER (status IN ('completed', 'job_failed')) > 0;
