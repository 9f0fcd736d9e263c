"""`manage.py scaleway_smoke`: publish, boot, check and delete in one zone of the cloud the
factory points at, and say what it cost (see builds.smoke)."""

from __future__ import annotations

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from builds import smoke


class Command(BaseCommand):
    help = (
        "Publish the fixture image in one zone with both storage types, boot one server of "
        "each, run Network and Reboot, delete everything, and print what it cost."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--zone", default="fr-par-1", help="The zone to test in.")
        parser.add_argument(
            "--image",
            type=Path,
            default=None,
            help="A bootable QCOW2 (default: the newest fixture image that make test built).",
        )

    def handle(self, *args: object, zone: str, image: Path | None, **options: object) -> None:
        artefact = image or smoke.default_image()
        if artefact is None:
            raise CommandError(
                "No image: give a bootable QCOW2 with --image (make test builds one in "
                "FIXTURE_CACHE_DIR)."
            )
        try:
            result = smoke.run(zone, artefact, lambda line: self.stdout.write(f"  {line}"))
        except smoke.SmokeError as exc:
            raise CommandError(str(exc)) from exc
        for line in result.summary():
            self.stdout.write(line)
        if not result.passed:
            raise CommandError("The smoke test failed: see above.")
