"""trivas core library: configuration, contracts, runtime and ingestion (no Spark jobs here)."""

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
# An installed wheel carries conf/ here (setup.py copies it in); a checkout has none.
PACKAGED_CONF_DIR = Path(__file__).resolve().parent / "conf"


def conf_dir() -> Path:
    """The configuration folder: ``$TRIVAS_CONF_DIR``, else the copy shipped in the wheel,
    else the checkout's ``conf/``."""
    if os.environ.get("TRIVAS_CONF_DIR"):
        return Path(os.environ["TRIVAS_CONF_DIR"])
    return PACKAGED_CONF_DIR if PACKAGED_CONF_DIR.is_dir() else REPO_ROOT / "conf"


def home() -> Path:
    """Where the settings' relative paths (``var``, ``.cache/jars``) resolve: ``$TRIVAS_HOME``,
    else the checkout this package runs from, else (an installed wheel) the working directory."""
    if os.environ.get("TRIVAS_HOME"):
        return Path(os.environ["TRIVAS_HOME"])
    return REPO_ROOT if (REPO_ROOT / "conf").is_dir() else Path.cwd()
