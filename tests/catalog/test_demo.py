"""The demo catalogue: idempotent loading, manager edits kept, real upstream names matched."""

from __future__ import annotations

import datetime as dt
import re
from io import StringIO

import pytest
from django.core.management import call_command

from catalog import demo
from catalog.choices import DateSource, ImageKind
from catalog.demo import load_demo
from catalog.models import (
    Category,
    Image,
    RecipeStep,
    UpstreamLifecycle,
    UpstreamSource,
    Zone,
)
from catalog.recipes import validate_params

LOCAL_URL = "http://127.0.0.1:8081/debian-12/"

# (label, arch) -> (a real published file name the pattern must fully match, the serial its
# group must yield or None when the name carries none, real names it must NOT match: other
# flavours, other architectures, moving "latest" names). Names from upstream-images.md.
EXAMPLES: dict[tuple[str, str], tuple[str, str | None, list[str]]] = {
    ("ubuntu_focal", "x86_64"): (
        "ubuntu-20.04-server-cloudimg-amd64.img",
        None,
        ["ubuntu-20.04-server-cloudimg-arm64.img", "ubuntu-22.04-server-cloudimg-amd64.img"],
    ),
    ("ubuntu_focal", "arm64"): (
        "ubuntu-20.04-server-cloudimg-arm64.img",
        None,
        ["ubuntu-20.04-server-cloudimg-amd64.img", "ubuntu-20.04-server-cloudimg-armhf.img"],
    ),
    ("ubuntu_jammy", "x86_64"): (
        "ubuntu-22.04-server-cloudimg-amd64.img",
        None,
        ["ubuntu-22.04-server-cloudimg-arm64.img", "ubuntu-22.04-minimal-cloudimg-amd64.img"],
    ),
    ("ubuntu_jammy", "arm64"): (
        "ubuntu-22.04-server-cloudimg-arm64.img",
        None,
        ["ubuntu-22.04-server-cloudimg-amd64.img"],
    ),
    ("ubuntu_noble", "x86_64"): (
        "ubuntu-24.04-server-cloudimg-amd64.img",
        None,
        [
            "ubuntu-24.04-server-cloudimg-arm64.img",
            "noble-server-cloudimg-amd64.img",
            "ubuntu-24.04-server-cloudimg-amd64.manifest",
            "ubuntu-24.04-minimal-cloudimg-amd64.img",
        ],
    ),
    ("ubuntu_noble", "arm64"): (
        "ubuntu-24.04-server-cloudimg-arm64.img",
        None,
        ["ubuntu-24.04-server-cloudimg-amd64.img", "noble-server-cloudimg-arm64.img"],
    ),
    ("debian_bullseye", "x86_64"): (
        "debian-11-genericcloud-amd64.qcow2",
        None,
        ["debian-11-genericcloud-arm64.qcow2", "debian-11-generic-amd64.qcow2"],
    ),
    ("debian_bullseye", "arm64"): (
        "debian-11-genericcloud-arm64.qcow2",
        None,
        ["debian-11-genericcloud-amd64.qcow2", "debian-11-nocloud-arm64.qcow2"],
    ),
    ("debian_bookworm", "x86_64"): (
        "debian-12-genericcloud-amd64.qcow2",
        None,
        [
            "debian-12-generic-amd64.qcow2",
            "debian-12-nocloud-amd64.qcow2",
            "debian-12-genericcloud-amd64.raw",
            "debian-12-genericcloud-arm64.qcow2",
        ],
    ),
    ("debian_bookworm", "arm64"): (
        "debian-12-genericcloud-arm64.qcow2",
        None,
        ["debian-12-genericcloud-amd64.qcow2", "debian-12-generic-arm64.qcow2"],
    ),
    ("debian_trixie", "x86_64"): (
        "debian-13-genericcloud-amd64.qcow2",
        None,
        [
            "debian-13-genericcloud-amd64-daily-20260717-2542.qcow2",
            "debian-13-genericcloud-arm64.qcow2",
            "debian-12-genericcloud-amd64.qcow2",
        ],
    ),
    ("debian_trixie", "arm64"): (
        "debian-13-genericcloud-arm64.qcow2",
        None,
        ["debian-13-genericcloud-amd64.qcow2"],
    ),
    ("rocky_8", "x86_64"): (
        "Rocky-8-GenericCloud-Base-8.10-20240528.0.x86_64.qcow2",
        "8.10-20240528.0",
        [
            "Rocky-8-GenericCloud-Base-8.10-20240528.0.aarch64.qcow2",
            "Rocky-8-GenericCloud-LVM-8.10-20240528.0.x86_64.qcow2",
            "Rocky-8-GenericCloud.latest.x86_64.qcow2",
        ],
    ),
    ("rocky_8", "arm64"): (
        "Rocky-8-GenericCloud-Base-8.10-20240528.0.aarch64.qcow2",
        "8.10-20240528.0",
        [
            "Rocky-8-GenericCloud-Base-8.10-20240528.0.x86_64.qcow2",
            "Rocky-8-GenericCloud-Base.latest.aarch64.qcow2",
        ],
    ),
    ("rocky_9", "x86_64"): (
        "Rocky-9-GenericCloud-Base-9.7-20251123.2.x86_64.qcow2",
        "9.7-20251123.2",
        [
            "Rocky-9-GenericCloud-LVM-9.7-20251123.2.x86_64.qcow2",
            "Rocky-9-GenericCloud-Base-9.7-20251123.2.aarch64.qcow2",
            "Rocky-9-GenericCloud.latest.x86_64.qcow2",
            "Rocky-9-GenericCloud-Base.latest.x86_64.qcow2",
            "Rocky-8-GenericCloud-Base-8.10-20240528.0.x86_64.qcow2",
        ],
    ),
    ("rocky_9", "arm64"): (
        "Rocky-9-GenericCloud-Base-9.8-20260525.0.aarch64.qcow2",
        "9.8-20260525.0",
        [
            "Rocky-9-GenericCloud-Base-9.8-20260525.0.x86_64.qcow2",
            "Rocky-9-GenericCloud-LVM-9.8-20260525.0.aarch64.qcow2",
        ],
    ),
    ("almalinux_8", "x86_64"): (
        "AlmaLinux-8-GenericCloud-8.10-20240530.x86_64.qcow2",
        "8.10-20240530",
        [
            "AlmaLinux-8-GenericCloud-latest.x86_64.qcow2",
            "AlmaLinux-8-GenericCloud-UEFI-latest.x86_64.qcow2",
            "AlmaLinux-8-GenericCloud-8.10-20240530.aarch64.qcow2",
        ],
    ),
    ("almalinux_8", "arm64"): (
        "AlmaLinux-8-GenericCloud-8.10-20240530.aarch64.qcow2",
        "8.10-20240530",
        ["AlmaLinux-8-GenericCloud-latest.aarch64.qcow2"],
    ),
    ("almalinux_9", "x86_64"): (
        "AlmaLinux-9-GenericCloud-9.8-20260526.x86_64.qcow2",
        "9.8-20260526",
        [
            "AlmaLinux-9-GenericCloud-latest.x86_64.qcow2",
            "AlmaLinux-9-GenericCloud-9.8-20260526.aarch64.qcow2",
            "AlmaLinux-9-GenericCloud-ext4-9.8-20260526.x86_64.qcow2",
        ],
    ),
    ("almalinux_9", "arm64"): (
        "AlmaLinux-9-GenericCloud-9.8-20260526.aarch64.qcow2",
        "9.8-20260526",
        [
            "AlmaLinux-9-GenericCloud-9.8-20260526.x86_64.qcow2",
            "AlmaLinux-9-GenericCloud-latest.aarch64.qcow2",
        ],
    ),
    ("centos_stream_9", "x86_64"): (
        "CentOS-Stream-GenericCloud-x86_64-9-20260615.0.x86_64.qcow2",
        "20260615.0",
        [
            # The BIOS-only flavour, verbatim from the published CHECKSUM.
            "CentOS-Stream-GenericCloud-9-20260615.0.x86_64.qcow2",
            "CentOS-Stream-GenericCloud-x86_64-9-latest.x86_64.qcow2",
            "CentOS-Stream-GenericCloud-9-latest.x86_64.qcow2",
        ],
    ),
    ("centos_stream_9", "arm64"): (
        "CentOS-Stream-GenericCloud-9-20260615.0.aarch64.qcow2",
        "20260615.0",
        [
            "CentOS-Stream-GenericCloud-9-latest.aarch64.qcow2",
            "CentOS-Stream-GenericCloud-9-20260615.0.x86_64.qcow2",
        ],
    ),
    ("centos_stream_10", "x86_64"): (
        "CentOS-Stream-GenericCloud-x86_64-10-20260720.0.x86_64.qcow2",
        "20260720.0",
        [
            "CentOS-Stream-GenericCloud-10-20260720.0.x86_64.qcow2",
            "CentOS-Stream-GenericCloud-x86_64-9-20260615.0.x86_64.qcow2",
        ],
    ),
    ("centos_stream_10", "arm64"): (
        "CentOS-Stream-GenericCloud-10-20260720.0.aarch64.qcow2",
        "20260720.0",
        [
            "CentOS-Stream-GenericCloud-10-latest.aarch64.qcow2",
            "CentOS-Stream-GenericCloud-9-20260615.0.aarch64.qcow2",
        ],
    ),
    ("fedora_44", "x86_64"): (
        "Fedora-Cloud-Base-Generic-44-1.7.x86_64.qcow2",
        "44-1.7",
        [
            "Fedora-Cloud-Base-UEFI-UKI-44-1.7.x86_64.qcow2",
            "Fedora-Cloud-Base-Generic-44-1.7.aarch64.qcow2",
            "Fedora-Cloud-Base-Generic-43-1.6.x86_64.qcow2",
            "Fedora-Cloud-Base-Generic.x86_64-40-1.14.qcow2",
        ],
    ),
    ("fedora_44", "arm64"): (
        "Fedora-Cloud-Base-Generic-44-1.7.aarch64.qcow2",
        "44-1.7",
        [
            "Fedora-Cloud-Base-Generic-44-1.7.x86_64.qcow2",
            "Fedora-Cloud-Base-UEFI-UKI-44-1.7.aarch64.qcow2",
        ],
    ),
    ("debian_bookworm_local", "x86_64"): (
        "debian-12-local-amd64.qcow2",
        None,
        ["debian-12-genericcloud-amd64.qcow2"],
    ),
}

PAST_EOL_ON_2026_11_26 = {"ubuntu_focal", "debian_bullseye", "debian_bookworm"}


def _demo_sources() -> list[tuple[str, str, dict]]:
    return [
        (image["label"], arch, source)
        for image in demo.OS_IMAGES
        for arch, source in image["sources"].items()
    ]


def _row_counts() -> dict[str, int]:
    return {
        model.__name__: model.objects.count()
        for model in (Zone, Category, Image, UpstreamSource, UpstreamLifecycle, RecipeStep)
    }


# --- The data itself ------------------------------------------------------------------------------


def test_every_demo_source_has_a_real_file_name_example() -> None:
    assert {(label, arch) for label, arch, _ in _demo_sources()} == set(EXAMPLES)


@pytest.mark.parametrize(("label", "arch"), sorted(EXAMPLES))
def test_the_file_pattern_fully_matches_the_real_name_and_extracts_its_serial(
    label: str, arch: str
) -> None:
    source = next(s for lbl, a, s in _demo_sources() if (lbl, a) == (label, arch))
    pattern = re.compile(source["file_pattern"])
    name, serial, _ = EXAMPLES[(label, arch)]
    match = pattern.fullmatch(name)
    assert match, f"{source['file_pattern']!r} does not match {name!r}"
    assert match.groupdict().get("serial") == serial


@pytest.mark.parametrize(("label", "arch"), sorted(EXAMPLES))
def test_the_file_pattern_rejects_other_flavours_architectures_and_latest_names(
    label: str, arch: str
) -> None:
    source = next(s for lbl, a, s in _demo_sources() if (lbl, a) == (label, arch))
    pattern = re.compile(source["file_pattern"])
    for other in EXAMPLES[(label, arch)][2]:
        assert not pattern.fullmatch(other), f"{source['file_pattern']!r} matches {other!r}"


def test_the_file_patterns_of_sources_sharing_a_channel_never_match_the_same_name() -> None:
    names = [example[0] for example in EXAMPLES.values()]
    for label, arch, source in _demo_sources():
        matching = [n for n in names if re.fullmatch(source["file_pattern"], n)]
        assert matching == [EXAMPLES[(label, arch)][0]], (label, arch, matching)


def test_the_local_serial_pattern_reads_the_serial_line_without_extra_flags() -> None:
    local = next(s for label, _, s in _demo_sources() if label == "debian_bookworm_local")
    checksums = f"# serial: 20261126-1\n{'ab' * 32}  debian-12-local-amd64.qcow2\n"
    match = re.search(local["serial_pattern"], checksums)
    assert match and match.group("serial") == "20261126-1"
    # Also when the server puts the line elsewhere, and never across lines.
    assert (
        re.search(local["serial_pattern"], f"{'ab' * 32}  x.qcow2\n# serial: 7\n")["serial"] == "7"
    )
    assert re.search(local["serial_pattern"], "# serial: \nnext") is None


def test_every_demo_recipe_step_validates() -> None:
    for image in [*demo.OS_IMAGES, *demo.INSTANTAPPS]:
        assert image["recipe"], image["label"]
        for position, step in enumerate(image["recipe"], start=1):
            assert validate_params(step["type"], step["params"]) == {}, (image["label"], position)


def test_every_os_recipe_updates_packages_first() -> None:
    for image in [*demo.OS_IMAGES, *demo.INSTANTAPPS]:
        assert image["recipe"][0]["type"] == "update_packages", image["label"]


def test_every_os_image_installs_the_provider_package_second() -> None:
    for image in demo.OS_IMAGES:
        step = image["recipe"][1]
        assert step["type"] == "ecosystem_package", image["label"]
        assert step["params"]["package"] == "scaleway-ecosystem"
        if image["label"] == "debian_bookworm_local":
            # The stand-in package `make run` writes into FACTORY_FILES_DIR.
            assert step["params"]["file"] == "scaleway-ecosystem_0.1.0-1_all.deb"
        else:
            assert ".invalid/" in step["params"]["repository"]


# --- Loading into the database --------------------------------------------------------------------


@pytest.mark.django_db
def test_loading_twice_gives_the_same_rows_and_changes_nothing_the_second_time() -> None:
    first = load_demo(demo_upstream_url=LOCAL_URL)
    counts = _row_counts()
    second = load_demo(demo_upstream_url=LOCAL_URL)

    assert _row_counts() == counts
    assert counts == {
        "Zone": 9,
        "Category": 2,
        "Image": len(demo.OS_IMAGES) + len(demo.INSTANTAPPS),
        "UpstreamSource": len(EXAMPLES),
        "UpstreamLifecycle": len(demo.OS_IMAGES),
        "RecipeStep": sum(len(i["recipe"]) for i in [*demo.OS_IMAGES, *demo.INSTANTAPPS]),
    }
    assert first.created["images"] == counts["Image"]
    assert sum(second.created.values()) == 0
    assert sum(second.updated.values()) == 0
    assert second.recipes_kept == counts["Image"]


@pytest.mark.django_db
def test_every_loaded_recipe_step_validates_and_is_numbered_from_one() -> None:
    load_demo(demo_upstream_url=LOCAL_URL)
    for image in Image.objects.all():
        steps = list(image.steps.all())
        assert [s.position for s in steps] == list(range(1, len(steps) + 1)), image.label
        for step in steps:
            assert validate_params(step.type, step.params) == {}, (image.label, step.position)


@pytest.mark.django_db
def test_only_fr_par_1_and_fr_par_2_are_enabled_and_later_loads_keep_manager_choices() -> None:
    load_demo(demo_upstream_url=LOCAL_URL)
    assert set(Zone.objects.filter(enabled=True).values_list("code", flat=True)) == {
        "fr-par-1",
        "fr-par-2",
    }
    Zone.objects.filter(code="fr-par-2").update(enabled=False)
    Zone.objects.filter(code="nl-ams-1").update(enabled=True)
    load_demo(demo_upstream_url=LOCAL_URL)
    assert set(Zone.objects.filter(enabled=True).values_list("code", flat=True)) == {
        "fr-par-1",
        "nl-ams-1",
    }


@pytest.mark.django_db
def test_the_instantapps_are_built_on_ubuntu_noble() -> None:
    load_demo(demo_upstream_url=LOCAL_URL)
    apps = Image.objects.instantapps()
    assert set(apps.values_list("label", flat=True)) == {
        "wordpress",
        "openvpn",
        "docker",
        "gitlab",
        "nextcloud",
    }
    for app in apps:
        assert app.base_image.label == "ubuntu_noble"
        assert app.category.name == "InstantApps"
        app.full_clean()
    assert not Image.objects.os_images().exclude(category__name="Distributions").exists()


@pytest.mark.django_db
def test_a_recipe_a_manager_edited_survives_a_second_load() -> None:
    load_demo(demo_upstream_url=LOCAL_URL)
    noble = Image.objects.get(label="ubuntu_noble")
    noble.steps.filter(type="ecosystem_package").delete()
    RecipeStep.objects.create(
        image=noble, position=5, type="install_packages", params={"packages": ["htop"]}
    )
    before = [step.as_dict() for step in noble.steps.all()]

    summary = load_demo(demo_upstream_url=LOCAL_URL)

    assert [step.as_dict() for step in noble.steps.all()] == before
    assert summary.created["steps"] == 0


@pytest.mark.django_db
def test_an_image_whose_steps_were_all_removed_gets_the_demo_recipe_again() -> None:
    load_demo(demo_upstream_url=LOCAL_URL)
    Image.objects.get(label="docker").steps.all().delete()
    summary = load_demo(demo_upstream_url=LOCAL_URL)
    assert summary.created["steps"] == len(
        next(a for a in demo.INSTANTAPPS if a["label"] == "docker")["recipe"]
    )


@pytest.mark.django_db
def test_a_manager_set_date_and_an_imported_date_survive_a_second_load() -> None:
    load_demo(demo_upstream_url=LOCAL_URL)
    lifecycle = UpstreamLifecycle.objects.get(image__label="ubuntu_jammy")
    lifecycle.security_support_end = dt.date(2027, 12, 31)
    lifecycle.security_support_end_source = DateSource.MANAGER
    lifecycle.extended_support_end = dt.date(2033, 1, 1)
    lifecycle.extended_support_end_source = DateSource.ENDOFLIFE_DATE
    lifecycle.release_date = dt.date(2000, 1, 1)  # still a demo date: restored
    lifecycle.save()

    summary = load_demo(demo_upstream_url=LOCAL_URL)

    lifecycle.refresh_from_db()
    assert lifecycle.security_support_end == dt.date(2027, 12, 31)
    assert lifecycle.security_support_end_source == DateSource.MANAGER
    assert lifecycle.extended_support_end == dt.date(2033, 1, 1)
    assert lifecycle.extended_support_end_source == DateSource.ENDOFLIFE_DATE
    assert lifecycle.release_date == dt.date(2022, 4, 21)
    assert lifecycle.release_date_source == DateSource.DEMO
    assert summary.dates_kept == 2


@pytest.mark.django_db
def test_the_demo_dates_put_focal_bullseye_and_bookworm_past_their_eol_on_2026_11_26() -> None:
    load_demo(demo_upstream_url=LOCAL_URL)
    day = dt.date(2026, 11, 26)
    past = {
        lc.image.label
        for lc in UpstreamLifecycle.objects.select_related("image")
        if lc.followed_date and lc.followed_date < day
    }
    # The local demo image carries Debian 12's dates.
    assert past == PAST_EOL_ON_2026_11_26 | {"debian_bookworm_local"}
    noble = UpstreamLifecycle.objects.get(image__label="ubuntu_noble")
    assert (noble.eol_product, noble.eol_cycle) == ("ubuntu", "24.04")
    assert noble.security_support_end_source == DateSource.DEMO
    debian = UpstreamLifecycle.objects.get(image__label="debian_bookworm")
    assert debian.active_support_end is None
    assert debian.active_support_end_source == DateSource.NONE


@pytest.mark.django_db
def test_the_loader_leaves_the_image_state_to_the_lifecycle_processes() -> None:
    load_demo(demo_upstream_url=LOCAL_URL)
    focal = Image.objects.get(label="ubuntu_focal")
    assert focal.state == "active"
    assert focal.deprecation_date is None


@pytest.mark.django_db
def test_the_local_image_follows_the_given_url_and_is_x86_64_only() -> None:
    load_demo(demo_upstream_url="http://127.0.0.1:9999/fixtures")
    local = Image.objects.get(label="debian_bookworm_local")
    assert local.kind == ImageKind.OS
    assert local.architectures == ["x86_64"]
    source = local.sources.get()
    assert source.channel_url == "http://127.0.0.1:9999/fixtures/"
    assert source.checksum_file == "SHA256SUMS"
    assert source.checksum_format == "gnu"


@pytest.mark.django_db
def test_sources_are_valid_model_rows_and_every_channel_is_a_directory() -> None:
    load_demo(demo_upstream_url=LOCAL_URL)
    for source in UpstreamSource.objects.all():
        source.full_clean()
        assert source.channel_url.endswith("/")
        assert not source.signature_file and not source.signing_key


@pytest.mark.django_db
def test_a_signing_key_filled_in_later_is_not_wiped_by_a_second_load() -> None:
    load_demo(demo_upstream_url=LOCAL_URL)
    key = "-----BEGIN PGP PUBLIC KEY BLOCK-----\n...\n-----END PGP PUBLIC KEY BLOCK-----\n"
    UpstreamSource.objects.filter(image__label="ubuntu_noble").update(
        signature_file="SHA256SUMS.gpg", signing_key=key
    )
    load_demo(demo_upstream_url=LOCAL_URL)
    for source in UpstreamSource.objects.filter(image__label="ubuntu_noble"):
        assert (source.signature_file, source.signing_key) == ("SHA256SUMS.gpg", key)


@pytest.mark.django_db
def test_an_invalid_demo_step_stops_the_load_naming_the_image_and_step(monkeypatch) -> None:
    broken = [{**demo.INSTANTAPPS[0], "recipe": [{"type": "enable_unit", "params": {}}]}]
    monkeypatch.setattr(demo, "INSTANTAPPS", broken)
    with pytest.raises(ValueError, match=r"'wordpress', step 1 \(enable_unit\): unit"):
        load_demo(demo_upstream_url=LOCAL_URL)
    assert not Image.objects.exists()


@pytest.mark.django_db
def test_the_command_prints_a_one_line_summary_and_reads_the_url_from_the_environment(
    monkeypatch,
) -> None:
    monkeypatch.setenv("DEMO_UPSTREAM_URL", "http://127.0.0.1:8089/demo/")
    out = StringIO()
    call_command("loaddemo", stdout=out)
    line = out.getvalue().strip()
    assert "\n" not in line
    assert line.startswith("Demo catalogue: created 9 zones, 2 categories, ")
    source = UpstreamSource.objects.get(image__label="debian_bookworm_local")
    assert source.channel_url == "http://127.0.0.1:8089/demo/"

    out = StringIO()
    call_command("loaddemo", "--demo-upstream-url", "http://127.0.0.1:8081/debian-12/", stdout=out)
    assert "created nothing" in out.getvalue()
    assert "updated 1 sources" in out.getvalue()
