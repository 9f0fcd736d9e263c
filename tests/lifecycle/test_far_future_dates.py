"""Far-future (and far-past) dates: an EOL of 9999-12-31 neither breaks the image page nor
stops the daily jobs, a manager cannot set one, and one image's error stays that image's."""

from __future__ import annotations

import datetime as dt

import pytest
import time_machine
from django.core.exceptions import ValidationError
from django.urls import reverse

from catalog.choices import ImageState, VersionState
from catalog.models import Image, ImageVersion
from lifecycle import deprecation
from tests.catalog.factories import instantapp, os_image
from tests.lifecycle.daily_run import NOON, TODAY, at, fresh, run

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("deprecation_policy")]

FAR = dt.date(9999, 12, 31)


def deprecated_since(label: str, day: dt.date) -> Image:
    image = os_image(label, eol=dt.date(2025, 1, 1))
    Image.objects.filter(pk=image.pk).update(
        state=ImageState.DEPRECATED, deprecation_date=day, deprecated_at=at(day)
    )
    return fresh(image)


# --- a far-future EOL already stored ---------------------------------------------------------


@time_machine.travel(NOON, tick=False)
def test_the_image_page_and_its_deprecation_panel_render_with_a_far_future_eol_stored(
    client, viewer
) -> None:
    # Stored as an import accepted it before dates were bounded (create() does not validate).
    image = os_image("debian_forever", eol=FAR)
    client.force_login(viewer)

    page = client.get(image.get_absolute_url())
    panel = client.get(
        reverse("lifecycle:deprecation_panel", args=[image.label]), headers={"HX-Request": "true"}
    )
    whole = client.get(reverse("lifecycle:deprecation_panel", args=[image.label]))

    assert page.status_code == panel.status_code == whole.status_code == 200
    text = panel.content.decode()
    assert "9999-12-31 + 90 days of grace" in text
    assert "outside the accepted range (1990-01-01 to 2100-12-31)" in text
    assert "no automatic deprecation" in text


def test_the_daily_run_schedules_deprecates_and_retires_the_others_past_a_far_future_eol(
    tmp_path, settings
) -> None:
    settings.ARTEFACT_DIR = tmp_path
    # Labels sort so that the far-future image comes first, as "debian_forever" did.
    forever = os_image("aaa_forever", eol=FAR)
    bookworm = os_image("debian_bookworm", eol=dt.date(2026, 7, 11))
    due = os_image("ubuntu_focal", eol=dt.date(2025, 5, 31))
    Image.objects.filter(pk=due.pk).update(
        state=ImageState.DEPRECATION_SCHEDULED, deprecation_date=TODAY
    )
    old = deprecated_since("centos_7", TODAY - dt.timedelta(days=200))

    summary = run()

    assert summary.scheduled == ["debian_bookworm"]
    assert summary.deprecated == ["ubuntu_focal"]
    assert summary.retired == ["centos_7"]
    assert summary.failed == []
    forever = fresh(forever)
    assert forever.state == ImageState.ACTIVE and forever.deprecation_date is None
    assert forever.lifecycle_error == ""  # not an error: the policy says why it set no date
    assert fresh(bookworm).deprecation_date == dt.date(2026, 10, 9)
    assert fresh(old).state == ImageState.RETIRED


def test_an_instantapp_grace_period_on_a_far_future_base_eol_sets_no_date() -> None:
    base = os_image("debian_forever", eol=FAR)
    app = instantapp("gitlab", base)
    app.grace_period_days = 30
    app.save()

    plan = deprecation.plan_for(app, TODAY)

    assert plan.date is None and "outside the accepted range" in plan.explanation


# --- a manager cannot set one ----------------------------------------------------------------


@time_machine.travel(NOON, tick=False)
def test_a_release_manager_cannot_set_a_deprecation_date_out_of_range(
    client, release_manager
) -> None:
    image = os_image("debian_bookworm", eol=dt.date(2026, 7, 11))
    client.force_login(release_manager)
    url = reverse("lifecycle:deprecation_set", args=[image.label])

    response = client.post(url, {"date": "9999-12-31", "reason": "never"})

    assert response.status_code == 400
    text = response.content.decode()
    assert "9999-12-31 is out of range: choose a date between 1990-01-01 and 2100-12-31" in text
    assert 'min="1990-01-01"' in text and 'max="2100-12-31"' in text
    assert fresh(image).deprecation_date is None
    with pytest.raises(ValidationError, match="out of range"):
        deprecation.set_deprecation_date(image, FAR, reason="never", user=release_manager)


# --- one image's error stays that image's ----------------------------------------------------


def test_an_error_on_one_image_is_recorded_on_it_and_shown_and_the_others_go_on(
    tmp_path, settings, client, viewer
) -> None:
    settings.ARTEFACT_DIR = tmp_path
    day = TODAY - dt.timedelta(days=200)
    stuck = deprecated_since("centos_7", day)
    other = deprecated_since("debian_buster", day)
    # An artefact path that is a directory cannot be unlinked: retiring centos_7 fails.
    folder = tmp_path / "centos_7.qcow2"
    folder.mkdir()
    (folder / "leftover").write_bytes(b"x")
    ImageVersion.objects.create(
        image=stuck, name="2025-01-01", artefact_path=str(folder), state=VersionState.RELEASED
    )
    bookworm = os_image("debian_bookworm", eol=dt.date(2026, 7, 11))

    summary = run()

    assert summary.failed == ["centos_7"]
    assert summary.retired == ["debian_buster"] and summary.scheduled == ["debian_bookworm"]
    assert "failed on centos_7" in str(summary)
    stuck = fresh(stuck)
    assert stuck.state == ImageState.DEPRECATED  # the failed retirement was rolled back
    assert stuck.lifecycle_error.startswith("Daily deprecation run: retirement failed: ")
    assert "IsADirectoryError" in stuck.lifecycle_error
    assert stuck.lifecycle_error_at == at(TODAY)
    assert fresh(other).state == ImageState.RETIRED
    assert fresh(bookworm).state == ImageState.DEPRECATION_SCHEDULED

    client.force_login(viewer)
    panel = client.get(
        reverse("lifecycle:deprecation_panel", args=[stuck.label]), headers={"HX-Request": "true"}
    ).content.decode()
    assert 'data-testid="lifecycle-error"' in panel and "IsADirectoryError" in panel
    assert (
        'data-testid="lifecycle-error"'
        not in client.get(
            reverse("lifecycle:deprecation_panel", args=[other.label]),
            headers={"HX-Request": "true"},
        ).content.decode()
    )

    # Once the cause is fixed, the next run retires it and the error goes away.
    (folder / "leftover").unlink()
    folder.rmdir()
    assert run(TODAY + dt.timedelta(days=1)).retired == ["centos_7"]
    stuck = fresh(stuck)
    assert stuck.state == ImageState.RETIRED
    assert stuck.lifecycle_error == "" and stuck.lifecycle_error_at is None
