"""Wall time of the test suite on booted servers: one zone, three zones in parallel, and the
same three zones one after the other.

The fixture image ("ready": bootable, with the stand-in provider package) is published into a
localcloud with real VMs (LOCALCLOUD_MACHINES=qemu) in fr-par-1, fr-par-2 and nl-ams-1 by the
product's own publish code, then the product's runner runs the checks:

  baseline  one zone alone                       (T1)
  parallel  three zones at once, as a build does (T3p)
  serial    three zones one after the other      (T3s)

It prints T3p / T1 (what a second and third zone cost when zones run in parallel) and
T3s / T3p (what running zones in parallel saves), and the absolute times against the targets
(twelve checks in one zone within 10 minutes, in three zones within 25 minutes, on these
2-core machines under TCG).

    .venv/bin/python bench/test_runs_zones.py                    # every check
    .venv/bin/python bench/test_runs_zones.py network,reboot     # a subset (quicker)
    .venv/bin/python bench/test_runs_zones.py --no-serial        # skip the serial three zones
    .venv/bin/python bench/test_runs_zones.py --three-only       # only the parallel three zones
    .venv/bin/python bench/test_runs_zones.py --storage-types    # both storage types vs local

With --storage-types it measures instead, in one zone and in three zones in parallel, the
checks on local storage alone (the baseline, as before Block Storage) and on both storage
types at once (a run per zone and storage type, as a build now does), and prints each ratio
against the target (both within 2.0x the local-only time).
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ZONES = ("fr-par-1", "fr-par-2", "nl-ams-1")


def main(
    names: list[str] | None, serial: bool = True, single: bool = True, storage: bool = False
) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="bench-testruns-"))
    os.environ.update(
        SQLITE_PATH=str(tmp / "bench.sqlite3"),
        DJANGO_SECRET_KEY="bench-key",
        FACTORY_LOCAL="1",
        DJANGO_SETTINGS_MODULE="config.settings",
        LOG_LEVEL="WARNING",
    )
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    from builds.models import TestRun
    from builds.testing import orchestration
    from catalog.models import Zone
    from tests.builds.testing import vmcloud

    cloud = vmcloud.vm_cloud()
    os.environ.update(vmcloud.scw_environment(cloud))
    for name, value in {
        "CLOUD_POLL_SECONDS": 1.0,
        "CLOUD_POLL_MAX_SECONDS": 3.0,
        "CLOUD_REQUEST_TIMEOUT_SECONDS": 60,
        "PUBLISH_BUCKET": "factory-bench-artefacts",
        "PUBLISH_IMPORT_TIMEOUT_SECONDS": 1800,
        "PUBLISH_IMAGE_TIMEOUT_SECONDS": 600,
    }.items():
        setattr(settings, name, value)
    print(f"publishing the fixture image in {', '.join(ZONES)}...", flush=True)
    version = vmcloud.version_for("ready", ZONES, ("instance_local", "instance_sbs"))
    checks = names or orchestration.check_names()

    def timed(
        zones: tuple[str, ...], parallel: bool, storage_types: tuple[str, ...] = ("instance_local",)
    ) -> float:
        runs = orchestration.create_runs(
            version,
            [Zone.objects.get(code=z) for z in zones],
            storage_types=storage_types,
            names=checks,
            reason="bench",
        )
        started = time.monotonic()
        if parallel:
            orchestration.run_in_parallel([r.pk for r in runs], "bench")
        else:
            for run in runs:
                orchestration.run_in_parallel([run.pk], "bench")
        took = time.monotonic() - started
        for run in TestRun.objects.filter(pk__in=[r.pk for r in runs]):
            rows = run.results.order_by("id").values_list("check_name", "state", "duration")
            checks_line = ", ".join(f"{n} {s} {d or 0:.0f} s" for n, s, d in rows)
            where = f"{run.zone.code} {run.storage_type}"
            print(f"  {where}: {run.state}: {checks_line}", flush=True)
        return took

    print(f"checks: {', '.join(checks)}", flush=True)
    if storage:
        both = ("instance_local", "instance_sbs")
        for zones in (ZONES[:1], ZONES):
            local = timed(zones, parallel=True)
            print(f"{len(zones)} zone(s), local storage: {local:.0f} s", flush=True)
            two = timed(zones, parallel=True, storage_types=both)
            print(f"{len(zones)} zone(s), both storage types: {two:.0f} s", flush=True)
            print(f"  both / local only: {two / local:.2f}x (target <= 2.0x)", flush=True)
        return
    t1 = timed(ZONES[:1], parallel=True) if single else 0.0
    if single:
        print(f"one zone: {t1:.0f} s", flush=True)
    t3p = timed(ZONES, parallel=True)
    print(f"three zones in parallel: {t3p:.0f} s", flush=True)
    if single:
        print(f"\nparallel three zones / one zone: {t3p / t1:.2f}x")
    if serial:
        t3s = timed(ZONES, parallel=False)
        print(f"three zones one after the other: {t3s:.0f} s", flush=True)
        print(f"serial / parallel three zones:   {t3s / t3p:.2f}x")
    if sorted(checks) == sorted(orchestration.check_names()):
        alone = f"{t1:.0f} s" if single else "not run"
        print(f"targets: one zone <= 600 s ({alone}), three zones <= 1500 s ({t3p:.0f} s)")
    else:
        print("a subset of the checks: the targets (600 s / 1500 s) are for all twelve")


if __name__ == "__main__":
    flags = {a for a in sys.argv[1:] if a.startswith("--")}
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    main(
        args[0].split(",") if args else None,
        serial="--no-serial" not in flags and "--three-only" not in flags,
        single="--three-only" not in flags,
        storage="--storage-types" in flags,
    )
