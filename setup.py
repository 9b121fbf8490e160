"""Build hook: ship ``conf/`` inside the wheel as ``lakehouse/conf`` (package data).

The configuration lives at the repository's top level, where people edit it; an installed
wheel has no repository, so the build copies the folder into the ``lakehouse`` package, where
:func:`lakehouse.conf_dir` finds it (``$TRIVAS_CONF_DIR`` still overrides it). Everything else
is declared in setup.cfg.
"""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

CONF = Path(__file__).resolve().parent / "conf"


class BuildWithConf(build_py):
    """``build_py`` that also copies ``conf/`` to ``lakehouse/conf`` in the build tree."""

    def run(self) -> None:
        super().run()
        if not self.editable_mode:  # an editable install reads the checkout's conf/ directly
            shutil.copytree(CONF, Path(self.build_lib) / "lakehouse" / "conf", dirs_exist_ok=True)


setup(cmdclass={"build_py": BuildWithConf})
