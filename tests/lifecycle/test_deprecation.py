"""Deprecation: dates from the policy or a manager, replacements, and the daily transitions."""

from __future__ import annotations

import datetime as dt

import pytest
import time_machine
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from catalog.choices import DeprecationBasis, ImageState, VersionState
from catalog.models import AuditEntry, Image, ImageVersion
from lifecycle import deprecation
from lifecycle.views import triggers
from tests.catalog.factories import instantapp, os_image
from tests.lifecycle.daily_run import NOON, TODAY, at, fresh, run

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("deprecation_policy")]


def ubuntu(label: str, released: dt.date, eol: dt.date | None, **extra) -> Image:
    image = os_image(label, eol=eol, **extra)
    image.version = str(released.year - 2000) + ".04"
    image.save()
    image.upstream.release_date = released
    image.upstream.save()
    return image


# --- the policy ------------------------------------------------------------------------------


def test_the_date_is_the_upstream_eol_plus_the_global_grace_period() -> None:
    image = os_image("debian_bookworm", eol=dt.date(2026, 7, 11))
    summary = run()
    image = fresh(image)
    assert summary.scheduled == ["debian_bookworm"]
    assert image.state == ImageState.DEPRECATION_SCHEDULED
    assert image.deprecation_date == dt.date(2026, 10, 9)
    assert "2026-07-11 + 90 days of grace" in image.deprecation_reason
    entry = AuditEntry.objects.get(action="deprecation.scheduled", image=image)
    assert entry.actor is None and entry.after["deprecation_date"] == "2026-10-09"


def test_an_image_grace_period_overrides_the_global_one() -> None:
    image = os_image("debian_bookworm", eol=dt.date(2026, 7, 11))
    image.grace_period_days = 30
    image.save()
    run()
    assert fresh(image).deprecation_date == dt.date(2026, 8, 10)


def test_the_extended_support_basis_follows_the_end_of_extended_support() -> None:
    image = os_image("debian_bookworm", eol=dt.date(2026, 7, 11))
    image.upstream.deprecation_basis = DeprecationBasis.EXTENDED
    image.upstream.extended_support_end = dt.date(2028, 6, 30)
    image.upstream.save()
    run()
    image = fresh(image)
    assert image.deprecation_date == dt.date(2028, 9, 28)
    assert "extended support 2028-06-30" in image.deprecation_reason


def test_rolling_releases_and_images_without_eol_are_never_deprecated_automatically() -> None:
    rolling = os_image("arch_linux", rolling=True)
    unknown = os_image("debian_sid", eol=None)
    assert run().scheduled == []
    assert run(TODAY + dt.timedelta(days=4000)).scheduled == []
    assert fresh(rolling).state == fresh(unknown).state == ImageState.ACTIVE
    assert fresh(rolling).deprecation_date is None
    assert "Rolling release" in deprecation.plan_for(rolling).explanation


def test_an_image_already_past_its_date_gets_the_shortest_notice_from_today() -> None:
    focal = os_image("ubuntu_focal", eol=dt.date(2025, 5, 31))  # + 90 = 2025-08-29
    run()
    focal = fresh(focal)
    assert focal.deprecation_date == TODAY + dt.timedelta(days=7)
    assert (
        "2025-08-29" in focal.deprecation_reason
        and "moved to 2026-03-08" in focal.deprecation_reason
    )
    assert focal.state == ImageState.DEPRECATION_SCHEDULED


def test_the_replacement_is_the_newest_active_image_of_the_same_distribution() -> None:
    focal = ubuntu("ubuntu_focal", dt.date(2020, 4, 23), dt.date(2025, 5, 31))
    ubuntu("ubuntu_jammy", dt.date(2022, 4, 21), dt.date(2027, 6, 1))
    noble = ubuntu("ubuntu_noble", dt.date(2024, 4, 25), dt.date(2029, 5, 31))
    newer_but_gone = ubuntu("ubuntu_zesty", dt.date(2025, 4, 20), dt.date(2026, 1, 1))
    newer_but_gone.state = ImageState.RETIRED
    newer_but_gone.save()
    os_image("debian_trixie", eol=dt.date(2028, 8, 9))
    run()
    assert fresh(focal).replacement == noble
    assert fresh(noble).replacement is None  # nothing newer


def test_an_instantapp_follows_its_base_with_the_same_app_on_a_newer_base_as_replacement():
    focal = ubuntu("ubuntu_focal", dt.date(2020, 4, 23), dt.date(2025, 5, 31))
    noble = ubuntu("ubuntu_noble", dt.date(2024, 4, 25), dt.date(2029, 5, 31))
    old_app = instantapp("wordpress", focal)
    new_app = instantapp("wordpress_noble", noble)
    instantapp("docker_noble", noble)
    run()
    old_app, focal = fresh(old_app), fresh(focal)
    assert old_app.state == ImageState.DEPRECATION_SCHEDULED
    assert old_app.deprecation_date == focal.deprecation_date == dt.date(2026, 3, 8)
    assert "Follows its base image ubuntu_focal" in old_app.deprecation_reason
    assert old_app.replacement == new_app


# --- a manager sets or moves the date ----------------------------------------------------


@time_machine.travel(NOON, tick=False)
def test_a_release_manager_moves_the_date_with_a_reason_and_following_apps_move_too(
    client, release_manager
) -> None:
    base = os_image("debian_bookworm", eol=dt.date(2026, 7, 11))
    app = instantapp("nextcloud", base)
    own = instantapp("gitlab", base)
    deprecation.run_transitions()
    own.refresh_from_db()
    deprecation.set_deprecation_date(
        own, dt.date(2026, 12, 1), reason="customer contract", user=release_manager
    )
    client.force_login(release_manager)

    response = client.post(
        reverse("lifecycle:deprecation_set", args=[base.label]),
        {"date": "2026-11-30", "reason": "Debian LTS covers us until then"},
    )

    assert response.status_code == 302
    base = fresh(base)
    assert base.deprecation_date == dt.date(2026, 11, 30)
    assert "Debian LTS covers us until then" in base.deprecation_reason
    entry = AuditEntry.objects.filter(action="deprecation.date_set", image=base).get()
    assert entry.actor == release_manager
    assert entry.message == "Debian LTS covers us until then"
    assert entry.before["deprecation_date"] == "2026-10-09"
    assert entry.after["deprecation_date"] == "2026-11-30"
    assert fresh(app).deprecation_date == dt.date(2026, 11, 30)
    assert fresh(own).deprecation_date == dt.date(2026, 12, 1)  # overridden: kept


@time_machine.travel(NOON, tick=False)
def test_a_date_without_a_reason_or_in_the_past_is_refused(client, release_manager) -> None:
    image = os_image("debian_bookworm", eol=dt.date(2026, 7, 11))
    client.force_login(release_manager)
    url = reverse("lifecycle:deprecation_set", args=[image.label])
    assert client.post(url, {"date": "2026-11-30", "reason": " "}).status_code == 400
    past = client.post(url, {"date": "2026-01-01", "reason": "oops"})
    assert past.status_code == 400 and "today or a later date" in past.content.decode()
    assert fresh(image).deprecation_date is None
    assert not AuditEntry.objects.filter(action="deprecation.date_set").exists()


@pytest.mark.parametrize(
    ("role", "allowed"),
    [("viewer", False), ("manager", False), ("release_manager", True), ("admin_user", True)],
)
@time_machine.travel(NOON, tick=False)
def test_only_release_managers_set_deprecation_dates(request, client, role, allowed) -> None:
    image = os_image("debian_bookworm", eol=dt.date(2026, 7, 11))
    user = request.getfixturevalue(role)
    client.force_login(user)
    panel = client.get(
        reverse("lifecycle:deprecation_panel", args=[image.label]), headers={"HX-Request": "true"}
    )
    assert panel.status_code == 200
    assert ("Set or move the date" in panel.content.decode()) is allowed
    response = client.post(
        reverse("lifecycle:deprecation_set", args=[image.label]),
        {"date": "2026-12-01", "reason": "planned"},
    )
    assert response.status_code == (302 if allowed else 403)
    assert (fresh(image).deprecation_date == dt.date(2026, 12, 1)) is allowed


@time_machine.travel(NOON, tick=False)
def test_the_panel_shows_the_planned_date_how_it_was_computed_and_the_replacement(
    client, viewer
) -> None:
    focal = ubuntu("ubuntu_focal", dt.date(2020, 4, 23), dt.date(2025, 5, 31))
    ubuntu("ubuntu_noble", dt.date(2024, 4, 25), dt.date(2029, 5, 31))
    client.force_login(viewer)
    text = client.get(
        reverse("lifecycle:deprecation_panel", args=[focal.label]), headers={"HX-Request": "true"}
    ).content.decode()
    assert "2026-03-08" in text and "2025-05-31 + 90 days of grace" in text
    assert "Ubuntu Noble" in text and "not scheduled yet" in text
    assert "<html" not in text


# --- the daily transitions ---------------------------------------------------------------


def test_an_image_is_deprecated_on_its_date_and_retired_after_the_retention(tmp_path, settings):
    settings.ARTEFACT_DIR = tmp_path
    image = os_image("debian_bookworm", eol=dt.date(2026, 7, 11))
    artefact = tmp_path / "debian_bookworm.qcow2"
    artefact.write_bytes(b"qcow")
    ImageVersion.objects.create(
        image=image, name="2026-02-01", artefact_path=str(artefact), state=VersionState.RELEASED
    )
    run()  # scheduled for 2026-10-09

    assert run(dt.date(2026, 10, 8)).deprecated == []
    assert fresh(image).state == ImageState.DEPRECATION_SCHEDULED

    assert run(dt.date(2026, 10, 9)).deprecated == ["debian_bookworm"]
    image = fresh(image)
    assert image.state == ImageState.DEPRECATED
    assert image.deprecated_at == at(dt.date(2026, 10, 9))
    assert run(dt.date(2026, 10, 10)).deprecated == []  # once only

    assert run(dt.date(2027, 4, 6)).retired == []  # 179 days later
    assert artefact.exists()
    assert run(dt.date(2027, 4, 7)).retired == ["debian_bookworm"]
    image = fresh(image)
    assert image.state == ImageState.RETIRED and image.retired_at == at(dt.date(2027, 4, 7))
    assert not artefact.exists()
    assert image.versions.get().state == VersionState.RETIRED
    actions = list(
        AuditEntry.objects.filter(image=image, action__startswith="deprecation.")
        .order_by("created_at", "id")
        .values_list("action", flat=True)
    )
    assert actions == ["deprecation.scheduled", "deprecation.deprecated", "deprecation.retired"]


def test_the_deprecation_panel_works_as_a_whole_page_without_javascript(client, viewer):
    image = os_image("debian_bookworm", eol=dt.date(2026, 7, 11))
    client.force_login(viewer)
    page = client.get(reverse("lifecycle:deprecation_panel", args=[image.label]))
    assert page.status_code == 200 and "<html" in page.content.decode()
    assert "Deprecation" in page.content.decode()


# --- the replacement field -----------------------------------------------------------------


def test_the_replacement_is_a_search_field_not_a_list_of_the_whole_catalogue(
    client, release_manager, django_assert_max_num_queries
) -> None:
    image = os_image("debian_bookworm", eol=dt.date(2026, 7, 11))
    client.force_login(release_manager)
    url = reverse("lifecycle:deprecation_panel", args=[image.label])

    def panel_queries() -> int:
        with CaptureQueriesContext(connection) as ctx:
            body = client.get(url, headers={"HX-Request": "true"}).content.decode()
        assert 'name="replacement"' in body and "<select" not in body
        return len(ctx.captured_queries)

    for n in range(3):
        os_image(f"other_{n}")
    small = panel_queries()
    for n in range(3, 80):
        os_image(f"other_{n}")
    with django_assert_max_num_queries(small):
        body = client.get(url, headers={"HX-Request": "true"}).content.decode()
    assert "other_79" not in body


def test_the_replacement_suggestions_are_a_few_offered_images_matching_what_was_typed(
    client, release_manager
) -> None:
    image = os_image("debian_bookworm", eol=dt.date(2026, 7, 11))
    for n in range(30):
        os_image(f"debian_v{n:02d}")
    gone = os_image("debian_retired_one")
    Image.objects.filter(pk=gone.pk).update(state=ImageState.RETIRED)
    os_image("ubuntu_noble")
    client.force_login(release_manager)
    url = reverse("lifecycle:replacement_options", args=[image.label])

    body = client.get(url, {"replacement": "debian"}, headers={"HX-Request": "true"})
    labels = [part.split('"', 1)[0] for part in body.content.decode().split('value="')[1:]]
    assert len(labels) == triggers.REPLACEMENT_SUGGESTIONS
    assert all(label.startswith("debian_v") for label in labels)  # not itself, not retired
    body = client.get(url, {"replacement": "Noble"}).content.decode()
    assert 'value="ubuntu_noble"' in body and "debian" not in body


def test_a_replacement_label_that_is_not_an_offered_image_is_refused(
    client, release_manager
) -> None:
    base = os_image("debian_bookworm", eol=dt.date(2026, 7, 11))
    trixie = os_image("debian_trixie")
    retired = os_image("debian_buster")
    Image.objects.filter(pk=retired.pk).update(state=ImageState.RETIRED)
    client.force_login(release_manager)
    url = reverse("lifecycle:deprecation_set", args=[base.label])
    form = {"date": "2027-12-31", "reason": "moving on"}

    for wrong in ("no_such_image", retired.label):
        response = client.post(url, {**form, "replacement": wrong})
        assert response.status_code == 400
        assert "No offered image has this label." in response.content.decode()
        assert fresh(base).replacement != retired
    assert client.post(url, {**form, "replacement": trixie.label}).status_code == 302
    assert fresh(base).replacement == trixie
