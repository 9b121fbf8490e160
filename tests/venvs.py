"""Python environments outside the checkout, made from this interpreter's packages (offline)."""

from __future__ import annotations

import subprocess
import sys
import sysconfig
from pathlib import Path


def dependencies_venv(venv: Path) -> Path:
    """A new virtualenv that sees trivas's dependencies (a .pth onto this interpreter's
    site-packages) but not trivas itself: the editable install's finder is not carried over.
    Returns the venv's python."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    purelib = Path(subprocess.check_output([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], text=True).strip())
    (purelib / "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return python
