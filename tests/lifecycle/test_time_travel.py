"""One image's whole life, with the dashboard's clock (time-machine) and localcloud's clock
offset (PUT /localcloud/v1/clock) moved together, day by day:

published and released -> customers start servers of it in localcloud -> the EOL import
brings its upstream end of life -> the policy schedules its deprecation -> the usage refresh
finds the customers -> four notices on their days (90, 30, 7 and 0 days before), one per
customer each, received at a real SMTP server -> deprecated on the date -> hidden from the
Marketplace -> a new server from its label refused -> the existing servers still running.

The daily schedules are called directly, in the order the cluster would run them.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import requests
import time_machine
from django.conf import settings as django_settings
from django.utils import timezone
from scaleway_core.api import ScalewayException

from catalog import eol
from catalog.choices import ImageState, StorageType, VersionState
from catalog.models import AuditEntry, Image, ImageVersion, Zone
from cloud import clients
from lifecycle import deprecation, notices, releases, usage
from lifecycle.models import Customer, Notice, NoticeState, Usage
from tests.builds.factories import publish_for_real
from tests.catalog.eol_server import EolServer
from tests.catalog.factories import os_image
from tests.cloud.localcloud import Cloud
from tests.lifecycle.smtp import SMTPServer

pytestmark = pytest.mark.django_db

LABEL = "debian_bookworm"
ZONE = "fr-par-1"
GRACE_DAYS = 30
OFFSETS = (90, 30, 7, 0)
CUSTOMERS = {
    "c1@example.com": "aaaaaaaa-0000-4000-8000-000000000001",
    "c2@example.com": "aaaaaaaa-0000-4000-8000-000000000002",
}


def _real_time() -> float:
    """The wall clock, even inside a time-machine travel."""
    if time_machine.escape_hatch.is_travelling():
        return time_machine.escape_hatch.time.time()
    return time.time()


def _set_cloud_clock(cloud: Cloud, when: dt.datetime) -> None:
    offset = when.timestamp() - _real_time()
    response = requests.put(
        f"{cloud.url}/localcloud/v1/clock", json={"offset_seconds": offset}, timeout=10
    )
    response.raise_for_status()


@contextmanager
def _day(cloud: Cloud, day: dt.date, hour: int = 9) -> Iterator[dt.datetime]:
    """Both clocks at `day`, `hour` o'clock local time, ticking from there."""
    when = dt.datetime.combine(day, dt.time(hour), tzinfo=ZoneInfo(django_settings.TIME_ZONE))
    _set_cloud_clock(cloud, when)
    with time_machine.travel(when, tick=True):
        yield when


def _daily() -> notices.SendReport:
    """What the daily schedules do, in order: transitions, usage, planning, sending."""
    deprecation.run_transitions()
    refresh = usage.refresh_usage()
    assert refresh.ok, refresh.message
    notices.plan_all()
    return notices.send_due()


def _eol_reply(eol_date: dt.date) -> dict:
    """endoflife.date's v1 answer for Debian, cycle 12 ending on `eol_date`."""
    return {
        "schema_version": "1.0.0",
        "result": {
            "name": "debian",
            "releases": [
                {
                    "name": "12",
                    "codename": "Bookworm",
                    "label": "12 (Bookworm)",
                    "releaseDate": "2023-06-10",
                    "isEoas": False,
                    "eoasFrom": (eol_date - dt.timedelta(days=365)).isoformat(),
                    "isEol": False,
                    "eolFrom": eol_date.isoformat(),
                    "isEoes": None,
                    "eoesFrom": None,
                }
            ],
        },
    }


def _listed(include_eol: bool) -> set[str]:
    found = clients.marketplace_api().list_images(include_eol=include_eol, page_size=100)
    return {image.label for image in found.images}


def _released_version(artefact: Path, user: object) -> ImageVersion:
    """A version of the image published in fr-par-1 through builds.publish, then released
    with an override (there are no test runs yet)."""
    image = Image.objects.get(label=LABEL)
    version = ImageVersion.objects.create(
        image=image,
        arch="x86_64",
        name="2026-11-01",
        state=VersionState.BUILT,
        artefact_path=str(artefact),
    )
    publish_for_real(version, artefact)
    ImageVersion.objects.filter(pk=version.pk).update(state=VersionState.PUBLISHED)
    version.refresh_from_db()
    releases.release(version, user, override_reason="No test runs yet: time-travel test.")
    version.refresh_from_db()
    assert version.state == VersionState.RELEASED
    return version


def test_one_image_from_release_to_deprecation_with_both_clocks_moving_together(
    cloud: Cloud,
    qcow2_artefact: Path,
    eol_server: EolServer,
    smtp_server: SMTPServer,
    release_manager,
    settings,
) -> None:
    settings.EOL_API_BASE_URL = eol_server.base_url
    settings.DEPRECATION_GRACE_DAYS = GRACE_DAYS
    settings.NOTICE_OFFSETS_DAYS = list(OFFSETS)
    settings.NOTICE_RETRY_BASE_SECONDS = 0.05
    try:
        _whole_life(cloud, qcow2_artefact, eol_server, smtp_server, release_manager)
    finally:
        # The localcloud process serves the whole session: give it back the real time.
        requests.put(f"{cloud.url}/localcloud/v1/clock", json={"offset_seconds": 0}, timeout=10)


def _whole_life(
    cloud: Cloud,
    artefact: Path,
    eol_server: EolServer,
    smtp: SMTPServer,
    user: object,
) -> None:
    # --- today, real time: published, released, running at two customers ------------------
    Zone.objects.create(code=ZONE, enabled=True)
    image = os_image(LABEL)
    image.commercial_types = ["DEV1-S"]
    image.save()
    image.upstream.eol_cycle = "12"
    image.upstream.save()
    version = _released_version(artefact, user)
    instance_image_id = version.local_images.get(
        zone__code=ZONE, storage_type=StorageType.LOCAL
    ).provider_image_id

    api = clients.instance_api()
    servers: dict[str, str] = {}
    for n, (address, project) in enumerate(sorted(CUSTOMERS.items()), start=1):
        Customer.objects.create(project_id=project, name=f"Customer {n}", email=address)
        # One from the label (the Marketplace resolves it), one from the image id.
        server = api.create_server(
            zone=ZONE,
            commercial_type="DEV1-S",
            image=LABEL if n == 1 else instance_image_id,
            name=f"web-{n}",
            project=project,
        ).server
        assert server.image.id == instance_image_id
        api.server_action(zone=ZONE, server_id=server.id, action="poweron")
        servers[address] = server.id

    # --- tomorrow: the EOL import brings the date, the policy schedules the deprecation -----
    start = timezone.localdate() + dt.timedelta(days=1)
    upstream_eol = start + dt.timedelta(days=90)
    date = upstream_eol + dt.timedelta(days=GRACE_DAYS)
    eol_server.reply_json("/api/v1/products/debian", _eol_reply(upstream_eol))
    with _day(cloud, start):
        [result] = eol.import_all()
        assert result.ok, result.message
        image.upstream.refresh_from_db()
        assert image.upstream.security_support_end == upstream_eol
        # Nothing is due yet, and localcloud's transitions (power on) have completed.
        assert _daily().sent == 0
        image.refresh_from_db()
        assert image.state == ImageState.DEPRECATION_SCHEDULED
        assert image.deprecation_date == date
        assert AuditEntry.objects.filter(action="deprecation.scheduled", image=image).exists()
        assert set(Usage.objects.values_list("server_id", flat=True)) == set(servers.values())
        assert Notice.objects.filter(image=image, state=NoticeState.PLANNED).count() == 8
        for server_id in servers.values():
            assert api.get_server(zone=ZONE, server_id=server_id).server.state == "running"
    assert smtp.received == []

    # --- the four notices, each on its day and not the day before ----------------------------
    for offset in OFFSETS:
        notice_day = date - dt.timedelta(days=offset)
        with _day(cloud, notice_day - dt.timedelta(days=1)):
            assert _daily().sent == 0, f"{offset}-day notice sent a day early"
            assert LABEL in _listed(include_eol=False)
        with _day(cloud, notice_day):
            report = _daily()
        assert report.sent == 2 and report.failed == 0, (offset, report)
        counts = smtp.count_by_recipient()
        assert counts == {address: OFFSETS.index(offset) + 1 for address in CUSTOMERS}
    for address in CUSTOMERS:
        received = smtp.to(address)
        assert len(received) == 4
        assert all("web-" in r.part("text/plain") for r in received)
    assert set(Notice.objects.values_list("kind", "state")) == {
        (str(offset), NoticeState.SENT) for offset in OFFSETS
    }

    # --- on the date: deprecated, hidden, refused for new servers, running ones untouched ----
    with _day(cloud, date, hour=10):
        image.refresh_from_db()
        assert image.state == ImageState.DEPRECATED
        assert AuditEntry.objects.filter(action="deprecation.deprecated", image=image).exists()
        assert not AuditEntry.objects.filter(action="deprecation.marketplace_failed").exists()
        assert LABEL not in _listed(include_eol=False)
        assert LABEL in _listed(include_eol=True)
        with pytest.raises(ScalewayException) as refused:
            api.create_server(
                zone=ZONE,
                commercial_type="DEV1-S",
                image=LABEL,
                name="too-late",
                project=CUSTOMERS["c1@example.com"],
            )
        assert refused.value.status_code == 400
        assert f"image {LABEL} is deprecated since" in str(refused.value)
        assert "can no longer start new instances" in str(refused.value)
        for server_id in servers.values():
            assert api.get_server(zone=ZONE, server_id=server_id).server.state == "running"
