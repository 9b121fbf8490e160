"""trivas core library: configuration, contracts, runtime and ingestion (no Spark jobs here)."""

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
