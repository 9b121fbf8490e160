"""Streaming jobs: one module per job, each a pure ``transform`` plus a thin ``run``."""
