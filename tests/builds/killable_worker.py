"""A build worker in a process of its own, for the tests that kill one (SIGKILL to its
process group, as `kill -9` did on the make run stack) in the middle of a stage and let
another worker take the build over.

`start_worker` runs `python -m tests.builds.killable_worker CONFIG` with the test's settings
and cloud environment on the test's own database (`shared_database`: the in-memory SQLite
database of pytest-django copied to a file that both processes open). The process runs the
real pipeline (`builds.tasks.run_build`), except for two things:

- customize's libguestfs engine (`builds.customize.customize`) is `customize_stand_in`: the
  fast tier has no appliance; the stage around it (the overlay on the fetched file, the
  recipe's secrets, the outputs) is the real one. The worker that takes over uses it too;
- `hang_in` makes the worker stop for good at a point of one stage, so that the test kills
  it there: in customize (instead of the engine) or in finalize (after the conversion,
  before the stage records it). The other stages are stopped by what they wait for (a
  stalled upstream, a cloud that refuses for now), not by a hook.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
HANGING = "(the worker stops here until it is killed)"
# The settings a worker process takes from the test (what the test's fixtures set).
COPIED_SETTINGS = (
    "ARTEFACT_DIR",
    "DOWNLOAD_CACHE_DIR",
    "UPSTREAM_ALLOWED_HOSTS",
    "BUILD_HEARTBEAT_SECONDS",
    "BUILD_LEASE_SECONDS",
    "BUILD_TEST_STAGE",
    "CLOUD_POLL_SECONDS",
    "CLOUD_POLL_MAX_SECONDS",
    "CLOUD_RETRY_BASE_SECONDS",
    "CLOUD_RETRY_MAX_SECONDS",
    "CLOUD_RETRY_ATTEMPTS",
    "CLOUD_REQUEST_TIMEOUT_SECONDS",
    "CLOUD_RECOVER_SECONDS",
    "PUBLISH_BUCKET",
    "PUBLISH_IMPORT_TIMEOUT_SECONDS",
    "PUBLISH_IMAGE_TIMEOUT_SECONDS",
    "TEST_BOOT_TIMEOUT_SECONDS",
    "TEST_ACTION_TIMEOUT_SECONDS",
    "TEST_CHECK_CONCURRENCY",
    "TEST_LEASE_SECONDS",
)


def customize_stand_in(disk: Path, steps: list[dict], *, log: Callable, progress: Callable, **_):
    """Stands in for the libguestfs engine: reports the steps and a one-package manifest."""
    from builds.customize import CustomizeResult

    log(f"stand-in customize of {disk.name}: {len(steps)} step(s)")
    progress(len(steps), len(steps))
    return CustomizeResult(manifest=[{"name": "stand-in", "version": "1"}], os_info={})


@contextlib.contextmanager
def shared_database(folder: Path) -> Iterator[dict[str, str]]:
    """Move the test's database to a file in `folder` for the duration of the block; yield
    the environment that points a worker process at it.

    pytest-django's SQLite test database lives in memory, where no other process can reach
    it. It is copied to a file, and the connection is pointed at the file; the in-memory
    connection is set aside, not closed (closing it would drop the session's database), and
    put back afterwards."""
    from django.db import connections

    connection = connections["default"]
    if connection.vendor != "sqlite":
        raise RuntimeError("shared_database copies SQLite's in-memory test database only")
    path = folder / "shared.sqlite3"
    connection.ensure_connection()
    with contextlib.closing(sqlite3.connect(path)) as copy:
        connection.connection.backup(copy)
    memory, name = connection.connection, connection.settings_dict["NAME"]
    connection.connection = None
    connection.settings_dict["NAME"] = str(path)
    try:
        yield {"SQLITE_PATH": str(path)}
    finally:
        connection.close()
        connection.settings_dict["NAME"] = name
        connection.connection = memory


def start_worker(
    build_id: int, env: dict[str, str], log_file: Path, *, hang_in: str = ""
) -> subprocess.Popen:
    """Start a worker process that runs (or resumes) the build, in a process group of its
    own (its qemu-img children go with it when the group is killed)."""
    from django.conf import settings

    values = {}
    for name in COPIED_SETTINGS:
        if hasattr(settings, name):
            value = getattr(settings, name)
            values[name] = str(value) if isinstance(value, Path) else value
    config = {"build_id": build_id, "hang_in": hang_in, "settings": values}
    environment = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    environment.pop("DATABASE_URL", None)
    environment.update(
        {
            "DJANGO_SETTINGS_MODULE": "config.settings",
            "DJANGO_SECRET_KEY": "killable-worker-test-key",
            "FACTORY_LOCAL": "1",
            "PYTHONPATH": str(ROOT),
            **env,
        }
    )
    with open(log_file, "ab") as output:
        return subprocess.Popen(
            [sys.executable, "-m", "tests.builds.killable_worker", json.dumps(config)],
            cwd=ROOT,
            env=environment,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def kill(process: subprocess.Popen) -> None:
    """kill -9 of the worker's process group."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=30)


def _hang(log: Callable[[str], None]) -> None:
    log(HANGING)
    threading.Event().wait()


def main(config: dict[str, Any]) -> None:
    import django

    django.setup()
    from django.conf import settings

    for name, value in config["settings"].items():
        setattr(settings, name, value)
    from builds import customize, finalize, tasks

    hang_in = config["hang_in"]

    def customize_here(disk: Path, steps: list[dict], **kwargs: Any):
        if hang_in == "customize":
            _hang(kwargs["log"])
        return customize_stand_in(disk, steps, **kwargs)

    customize.customize = customize_here
    if hang_in == "finalize":
        convert = finalize.finalize

        def finalize_then_hang(src: Path, dest: Path, *, log: Callable, cancelled: Callable):
            convert(src, dest, log=log, cancelled=cancelled)
            _hang(log)

        finalize.finalize = finalize_then_hang
    print(tasks.run_build(config["build_id"]), flush=True)


if __name__ == "__main__":
    main(json.loads(sys.argv[1]))
