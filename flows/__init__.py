"""Prefect flows: thin orchestration over the voxlake core package."""
