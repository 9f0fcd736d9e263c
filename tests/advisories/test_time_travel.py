"""An image's life against the distribution's advisories, with the dashboard's clock moved
day by day (time-machine); the daily task is called as the cluster would run it.

released -> an advisory with a fix appears -> exactly one security rebuild through the real
queue (not a second one while it is active, nor the same day after it ended) -> the rebuilt
version's stored manifest holds the fixed package -> its page says the exposure is gone.
The build itself is not run: its version is stored as the build would store it.
"""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.urls import reverse
from django.utils import timezone

from advisories import act, tasks
from advisories.models import Exposure, ImagePolicy
from builds.choices import BuildState, Trigger
from builds.models import Build
from catalog.choices import VersionState
from lifecycle.models import Release
from tests.advisories.conftest import deb, debian_image, version
from tests.advisories.osv_server import OsvServer, record

pytestmark = pytest.mark.django_db

PARIS = ZoneInfo("Europe/Paris")
DAY0 = dt.datetime(2027, 3, 1, 6, 0, tzinfo=PARIS)
CRITICAL = [{"type": "CVSS_V3", "score": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"}]
MEDIUM = [{"type": "Ubuntu", "score": "medium"}]


def _day(n: int, hour: int = 6) -> dt.datetime:
    return (DAY0 + dt.timedelta(days=n)).replace(hour=hour)


def _released_version(image, name: str, manifest, user):
    """A version released as lifecycle.releases records it (the Release row and the version's
    state); publishing to a cloud is not what these tests are about."""
    v = version(image, name, manifest)
    now = timezone.now()
    Release.objects.create(version=v, released_by=user, released_at=now)
    v.state, v.released_at = VersionState.RELEASED, now
    v.save()
    return v


def test_an_advisory_with_a_fix_rebuilds_once_and_the_new_version_shows_it_gone(
    osv_server: OsvServer, release_manager, client, viewer
) -> None:
    installed = [
        deb("libssl3", "3.0.11-1~deb12u1", "openssl"),
        deb("bash", "5.2.15-2+b2", "bash", "5.2.15-2"),
    ]
    with time_machine.travel(_day(0), tick=False):
        image = debian_image()
        _released_version(image, "2027-03-01", installed, release_manager)
        osv_server.serve("Debian", [record("DSA-9-1", "Debian:12", "nginx", "1.0-1")])
        tasks.import_osv_task()
        assert not Exposure.objects.exists() and not Build.objects.exists()

    advisories = [
        record("DSA-9-1", "Debian:12", "nginx", "1.0-1"),
        record("DSA-10-1", "Debian:12", "openssl", "3.0.15-1~deb12u1", severity=CRITICAL),
        record("DSA-11-1", "Debian:12", "bash", None, severity=CRITICAL),
    ]
    with time_machine.travel(_day(2), tick=False):
        osv_server.serve("Debian", advisories, etag='"2"')
        tasks.import_osv_task()
        [build] = Build.objects.all()
        assert build.trigger == Trigger.SECURITY and build.image == image
        assert "DSA-10-1" in build.reason and "DSA-11-1" not in build.reason  # no fix yet
        tasks.import_osv_task()  # the build is still active: nothing more
        # The build ends and stores its version: the fixed openssl; bash has no fix yet.
        build.state = BuildState.DONE
        build.save()
        fixed = [deb("libssl3", "3.0.15-1~deb12u1", "openssl"), installed[1]]
        second = version(image, "2027-03-03", fixed)
        [decision] = act.queue_security_rebuilds()
        assert not decision.queued and decision.reason == "already rebuilt today"
        tasks.import_osv_task()
        assert Build.objects.count() == 1

        client.force_login(viewer)
        page = client.get(second.get_absolute_url()).content.decode()
        assert 'gone: <span class="mono">DSA-10-1</span> (libssl3)' in page
        assert (
            'Remaining because upstream has no fix yet: <span class="mono">DSA-11-1</span>' in page
        )

    with time_machine.travel(_day(3), tick=False):
        client.force_login(viewer)  # a day later, yesterday's session has expired
        page = client.get(reverse("catalog:image", args=[image.label])).content.decode()
        assert "2 exposures, 1 with a fix available" in page
        assert "Days exposed (a fixable vulnerability in the current release): 1." in page
        Release.objects.create(version=second, released_at=timezone.now())
        second.state, second.released_at = VersionState.RELEASED, timezone.now()
        second.save()
        tasks.import_osv_task()
        assert act.days_exposed([image.pk]) == {image.pk: 0}
        assert Build.objects.count() == 1  # what remains has no fix: nothing to rebuild for


def test_threshold_per_image_and_no_rebuild_while_a_build_is_active(
    osv_server: OsvServer, release_manager, settings
) -> None:
    image = debian_image()
    v = _released_version(
        image, "2027-03-01", [deb("libssl3", "3.0.11-1~deb12u1", "openssl")], release_manager
    )
    osv_server.serve(
        "Debian", [record("DSA-10-1", "Debian:12", "openssl", "3.0.15-1", severity=MEDIUM)]
    )
    tasks.import_osv_task()
    assert not Build.objects.exists()  # medium, below the default "high"

    ImagePolicy.objects.create(image=image, rebuild_min_severity="medium")
    active = Build.objects.create(image=image, arch=v.arch, trigger=Trigger.MANUAL)
    [decision] = act.queue_security_rebuilds()
    assert not decision.queued and decision.reason == "a build is already active"
    active.state = BuildState.DONE
    active.save()
    [decision] = act.queue_security_rebuilds()
    assert decision.queued
    assert Build.objects.filter(trigger=Trigger.SECURITY).count() == 1
