"""Print one example analyst query over the demo's Parquet output, and its result (DuckDB)."""

from __future__ import annotations

import sys

import duckdb

QUERY = """
select t.media_id,
       t.word_count,
       round(t.confidence, 3)           as confidence,
       round(avg(w.end_ms - w.start_ms)) as mean_word_ms,
       min(w.confidence)                 as weakest_word_confidence
from read_parquet('{root}/transcripts/**/*.parquet', hive_partitioning=1) t
join read_parquet('{root}/words/**/*.parquet', hive_partitioning=1) w
  using (media_id, transcript_id)
where t.status = 'completed'
group by all
order by confidence
"""


def main(root: str = "output") -> None:
    query = QUERY.format(root=root)
    print("Example DuckDB query over the tables:" + query)
    duckdb.sql(query).show()


if __name__ == "__main__":
    main(*sys.argv[1:])
