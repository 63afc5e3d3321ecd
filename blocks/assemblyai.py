"""Register with ``prefect block register -m blocks.assemblyai`` (from the repository root)."""

from voxlake.credentials import AssemblyAICredentials

__all__ = ["AssemblyAICredentials"]
