"""voxlake."""
