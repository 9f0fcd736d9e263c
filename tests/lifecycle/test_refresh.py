"""Rebuilds nobody clicked: the refresh cadence, upstream releases, advisories, bulk triggers."""

from __future__ import annotations

import datetime as dt
import hashlib

import pytest
import time_machine
from django.urls import reverse

from builds.choices import BuildState, Trigger
from builds.models import Build
from catalog.choices import ImageState
from catalog.models import AuditEntry, ImageVersion
from lifecycle import refresh
from lifecycle.models import CheckOutcome, SecurityAdvisory, UpstreamCheck
from tests.catalog.factories import instantapp, os_image

pytestmark = pytest.mark.django_db

NOW = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)


def version(
    image,
    *,
    name,
    days_ago=0,
    released_days_ago=None,
    serial="",
    manifest=(),
    arch="x86_64",
    base=None,
):
    return ImageVersion.objects.create(
        image=image,
        arch=arch,
        name=name,
        created_at=NOW - dt.timedelta(days=days_ago),
        released_at=None
        if released_days_ago is None
        else NOW - dt.timedelta(days=released_days_ago),
        upstream_serial=serial,
        manifest=[{"name": n, "version": v, "arch": "amd64"} for n, v in manifest],
        base_version=base,
    )


def builds_of(image, trigger=None):
    qs = Build.objects.filter(image=image)
    return list(qs.filter(trigger=trigger) if trigger else qs)


# --- cadence ---------------------------------------------------------------------------------


@time_machine.travel(NOW, tick=False)
def test_the_daily_cadence_queues_only_images_that_would_become_stale_within_the_margin(
    settings,
) -> None:
    settings.REFRESH_DAYS, settings.REFRESH_MARGIN_DAYS = 90, 14
    soon = os_image("debian_soon")
    version(soon, name="a", days_ago=80, released_days_ago=80)  # due in 10 days
    fresh = os_image("debian_fresh")
    version(fresh, name="a", days_ago=30, released_days_ago=30)  # due in 60 days
    stale = os_image("debian_stale")
    version(stale, name="a", days_ago=120, released_days_ago=120)  # 30 days late
    waiting = os_image("debian_waiting")
    version(waiting, name="a", days_ago=85, released_days_ago=85)
    version(waiting, name="b", days_ago=2)  # a refresh already built, awaiting release
    gone = os_image("debian_gone")
    gone.state = ImageState.DEPRECATED
    gone.save()
    version(gone, name="a", days_ago=200, released_days_ago=200)
    never = os_image("debian_never")

    results = refresh.queue_stale_rebuilds()

    assert sorted(r.build.image.label for r in results) == ["debian_soon", "debian_stale"]
    (build,) = builds_of(soon, Trigger.SCHEDULE)
    assert "No release since 2025-12-11" in build.reason
    assert "due by 2026-03-11" in build.reason
    assert not builds_of(fresh) and not builds_of(waiting) and not builds_of(gone)
    assert not builds_of(never)
    # Running again the same day duplicates nothing: the builds are still queued.
    assert not any(r.created for r in refresh.queue_stale_rebuilds())


@time_machine.travel(NOW, tick=False)
def test_the_triggers_page_lists_images_by_refresh_due_date(client, manager) -> None:
    late = os_image("debian_late")
    version(late, name="a", days_ago=100, released_days_ago=100)
    ok = os_image("debian_ok")
    version(ok, name="a", days_ago=10, released_days_ago=10)
    client.force_login(manager)
    page = client.get(reverse("lifecycle:triggers")).content.decode()
    assert page.index("debian_late") < page.index("debian_ok")
    assert "stale (-10)" in page


@time_machine.travel(NOW, tick=False)
def test_the_overview_flags_stale_exactly_the_images_the_cadence_counts_stale(
    client, viewer, settings
) -> None:
    settings.REFRESH_DAYS = 90
    released_long_ago = os_image("debian_released")
    version(released_long_ago, name="a", days_ago=120, released_days_ago=120)
    built_long_ago = os_image("debian_built")
    version(built_long_ago, name="a", days_ago=100)  # never released
    fresh = os_image("debian_fresh")
    version(fresh, name="a", days_ago=30, released_days_ago=30)
    due_today = os_image("debian_due_today")
    version(due_today, name="a", days_ago=90)
    rebuilt = os_image("debian_rebuilt")  # the last release counts, not the newer build
    version(rebuilt, name="a", days_ago=95, released_days_ago=95)
    version(rebuilt, name="b", days_ago=3)
    scheduled = os_image("debian_scheduled")
    scheduled.state = ImageState.DEPRECATION_SCHEDULED
    scheduled.save()
    version(scheduled, name="a", days_ago=200, released_days_ago=200)
    for label, state in [
        ("debian_gone", ImageState.DEPRECATED),
        ("debian_old", ImageState.RETIRED),
    ]:
        gone = os_image(label)
        gone.state = state
        gone.save()
        version(gone, name="a", days_ago=300, released_days_ago=300)
    os_image("debian_never")
    client.force_login(viewer)

    cadence = {s.image.label for s in refresh.refresh_status() if s.stale}
    rows = client.get(reverse("catalog:overview")).context["rows"]
    overview = {row.image.label for row in rows if "stale" in row.badges}
    filtered = client.get(reverse("catalog:overview"), {"badge": "stale"}).context["rows"]
    assert cadence == overview == {row.image.label for row in filtered}
    assert overview == {
        "debian_released",
        "debian_built",
        "debian_due_today",
        "debian_rebuilt",
        "debian_scheduled",
    }


# --- upstream release check ------------------------------------------------------------------


def _publish(server, serial: str) -> None:
    digest = hashlib.sha256(serial.encode()).hexdigest()
    (server.root / "SHA256SUMS").write_text(
        f"# serial: {serial}\n{digest}  debian-12-genericcloud-amd64.qcow2\n"
    )


@pytest.fixture
def channel_image(upstream, settings):
    settings.UPSTREAM_ALLOWED_HOSTS = [*settings.UPSTREAM_ALLOWED_HOSTS, "127.0.0.1"]
    image = os_image("debian_bookworm", channel=upstream.url())
    image.sources.update(
        checksum_file="SHA256SUMS", serial_pattern=r"(?m)^# serial: (?P<serial>\S+)$"
    )
    return image


def test_an_unchanged_upstream_serial_rebuilds_nothing_and_says_why(upstream, channel_image):
    version(channel_image, name="2026-02-01", days_ago=28, serial="20260201-1")
    _publish(upstream, "20260201-1")

    (check,) = refresh.check_all_upstreams()

    assert check.outcome == CheckOutcome.UNCHANGED
    assert check.serial_seen == "20260201-1"
    assert "unchanged since version 2026-02-01" in check.message
    assert "no rebuild" in check.message
    assert not builds_of(channel_image)
    assert upstream.requests_for("SHA256SUMS")


def test_a_new_upstream_serial_queues_one_rebuild_with_the_serial_as_reason(
    upstream, channel_image, client, manager
):
    version(channel_image, name="2026-02-01", days_ago=28, serial="20260201-1")
    _publish(upstream, "20260226-3")

    (check,) = refresh.check_all_upstreams()

    assert check.outcome == CheckOutcome.REBUILT
    (build,) = builds_of(channel_image, Trigger.UPSTREAM_RELEASE)
    assert check.build == build
    assert "New upstream serial 20260226-3" in build.reason
    assert "20260201-1" in build.reason
    # The next day's check finds the build still queued and says so instead of queuing.
    again = refresh.check_all_upstreams()[0]
    assert again.outcome == CheckOutcome.ALREADY_BUILDING
    assert Build.objects.filter(image=channel_image).count() == 1
    # Once that build failed, the same serial is not retried every day.
    build.state = BuildState.FAILED
    build.upstream_serial = "20260226-3"
    build.save()
    assert refresh.check_all_upstreams()[0].outcome == CheckOutcome.FAILED_BEFORE
    client.force_login(manager)
    page = client.get(reverse("lifecycle:triggers")).content.decode()
    assert "unchanged" not in page and "not retried automatically" in page


def test_an_unreadable_channel_is_recorded_as_an_error(upstream, channel_image):
    version(channel_image, name="2026-02-01", days_ago=28, serial="20260201-1")
    upstream.fail("503")
    (check,) = refresh.check_all_upstreams()
    assert check.outcome == CheckOutcome.ERROR
    assert "SHA256SUMS" in check.message or "503" in check.message
    assert UpstreamCheck.objects.count() == 1
    assert not builds_of(channel_image)


# --- security advisories -----------------------------------------------------------------------


@pytest.fixture
def fleet():
    """Two Debian and two Rocky images, vulnerable or not by their own ordering."""
    deb_old = os_image("debian_old")
    version(deb_old, name="v1", manifest=[("libc6", "2.36-9+deb12u4"), ("curl", "7.88.1")])
    deb_new = os_image("debian_new")
    version(deb_new, name="v1", manifest=[("libc6", "2.36-9+deb12u10")])
    rocky_old = os_image("rocky_old")
    rocky_old.distribution = "Rocky Linux"
    rocky_old.save()
    version(rocky_old, name="v1", manifest=[("glibc", "2.34-60.el9")])
    rocky_new = os_image("rocky_new")
    rocky_new.distribution = "Rocky Linux"
    rocky_new.save()
    version(rocky_new, name="v1", manifest=[("glibc", "2.34-100.el9")])
    return {"deb_old": deb_old, "deb_new": deb_new, "rocky_old": rocky_old, "rocky_new": rocky_new}


def test_an_advisory_matches_older_dpkg_versions_by_dpkg_rules(fleet) -> None:
    # As strings "2.36-9+deb12u4" > "2.36-9+deb12u10"; dpkg says older.
    matches = refresh.match_advisory(["libc6"], "2.36-9+deb12u10")
    assert [m.image.label for m in matches] == ["debian_old"]
    assert matches[0].summary == "libc6 2.36-9+deb12u4"


def test_an_advisory_matches_older_rpm_versions_by_rpm_rules(fleet) -> None:
    # As strings "2.34-60.el9" > "2.34-100.el9"; rpm says older.
    matches = refresh.match_advisory(["glibc"], "2.34-100.el9")
    assert [m.image.label for m in matches] == ["rocky_old"]


def test_an_advisory_without_a_fixed_version_matches_every_image_with_the_package(fleet):
    labels = {m.image.label for m in refresh.match_advisory(["libc6", "glibc"], "")}
    assert labels == {"debian_old", "debian_new", "rocky_old", "rocky_new"}


def test_an_advisory_goes_through_a_confirmation_page_then_queues_security_builds(
    client, manager, fleet
) -> None:
    client.force_login(manager)
    form = {"kind": "security", "advisory_id": "DSA-5999-1", "packages": "libc6, openssl",
            "fixed_version": "2.36-9+deb12u10"}  # fmt: skip
    page = client.post(reverse("lifecycle:bulk_rebuild"), form)
    assert page.status_code == 200
    text = page.content.decode()
    assert "debian_old" in text and "debian_new" not in text and "rocky_old" not in text
    assert "libc6 2.36-9+deb12u4" in text
    assert not Build.objects.exists() and not SecurityAdvisory.objects.exists()

    done = client.post(
        reverse("lifecycle:bulk_rebuild"),
        {**form, "confirm": "yes", "image": [fleet["deb_old"].pk, fleet["deb_new"].pk]},
    )

    assert done.status_code == 302
    (build,) = Build.objects.all()
    assert build.image == fleet["deb_old"] and build.trigger == Trigger.SECURITY
    assert "DSA-5999-1" in build.reason and "libc6 2.36-9+deb12u4" in build.reason
    advisory = SecurityAdvisory.objects.get()
    assert list(advisory.images.all()) == [fleet["deb_old"]]
    assert advisory.packages == ["libc6", "openssl"] and advisory.created_by == manager
    assert AuditEntry.objects.filter(action="trigger.security_advisory", actor=manager).exists()


def test_the_version_page_partial_says_whether_the_fixed_version_is_now_installed(
    client, viewer, fleet
) -> None:
    advisory, _ = refresh.rebuild_for_advisory(
        "DSA-5999-1", ["libc6"], "2.36-9+deb12u10", image_ids=[fleet["deb_old"].pk]
    )
    before = fleet["deb_old"].versions.get()
    after = version(fleet["deb_old"], name="v2", manifest=[("libc6", "2.36-9+deb12u13")])
    assert advisory.is_fixed_in(before) is False
    assert advisory.is_fixed_in(after) is True
    client.force_login(viewer)
    url = reverse("lifecycle:version_advisories", args=[after.pk])
    text = client.get(url, headers={"HX-Request": "true"}).content.decode()
    assert "fixed version installed" in text and "2.36-9+deb12u13" in text
    assert "<html" not in text
    old = client.get(reverse("lifecycle:version_advisories", args=[before.pk]))
    assert "still vulnerable" in old.content.decode()


# --- bulk triggers and base releases ------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "field", "value", "expected"),
    [
        ("ecosystem", "package_version", "2.4.1", "Provider ecosystem package updated to 2.4.1."),
        ("new_product", "note", "POP2-HN-10 launch", "New product: POP2-HN-10 launch"),
    ],
)
def test_bulk_triggers_rebuild_every_live_image_after_confirmation(
    client, manager, kind, field, value, expected
) -> None:
    base = os_image("ubuntu_noble", arches=("x86_64", "arm64"))
    app = instantapp("wordpress", base)
    gone = os_image("ubuntu_focal")
    gone.state = ImageState.DEPRECATED
    gone.save()
    client.force_login(manager)
    url = reverse("lifecycle:bulk_rebuild")
    confirm = client.post(url, {"kind": kind, field: value}).content.decode()
    assert "ubuntu_noble" in confirm and "wordpress" in confirm and "ubuntu_focal" not in confirm
    assert not Build.objects.exists()

    client.post(url, {"kind": kind, field: value, "confirm": "yes",
                      "image": [base.pk, app.pk, gone.pk]})  # fmt: skip

    built = sorted((b.image.label, b.arch, b.trigger, b.reason) for b in Build.objects.all())
    assert built == [
        ("ubuntu_noble", "arm64", kind, expected),
        ("ubuntu_noble", "x86_64", kind, expected),
        ("wordpress", "x86_64", kind, expected),
    ]


def test_an_instantapp_is_rebuilt_once_when_its_base_gets_a_new_release() -> None:
    base = os_image("ubuntu_noble")
    app = instantapp("wordpress", base)
    other = instantapp("docker", os_image("debian_bookworm"))
    released = version(base, name="2026-03-01", released_days_ago=0)

    (result,) = refresh.on_base_released(released)

    assert result.build.image == app and result.build.trigger == Trigger.BASE_RELEASE
    assert "ubuntu_noble released version 2026-03-01" in result.build.reason
    assert not builds_of(other)
    result.build.state = BuildState.DONE
    result.build.save()
    version(app, name="2026-03-01", base=released)
    assert refresh.on_base_released(released) == []


# --- permissions --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("role", "allowed"),
    [("viewer", False), ("manager", True), ("release_manager", True), ("admin_user", True)],
)
def test_only_managers_see_the_triggers_page_and_queue_rebuilds(request, client, role, allowed):
    os_image("debian_bookworm")
    client.force_login(request.getfixturevalue(role))
    page = client.get(reverse("lifecycle:triggers"))
    assert page.status_code == (200 if allowed else 403)
    confirm = client.post(
        reverse("lifecycle:bulk_rebuild"),
        {"kind": "ecosystem", "package_version": "1", "confirm": "yes"},
    )
    assert confirm.status_code == (302 if allowed else 403)
    assert Build.objects.exists() is False  # no id confirmed: nothing queued either way
    assert client.get(reverse("lifecycle:bulk_rebuild")).status_code == 405


def test_a_channel_failing_unexpectedly_is_recorded_and_the_other_channels_are_still_checked(
    upstream, channel_image, monkeypatch
):
    # The resolver turns every failure it knows into a ResolveError; a bug it does not know
    # (here a KeyError from the almalinux channel only) must cost no other channel its check.
    broken = os_image("almalinux_9", channel=upstream.url("alma/"))
    real_resolve = refresh.resolve

    def resolve_with_a_bug(spec, **kwargs):
        if "/alma/" in spec.channel_url:
            raise KeyError("serial")
        return real_resolve(spec, **kwargs)

    monkeypatch.setattr(refresh, "resolve", resolve_with_a_bug)
    version(channel_image, name="2026-02-01", days_ago=28, serial="20260201-1")
    _publish(upstream, "20260201-1")

    checks = refresh.check_all_upstreams()

    assert [(c.image.label, c.outcome) for c in checks] == [
        ("almalinux_9", CheckOutcome.ERROR),
        ("debian_bookworm", CheckOutcome.UNCHANGED),
    ]
    assert "unexpected KeyError: 'serial'" in checks[0].message
    assert UpstreamCheck.objects.filter(image=broken, outcome=CheckOutcome.ERROR).count() == 1
