"""voxlake's Prefect flows: thin orchestration over the Prefect-free core.

- :mod:`voxlake.flows.transcribe`: ``transcribe_manifest``, the main job, and its tasks;
- :mod:`voxlake.flows.backfill`: the backfill parent that fans a manifest out to shard runs.

They live in the package, not only in the checkout, so that ``voxlake run`` and
``from voxlake.flows.transcribe import transcribe_manifest`` work wherever voxlake is installed
(the wheel ships ``voxlake`` alone: top-level ``flows``/``blocks`` packages in site-packages would
collide with other distributions'). The checkout's ``flows/`` folder holds only the entrypoints
that ``deployments/prefect.yaml`` names. The submodules are imported on their own, not here: the
backfill pulls in Prefect's deployment machinery, which ``voxlake run`` does not need.
"""
