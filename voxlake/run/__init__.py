"""One transcription run as stages, independent of Prefect.

- :mod:`~voxlake.run.transcription`: ``TranscriptionRun``, the stages composed;
- :mod:`~voxlake.run.state`: what the stages share (records, settings, client, ledger, sink);
- :mod:`~voxlake.run.plan`: the items planned against the ledger and the audio budget;
- :mod:`~voxlake.run.upload`, :mod:`~voxlake.run.submit`, :mod:`~voxlake.run.poll`,
  :mod:`~voxlake.run.collect`: the API stages;
- :mod:`~voxlake.run.normalise`: a written transcript's row fields and outcome;
- :mod:`~voxlake.run.load`: rows into the sink, committed before the ledger is told;
- :mod:`~voxlake.run.failures`: what an error means for its item, the ledger and the run;
- :mod:`~voxlake.run.summary`: ``RunSummary``;
- :mod:`~voxlake.run.progress`: the typed ``Progress`` events.

Nothing is imported here: each module is imported where it is used.
"""
