"""voxlake's Prefect block types, for ``prefect block register -m blocks.assemblyai``.

Thin on purpose: the blocks live in the package (:mod:`voxlake.credentials`), which the wheel
ships; this folder only names what to register.
"""
