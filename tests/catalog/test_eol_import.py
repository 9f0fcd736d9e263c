"""The upstream EOL import against a real local HTTP server standing in for endoflife.date."""

from __future__ import annotations

import datetime as dt
import logging
import socket
from typing import Any

import pytest
import time_machine
from django.core.management import ManagementUtility, call_command
from django.core.management.base import CommandError
from django_q.models import Schedule

from catalog.choices import DateSource, ImageKind
from catalog.eol import fetch_product, import_all
from catalog.models import AuditEntry, Category, Image, UpstreamLifecycle
from catalog.schedules import register_schedules
from catalog.tasks import import_eol_task
from tests.catalog.eol_server import EolServer, Reply, fixture_json

pytestmark = pytest.mark.django_db

V1_UBUNTU = "/api/v1/products/ubuntu"
V0_UBUNTU = "/api/ubuntu.json"
V1_DEBIAN = "/api/v1/products/debian"
V0_DEBIAN = "/api/debian.json"
TODAY = dt.datetime(2026, 8, 22, 9, 0, tzinfo=dt.UTC)
EARLIER = dt.datetime(2026, 8, 1, 5, 15, tzinfo=dt.UTC)
D = dt.date.fromisoformat

# What a previous import of the reference data stored for Ubuntu 24.04, before endoflife.date
# commit 31ed563ea (2025-12-26) moved its dates from 2029-04-25 / 2036-04-25.
NOBLE_BEFORE = {
    "release_date": D("2024-04-25"),
    "active_support_end": D("2029-04-25"),
    "security_support_end": D("2029-04-25"),
    "extended_support_end": D("2036-04-25"),
}


def make_lifecycle(
    label: str,
    product: str = "ubuntu",
    cycle: str = "24.04",
    *,
    kind: str = ImageKind.OS,
    source: str = DateSource.ENDOFLIFE_DATE,
    **fields: Any,
) -> UpstreamLifecycle:
    """An image with its lifecycle row; dates given in `fields` get `source` as their source."""
    category, _ = Category.objects.get_or_create(name="Distributions")
    base = None
    if kind == ImageKind.INSTANTAPP:
        base = make_lifecycle(f"{label}_base", product, cycle).image
    image = Image.objects.create(
        kind=kind,
        label=label,
        name=label.replace("_", " ").title(),
        category=category,
        architectures=["x86_64"],
        base_image=base,
    )
    for name in UpstreamLifecycle.DATE_FIELDS:
        if name in fields and f"{name}_source" not in fields:
            fields[f"{name}_source"] = source
    return UpstreamLifecycle.objects.create(
        image=image, eol_product=product, eol_cycle=cycle, **fields
    )


def stored(row: UpstreamLifecycle) -> dict[str, Any]:
    """Every date, its source and the last check of a row, as the database has them now."""
    row.refresh_from_db()
    names = [*UpstreamLifecycle.DATE_FIELDS, "last_checked_at"]
    names += [f"{name}_source" for name in UpstreamLifecycle.DATE_FIELDS]
    return {name: getattr(row, name) for name in names}


def refused_url() -> str:
    """A base URL on a local port nobody listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def run_import(server: EolServer | str, **kwargs: Any) -> list[Any]:
    """import_all against the test server (or a URL), never waiting on a Retry-After."""
    base_url = server if isinstance(server, str) else server.base_url
    kwargs.setdefault("timeout", 5)
    kwargs.setdefault("max_retry_wait", 0)
    return import_all(base_url=base_url, **kwargs)


@pytest.fixture
def noble() -> UpstreamLifecycle:
    """Ubuntu 24.04 as a previous import stored it, checked on 1 August."""
    return make_lifecycle(
        "ubuntu_noble", last_checked_at=EARLIER, last_import_ok=True, **NOBLE_BEFORE
    )


# --- Reading the API ------------------------------------------------------------------------


def test_it_reads_the_v1_api_into_dates_and_flags(eol_server: EolServer) -> None:
    eol_server.reply_fixture(V1_UBUNTU, "ubuntu.v1.json")

    cycles = fetch_product(eol_server.base_url, "ubuntu", 5)

    assert sorted(cycles) == ["20.04", "22.04", "24.04"]
    focal = cycles["20.04"]
    assert focal.release_date == D("2020-04-23")
    assert focal.active_support_end == D("2022-10-01")
    assert focal.security_support_end == D("2025-05-31")
    assert focal.extended_support_end == D("2030-04-02")
    assert (focal.is_eoas, focal.is_eol, focal.is_eoes) == (True, True, False)
    assert focal.api == "v1"
    assert focal.problems == ()
    assert eol_server.requests == [V1_UBUNTU]


def test_it_reads_v0_booleans_with_support_and_extended_support_inverted(
    eol_server: EolServer,
) -> None:
    # Debian 13 as v0 served it between 2025-08-10 and 2025-08-11.
    eol_server.reply_fixture(V0_DEBIAN, "debian-2025-08-10.v0.json")

    cycles = fetch_product(eol_server.base_url, "debian", 5)

    trixie = cycles["13"]
    assert trixie.api == "v0"
    assert trixie.security_support_end is None
    assert trixie.is_eol is False
    # `extendedSupport: true` means still supported: the end is not reached.
    assert trixie.extended_support_end is None
    assert trixie.is_eoes is False
    assert trixie.problems == ()
    assert cycles["12"].security_support_end == D("2026-06-10")


def test_it_reads_a_v0_extended_support_of_false_as_no_extended_support(
    eol_server: EolServer,
) -> None:
    eol_server.reply_fixture(V0_UBUNTU, "ubuntu.v0.json")

    questing = fetch_product(eol_server.base_url, "ubuntu", 5)["25.10"]

    assert questing.extended_support_end is None
    assert questing.is_eoes is True
    assert questing.active_support_end == D("2026-07-01")
    assert questing.is_eoas is None


def test_it_reads_a_v0_support_of_true_as_still_supported(eol_server: EolServer) -> None:
    data = fixture_json("ubuntu.v0.json")
    data[1]["support"] = True
    eol_server.reply_json(V0_UBUNTU, data)

    noble = fetch_product(eol_server.base_url, "ubuntu", 5)["24.04"]

    assert noble.active_support_end is None
    assert noble.is_eoas is False


# --- Applying the dates ---------------------------------------------------------------------


@time_machine.travel(TODAY, tick=False)
def test_it_imports_the_new_dates_and_marks_them_from_endoflife_date(
    eol_server: EolServer,
) -> None:
    eol_server.reply_fixture(V1_UBUNTU, "ubuntu.v1.json")
    row = make_lifecycle("ubuntu_noble", source=DateSource.DEMO, **NOBLE_BEFORE)

    [result] = run_import(eol_server)

    assert result.ok, result.message
    after = stored(row)
    assert after["security_support_end"] == D("2029-05-31")
    assert after["active_support_end"] == D("2029-05-31")
    assert after["extended_support_end"] == D("2036-05-31")
    assert after["release_date"] == D("2024-04-25")
    assert {after[f"{name}_source"] for name in UpstreamLifecycle.DATE_FIELDS} == {
        DateSource.ENDOFLIFE_DATE
    }
    assert after["last_checked_at"] == TODAY
    assert row.last_import_ok is True
    assert "EOL 2029-04-25 -> 2029-05-31" in row.last_import_message
    [change] = result.changes
    assert change.image == "ubuntu_noble"
    assert change.changes["security_support_end"] == (D("2029-04-25"), D("2029-05-31"))


def test_it_fetches_each_product_once_for_all_its_images(eol_server: EolServer) -> None:
    eol_server.reply_fixture(V1_UBUNTU, "ubuntu.v1.json")
    rows = [make_lifecycle(f"ubuntu_{c[:2]}", cycle=c) for c in ("20.04", "22.04", "24.04")]

    [result] = run_import(eol_server)

    assert result.ok, result.message
    assert eol_server.hits(V1_UBUNTU) == 1
    assert [stored(row)["security_support_end"] for row in rows] == [
        D("2025-05-31"),
        D("2027-04-01"),
        D("2029-05-31"),
    ]
    assert result.message == "3 image(s) checked, 3 changed"


def test_it_keeps_a_managers_date(eol_server: EolServer) -> None:
    eol_server.reply_fixture(V1_UBUNTU, "ubuntu.v1.json")
    row = make_lifecycle("ubuntu_noble", **NOBLE_BEFORE)
    row.security_support_end = D("2029-12-31")
    row.security_support_end_source = DateSource.MANAGER
    row.save()

    [result] = run_import(eol_server)

    assert result.ok, result.message
    after = stored(row)
    assert after["security_support_end"] == D("2029-12-31")
    assert after["security_support_end_source"] == DateSource.MANAGER
    # The other dates still follow upstream.
    assert after["extended_support_end"] == D("2036-05-31")
    assert "kept manager's date 2029-12-31 (endoflife.date says 2029-05-31)" in (
        row.last_import_message
    )
    assert row.last_import_ok is True


def test_it_does_not_apply_an_eol_that_moves_backwards_but_applies_the_other_dates(
    eol_server: EolServer, noble: UpstreamLifecycle, caplog: pytest.LogCaptureFixture
) -> None:
    # As if commit 31ed563ea were reverted after our import of the later dates.
    data = fixture_json("ubuntu.v1.json")
    data["result"]["releases"][0]["eolFrom"] = "2029-04-25"
    data["result"]["releases"][0]["eoesFrom"] = "2036-05-31"
    eol_server.reply_json(V1_UBUNTU, data)
    noble.security_support_end = D("2029-05-31")
    noble.save()

    with caplog.at_level(logging.WARNING, logger="catalog.eol"):
        [result] = run_import(eol_server)

    warning = (
        "upstream moved EOL of ubuntu_noble backwards from 2029-05-31 to 2029-04-25; not applied"
    )
    after = stored(noble)
    assert after["security_support_end"] == D("2029-05-31")
    assert after["extended_support_end"] == D("2036-05-31")
    assert after["active_support_end"] == D("2029-05-31")
    assert warning in noble.last_import_message
    assert noble.last_import_ok is False  # it needs a manager
    assert result.ok  # the import itself worked
    assert any(warning in w for w in result.warnings)
    assert warning in caplog.text


def test_it_writes_one_audit_entry_per_changed_image_and_none_when_nothing_changed(
    eol_server: EolServer, noble: UpstreamLifecycle
) -> None:
    eol_server.reply_fixture(V1_UBUNTU, "ubuntu.v1.json")
    make_lifecycle(
        "ubuntu_jammy",
        cycle="22.04",
        release_date=D("2022-04-21"),
        active_support_end=D("2024-09-30"),
        security_support_end=D("2027-04-01"),
        extended_support_end=D("2032-04-09"),
    )

    run_import(eol_server)

    [entry] = AuditEntry.objects.filter(action="eol.import")
    assert entry.image == noble.image
    assert entry.actor is None
    assert entry.actor_name == "system"
    assert entry.before == {
        "active_support_end": "2029-04-25",
        "active_support_end_source": "endoflife.date",
        "security_support_end": "2029-04-25",
        "security_support_end_source": "endoflife.date",
        "extended_support_end": "2036-04-25",
        "extended_support_end_source": "endoflife.date",
    }
    assert entry.after["security_support_end"] == "2029-05-31"
    assert entry.after["extended_support_end"] == "2036-05-31"
    assert "release_date" not in entry.after

    run_import(eol_server)

    assert AuditEntry.objects.filter(action="eol.import").count() == 1
    noble.refresh_from_db()
    assert noble.last_import_message == "up to date"


def test_it_records_the_user_who_asked_for_the_import(
    eol_server: EolServer, noble: UpstreamLifecycle, manager: Any
) -> None:
    eol_server.reply_fixture(V1_UBUNTU, "ubuntu.v1.json")

    run_import(eol_server, actor=manager)

    assert AuditEntry.objects.get(action="eol.import").actor == manager


def test_it_skips_rolling_releases_instantapps_and_images_without_a_product(
    eol_server: EolServer,
) -> None:
    eol_server.reply_fixture(V1_UBUNTU, "ubuntu.v1.json")
    arch = make_lifecycle("archlinux", product="", cycle="", rolling=True)
    rolling = make_lifecycle("ubuntu_rolling", cycle="rolling", rolling=True)
    app = make_lifecycle("wordpress", cycle="24.04", kind=ImageKind.INSTANTAPP)

    [result] = run_import(eol_server)

    assert [change.image for change in result.changes] == ["wordpress_base"]
    for row in (arch, rolling, app):
        row.refresh_from_db()
        assert row.last_checked_at is None
        assert row.last_import_ok is None


def test_it_falls_back_to_the_v0_api_only_when_v1_answers_404(
    eol_server: EolServer, noble: UpstreamLifecycle
) -> None:
    eol_server.reply_fixture(V0_UBUNTU, "ubuntu.v0.json")  # v1 is not set: it answers 404

    [result] = run_import(eol_server)

    assert result.ok, result.message
    assert "deprecated v0 API" in result.message
    assert eol_server.requests == [V1_UBUNTU, V0_UBUNTU]
    assert stored(noble)["security_support_end"] == D("2029-05-31")


def test_it_keeps_stored_dates_when_v0_gives_booleans(eol_server: EolServer) -> None:
    eol_server.reply_fixture(V0_DEBIAN, "debian-2025-08-10.v0.json")
    trixie = make_lifecycle(
        "debian_trixie",
        product="debian",
        cycle="13",
        source=DateSource.DEMO,
        security_support_end=D("2028-06-30"),
        extended_support_end=D("2030-06-30"),
    )

    [result] = run_import(eol_server)

    assert result.ok, result.message
    after = stored(trixie)
    assert after["security_support_end"] == D("2028-06-30")
    assert after["security_support_end_source"] == DateSource.DEMO
    assert after["extended_support_end"] == D("2030-06-30")
    assert after["release_date"] == D("2025-08-09")
    assert trixie.last_import_ok is True


def test_it_keeps_the_stored_eol_when_v1_says_eol_is_reached_without_a_date(
    eol_server: EolServer,
) -> None:
    data = fixture_json("ubuntu.v1.json")
    focal_data = data["result"]["releases"][2]
    focal_data["eolFrom"] = None  # the YAML says `eol: true`
    eol_server.reply_json(V1_UBUNTU, data)
    focal = make_lifecycle("ubuntu_focal", cycle="20.04", security_support_end=D("2025-05-31"))

    [result] = run_import(eol_server)

    assert result.ok, result.message
    assert stored(focal)["security_support_end"] == D("2025-05-31")
    assert "EOL is reached but gives no date; kept 2025-05-31" in focal.last_import_message


def test_it_follows_redirects(eol_server: EolServer) -> None:
    eol_server.reply(
        "/api/v1/products/rocky",
        Reply(status=301, headers={"Location": "/api/v1/products/rocky-linux"}),
    )
    eol_server.reply_fixture("/api/v1/products/rocky-linux", "rocky-linux.v1.json")
    row = make_lifecycle("rocky_9", product="rocky", cycle="9")

    [result] = run_import(eol_server)

    assert result.ok, result.message
    assert stored(row)["security_support_end"] == D("2032-05-31")
    assert eol_server.hits("/api/v1/products/rocky-linux") == 1


def test_it_retries_once_after_a_429_with_a_short_retry_after(
    eol_server: EolServer, noble: UpstreamLifecycle
) -> None:
    eol_server.reply(
        V1_UBUNTU,
        Reply(status=429, body="slow down", headers={"Retry-After": "0"}),
        Reply(body=fixture_json("ubuntu.v1.json")),
    )

    [result] = run_import(eol_server)

    assert result.ok, result.message
    assert eol_server.hits(V1_UBUNTU) == 2
    assert stored(noble)["security_support_end"] == D("2029-05-31")


# --- Bad input: a clear message on every row, nothing stored lost ---------------------------


def assert_failed_keeping_everything(
    result: Any, rows: list[UpstreamLifecycle], before: list[dict[str, Any]], expected: str
) -> None:
    """The product failed with `expected` in its message and on every row, which kept all
    its dates, sources and last successful check; nothing was audited."""
    assert not result.ok
    assert expected in result.message
    for row, was in zip(rows, before, strict=True):
        assert stored(row) == was
        assert row.last_import_ok is False
        assert expected in row.last_import_message
    assert not AuditEntry.objects.exists()


@pytest.fixture
def ubuntu_rows() -> list[UpstreamLifecycle]:
    """Two Ubuntu images with dates from a previous import."""
    jammy = make_lifecycle(
        "ubuntu_jammy",
        cycle="22.04",
        last_checked_at=EARLIER,
        last_import_ok=True,
        security_support_end=D("2027-04-01"),
    )
    noble = make_lifecycle(
        "ubuntu_noble", last_checked_at=EARLIER, last_import_ok=True, **NOBLE_BEFORE
    )
    return [jammy, noble]


def check_bad_input(
    base_url: str,
    rows: list[UpstreamLifecycle],
    expected: str,
    caplog: pytest.LogCaptureFixture,
    **kwargs: Any,
) -> Any:
    """Import from `base_url`; check the failure is reported, logged and lost nothing."""
    before = [stored(row) for row in rows]
    with caplog.at_level(logging.ERROR, logger="catalog.eol"):
        [result] = run_import(base_url, **kwargs)
    assert_failed_keeping_everything(result, rows, before, expected)
    assert expected in caplog.text
    return result


def test_it_reports_an_unreachable_server(
    ubuntu_rows: list[UpstreamLifecycle], caplog: pytest.LogCaptureFixture
) -> None:
    check_bad_input(refused_url(), ubuntu_rows, "connection refused", caplog)


def test_it_reports_a_timeout(
    eol_server: EolServer, ubuntu_rows: list[UpstreamLifecycle], caplog: pytest.LogCaptureFixture
) -> None:
    eol_server.reply(V1_UBUNTU, Reply(body=fixture_json("ubuntu.v1.json"), delay=3))

    check_bad_input(eol_server.base_url, ubuntu_rows, "within 0.3 s (timeout)", caplog, timeout=0.3)


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (403, "endoflife.date refused the request: HTTP 403"),
        (400, "endoflife.date refused the request: HTTP 400"),
        (500, "endoflife.date server error: HTTP 500"),
        (503, "endoflife.date server error: HTTP 503"),
    ],
)
def test_it_reports_an_http_error_without_trying_v0(
    eol_server: EolServer,
    ubuntu_rows: list[UpstreamLifecycle],
    caplog: pytest.LogCaptureFixture,
    status: int,
    expected: str,
) -> None:
    eol_server.reply(V1_UBUNTU, Reply(status=status, body="<html>oops</html>"))

    check_bad_input(eol_server.base_url, ubuntu_rows, expected, caplog)
    assert eol_server.requests == [V1_UBUNTU]


def test_it_reports_a_429_with_its_retry_after_and_does_not_wait_for_long(
    eol_server: EolServer, ubuntu_rows: list[UpstreamLifecycle], caplog: pytest.LogCaptureFixture
) -> None:
    eol_server.reply(V1_UBUNTU, Reply(status=429, headers={"Retry-After": "3600"}))

    check_bad_input(eol_server.base_url, ubuntu_rows, "HTTP 429", caplog, max_retry_wait=5)
    assert "Retry-After: 3600" in ubuntu_rows[0].last_import_message
    assert eol_server.hits(V1_UBUNTU) == 1


def test_it_reports_a_429_that_persists_after_one_retry(
    eol_server: EolServer, ubuntu_rows: list[UpstreamLifecycle], caplog: pytest.LogCaptureFixture
) -> None:
    eol_server.reply(V1_UBUNTU, Reply(status=429, headers={"Retry-After": "0"}))

    check_bad_input(eol_server.base_url, ubuntu_rows, "still rate-limited", caplog)
    assert "Retry-After: 0" in ubuntu_rows[0].last_import_message
    assert eol_server.hits(V1_UBUNTU) == 2


def test_it_reports_a_429_without_retry_after(
    eol_server: EolServer, ubuntu_rows: list[UpstreamLifecycle], caplog: pytest.LogCaptureFixture
) -> None:
    eol_server.reply(V1_UBUNTU, Reply(status=429))

    check_bad_input(eol_server.base_url, ubuntu_rows, "rate-limited by endoflife.date", caplog)
    assert eol_server.hits(V1_UBUNTU) == 1


def test_it_reports_invalid_json(
    eol_server: EolServer, ubuntu_rows: list[UpstreamLifecycle], caplog: pytest.LogCaptureFixture
) -> None:
    eol_server.reply(
        V1_UBUNTU,
        Reply(body=b'{"result": {"releases": [', headers={"Content-Type": "application/json"}),
    )

    check_bad_input(eol_server.base_url, ubuntu_rows, "invalid JSON", caplog)


def test_it_reports_a_list_where_v1_has_an_object(
    eol_server: EolServer, ubuntu_rows: list[UpstreamLifecycle], caplog: pytest.LogCaptureFixture
) -> None:
    eol_server.reply_json(V1_UBUNTU, fixture_json("ubuntu.v0.json"))

    check_bad_input(
        eol_server.base_url, ubuntu_rows, "expected an object with `result`, got a list", caplog
    )


def test_it_reports_a_v1_answer_without_result(
    eol_server: EolServer, ubuntu_rows: list[UpstreamLifecycle], caplog: pytest.LogCaptureFixture
) -> None:
    data = fixture_json("ubuntu.v1.json")
    data["releases"] = data.pop("result")["releases"]
    eol_server.reply_json(V1_UBUNTU, data)

    check_bad_input(eol_server.base_url, ubuntu_rows, "no `result`", caplog)


def test_it_reports_an_unknown_product(
    eol_server: EolServer, caplog: pytest.LogCaptureFixture
) -> None:
    rows = [make_lifecycle("ubuntu_noble", product="ubunt", security_support_end=D("2029-05-31"))]

    check_bad_input(eol_server.base_url, rows, "unknown product 'ubunt'", caplog)
    assert eol_server.requests == ["/api/v1/products/ubunt", "/api/ubunt.json"]


def test_it_reports_an_unknown_release_and_still_imports_the_known_ones(
    eol_server: EolServer, caplog: pytest.LogCaptureFixture
) -> None:
    eol_server.reply_fixture(V1_UBUNTU, "ubuntu.v1.json")
    unknown = make_lifecycle("ubuntu_future", cycle="99.04", security_support_end=D("2040-01-01"))
    noble = make_lifecycle("ubuntu_noble", **NOBLE_BEFORE)
    before = stored(unknown)

    with caplog.at_level(logging.ERROR, logger="catalog.eol"):
        [result] = run_import(eol_server)

    assert not result.ok
    assert "cycle 99.04 not found in ubuntu" in result.message
    assert "cycle 99.04 not found in ubuntu" in caplog.text
    assert stored(unknown) == before
    assert unknown.last_import_ok is False
    assert unknown.last_import_message == "cycle 99.04 not found in ubuntu"
    assert stored(noble)["security_support_end"] == D("2029-05-31")


def test_it_reports_a_boolean_where_a_date_is_expected(
    eol_server: EolServer, ubuntu_rows: list[UpstreamLifecycle], caplog: pytest.LogCaptureFixture
) -> None:
    data = fixture_json("ubuntu.v1.json")
    data["result"]["releases"][0]["eolFrom"] = True
    data["result"]["releases"][1]["releaseDate"] = False
    eol_server.reply_json(V1_UBUNTU, data)
    jammy, noble = ubuntu_rows
    before = [stored(jammy), stored(noble)]

    with caplog.at_level(logging.ERROR, logger="catalog.eol"):
        [result] = run_import(eol_server)

    assert not result.ok
    expected = "eolFrom of 24.04 is a boolean (true) where a date is expected"
    assert expected in result.message
    assert expected in caplog.text
    assert stored(noble) == before[1]
    assert expected in noble.last_import_message
    assert noble.last_import_ok is False
    assert stored(jammy) == before[0]
    assert "releaseDate of 22.04 is a boolean (false)" in jammy.last_import_message
    assert not AuditEntry.objects.exists()


def test_it_reports_a_v0_boolean_where_a_date_is_expected(
    eol_server: EolServer, ubuntu_rows: list[UpstreamLifecycle], caplog: pytest.LogCaptureFixture
) -> None:
    data = fixture_json("ubuntu.v0.json")
    for cycle in data:
        cycle["releaseDate"] = True
    eol_server.reply_json(V0_UBUNTU, data)

    check_bad_input(eol_server.base_url, ubuntu_rows, "is a boolean (true) where a date", caplog)


def test_it_reports_a_date_that_is_not_a_date(
    eol_server: EolServer, ubuntu_rows: list[UpstreamLifecycle], caplog: pytest.LogCaptureFixture
) -> None:
    data = fixture_json("ubuntu.v1.json")
    data["result"]["releases"][0]["eolFrom"] = "2029-02-30"
    data["result"]["releases"][1]["eoesFrom"] = "April 2032"
    eol_server.reply_json(V1_UBUNTU, data)

    before = [stored(row) for row in ubuntu_rows]
    [result] = run_import(eol_server)

    assert_failed_keeping_everything(result, ubuntu_rows, before, "is not a date")
    assert "eolFrom of 24.04 is not a date: '2029-02-30'" in ubuntu_rows[1].last_import_message
    assert "eoesFrom of 22.04 is not a date: 'April 2032'" in ubuntu_rows[0].last_import_message


@pytest.mark.parametrize(
    ("key", "value"), [("eolFrom", "9999-12-31"), ("releaseDate", "1900-01-01")]
)
@time_machine.travel(TODAY, tick=False)
def test_it_refuses_a_date_out_of_range_for_its_cycle_and_keeps_the_last_good_date(
    eol_server: EolServer,
    ubuntu_rows: list[UpstreamLifecycle],
    caplog: pytest.LogCaptureFixture,
    key: str,
    value: str,
) -> None:
    data = fixture_json("ubuntu.v1.json")
    data["result"]["releases"][0][key] = value  # 24.04
    eol_server.reply_json(V1_UBUNTU, data)
    jammy, noble = ubuntu_rows
    before = stored(noble)

    with caplog.at_level(logging.ERROR, logger="catalog.eol"):
        [result] = run_import(eol_server)

    expected = f"{key} of 24.04 is {value}, outside the accepted range 1990-01-01 to 2100-12-31"
    assert not result.ok
    assert expected in result.message and expected in caplog.text
    assert stored(noble) == before
    assert noble.last_import_ok is False and expected in noble.last_import_message
    assert stored(jammy)["last_checked_at"] == TODAY  # the product's other cycle is imported


def test_it_reports_an_empty_releases_list(
    eol_server: EolServer, ubuntu_rows: list[UpstreamLifecycle], caplog: pytest.LogCaptureFixture
) -> None:
    data = fixture_json("ubuntu.v1.json")
    data["result"]["releases"] = []
    eol_server.reply_json(V1_UBUNTU, data)

    check_bad_input(eol_server.base_url, ubuntu_rows, "lists no releases for ubuntu", caplog)


def test_one_products_failure_does_not_stop_the_others(
    eol_server: EolServer, noble: UpstreamLifecycle
) -> None:
    eol_server.reply(V1_DEBIAN, Reply(status=502, body="<html>Bad gateway</html>"))
    eol_server.reply_fixture(V1_UBUNTU, "ubuntu.v1.json")
    bookworm = make_lifecycle("debian_bookworm", product="debian", cycle="12")

    results = {result.product: result for result in run_import(eol_server)}

    assert not results["debian"].ok
    assert "HTTP 502" in results["debian"].message
    bookworm.refresh_from_db()
    assert bookworm.last_import_ok is False
    assert results["ubuntu"].ok
    assert stored(noble)["security_support_end"] == D("2029-05-31")


# --- The command, the task and the schedule -------------------------------------------------


def test_the_command_prints_one_line_per_product_and_exits_non_zero_when_one_failed(
    eol_server: EolServer, noble: UpstreamLifecycle, capsys: pytest.CaptureFixture[str]
) -> None:
    eol_server.reply_fixture(V1_UBUNTU, "ubuntu.v1.json")
    make_lifecycle("debian_bookworm", product="debian", cycle="12")
    eol_server.reply(V1_DEBIAN, Reply(status=500))

    utility = ManagementUtility(["manage.py", "import_eol", "--base-url", eol_server.base_url])
    with pytest.raises(SystemExit) as exit_info:
        utility.execute()

    assert exit_info.value.code == 1
    out, err = capsys.readouterr()
    assert "ERROR debian: endoflife.date server error: HTTP 500" in out
    assert "OK ubuntu: 1 image(s) checked, 1 changed" in out
    assert "1 of 2 product(s) failed: debian" in err


def test_the_command_succeeds_when_every_product_is_imported(
    eol_server: EolServer, noble: UpstreamLifecycle, capsys: pytest.CaptureFixture[str]
) -> None:
    eol_server.reply_fixture(V1_UBUNTU, "ubuntu.v1.json")

    call_command("import_eol", "--base-url", eol_server.base_url)

    assert "OK ubuntu" in capsys.readouterr().out


def test_the_command_raises_a_command_error_when_the_server_is_unreachable(
    noble: UpstreamLifecycle,
) -> None:
    with pytest.raises(CommandError) as error:
        call_command("import_eol", "--base-url", refused_url())

    assert error.value.returncode == 1


def test_the_task_imports_and_returns_a_short_summary(
    eol_server: EolServer, noble: UpstreamLifecycle, settings: Any
) -> None:
    settings.EOL_API_BASE_URL = eol_server.base_url
    eol_server.reply_fixture(V1_UBUNTU, "ubuntu.v1.json")
    make_lifecycle("debian_bookworm", product="debian", cycle="12")

    summary = import_eol_task()

    assert summary == "EOL import: 1/2 product(s) OK; failed: debian"
    assert stored(noble)["security_support_end"] == D("2029-05-31")


def test_the_daily_schedule_is_registered_once_after_two_calls() -> None:
    first = register_schedules()
    second = register_schedules()

    schedule = Schedule.objects.get(name="catalog.import_eol")
    assert schedule.func == "catalog.tasks.import_eol_task"
    assert schedule.schedule_type == Schedule.DAILY
    assert schedule.repeats == -1
    assert {r.action for r in first} == {"created"}
    assert {r.action for r in second} == {"kept"}
    assert Schedule.objects.filter(func="catalog.tasks.import_eol_task").count() == 1
    assert Schedule.objects.filter(name="builds.requeue_stale_builds").count() == 1


def test_registering_again_repairs_a_changed_schedule_and_removes_duplicates() -> None:
    register_schedules()
    Schedule.objects.filter(name="catalog.import_eol").update(schedule_type=Schedule.HOURLY)
    Schedule.objects.create(
        name="catalog.import_eol", func="catalog.tasks.import_eol_task", schedule_type="D"
    )
    next_run = Schedule.objects.order_by("id").first().next_run

    registrations = {r.name: r for r in register_schedules()}

    assert registrations["catalog.import_eol"].action == "updated"
    schedule = Schedule.objects.get(name="catalog.import_eol")
    assert schedule.schedule_type == Schedule.DAILY
    assert schedule.next_run == next_run  # a restart neither skips nor repeats a run


def test_the_register_schedules_command_says_what_it_created_then_kept(
    capsys: pytest.CaptureFixture[str],
) -> None:
    call_command("register_schedules")
    call_command("register_schedules")

    out = capsys.readouterr().out.splitlines()
    assert any(
        line.startswith("created catalog.import_eol: catalog.tasks.import_eol_task (Daily")
        for line in out
    )
    assert any(line.startswith("kept catalog.import_eol") for line in out)
    assert Schedule.objects.filter(name="catalog.import_eol").count() == 1
