"""`manage.py check --deploy` has nothing to say about a production configuration."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.config.environment import ROOT, production_environment


def test_the_deploy_check_passes_at_warning_level_in_production(tmp_path: Path) -> None:
    check = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=production_environment(tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert check.returncode == 0, check.stdout + check.stderr
