"""The environment of a production process, for tests that read settings in a fresh one."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def production_environment(tmp_path: Path) -> dict[str, str]:
    """What an operator sets: DEBUG off, FACTORY_LOCAL unset, a real host name and a long
    random secret key; every other factory setting keeps its default (state under tmp_path)."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PYTEST", "DJANGO_", "FACTORY_", "SQLITE_", "DATABASE_URL"))
    }
    env.update(
        DJANGO_SETTINGS_MODULE="config.settings",
        DJANGO_SECRET_KEY=secrets.token_urlsafe(64),
        DJANGO_ALLOWED_HOSTS="factory.example.com",
        DJANGO_CSRF_TRUSTED_ORIGINS="https://factory.example.com",
        FACTORY_VAR_DIR=str(tmp_path),
        PYTHONPATH=str(ROOT),
    )
    return env
