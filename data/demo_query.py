"""Print one example analyst query over the demo's Parquet output, and its result (DuckDB).

The query runs on the views `voxlake query` predefines (voxlake/sql/views.sql): the current
transcript of each item and its words, whatever earlier runs wrote.
"""

from __future__ import annotations

import sys

from voxlake.lake.views import connect

QUERY = """
select t.media_id,
       t.word_count,
       round(t.confidence, 3)            as confidence,
       round(avg(w.end_ms - w.start_ms)) as mean_word_ms,
       min(w.confidence)                 as weakest_word_confidence
from transcripts_current t
join words_current w using (media_id, transcript_id, flow_run_id)
group by all
order by confidence
"""


def main(root: str = "output") -> None:
    print(f'Example query over the tables (uv run voxlake query {root} "..."):' + QUERY)
    with connect(root) as con:
        con.sql(QUERY).show()


if __name__ == "__main__":
    main(*sys.argv[1:])
