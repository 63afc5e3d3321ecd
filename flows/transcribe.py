"""``prefect deploy`` entrypoint ``flows/transcribe.py:transcribe_manifest``.

The flow is :mod:`voxlake.flows.transcribe`; this file only names it, so that deployments keep
the path they have always had.
"""

from voxlake.flows.transcribe import transcribe_manifest

__all__ = ["transcribe_manifest"]
