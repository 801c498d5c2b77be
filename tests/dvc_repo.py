"""A fresh DVC repository holding the project's pipeline, and DVC run in it isolated from the user's config.

Shared by the tests that run the ``dvc`` command on the project's ``dvc.yaml`` (no git checkout there: DVC
is told so in the repository's local config, the project's own config is left alone).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DVC = Path(sys.executable).parent / "dvc"


def new_dvc_repo(workdir: Path, params_file: Path = ROOT / "params.yaml") -> Path:
    """``workdir`` as a DVC repository: the project's ``dvc.yaml``, ``params_file`` as ``params.yaml``."""
    (workdir / ".dvc").mkdir(parents=True)
    shutil.copy(ROOT / "dvc.yaml", workdir / "dvc.yaml")
    shutil.copy(params_file, workdir / "params.yaml")
    for name in (".dvc/config", ".dvcignore"):
        if (ROOT / name).is_file():
            shutil.copy(ROOT / name, workdir / name)
    (workdir / ".dvc" / "config.local").write_text("[core]\n    no_scm = true\n")
    return workdir


def run_dvc(workdir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``dvc <args>`` in ``workdir`` with DVC's global, system and site folders inside it, no analytics."""
    isolated = workdir / ".dvc-home"
    env = {
        **os.environ,
        "DVC_NO_ANALYTICS": "1",
        "DVC_NO_UPDATER": "1",
        "DVC_GLOBAL_CONFIG_DIR": str(isolated / "global"),
        "DVC_SYSTEM_CONFIG_DIR": str(isolated / "system"),
        "DVC_SITE_CACHE_DIR": str(isolated / "site-cache"),
        "COLUMNS": "1000",  # no wrapping by the terminal width: tables as they are
    }
    return subprocess.run(
        [str(DVC), *args], cwd=workdir, env=env, capture_output=True, text=True, timeout=120
    )
