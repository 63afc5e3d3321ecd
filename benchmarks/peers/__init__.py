"""Peer clients the benchmarks run against voxlake, each as its own process."""
