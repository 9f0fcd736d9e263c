"""What a person reads on the image and version pages: regions an action changed are swapped
with it, durations in words, the recipe as executed as steps, and what the recipe changed in
the upstream image."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import pytest
from django.urls import reverse

from builds.choices import StageName
from builds.models import Build
from catalog.choices import StepType
from catalog.models import ImageVersion
from catalog.recipes import in_words
from catalog.templatetags.durations import duration
from tests.catalog.factories import os_image

pytestmark = pytest.mark.django_db


def oob_region(html: str, element_id: str) -> str:
    """The inner HTML of the out-of-band element `element_id` of an htmx answer."""
    found = re.search(
        rf'<div id="{element_id}" hx-swap-oob="innerHTML">(.*?)</div>\s*(?=<div id=|$)',
        html,
        re.S,
    )
    assert found, f"no out-of-band #{element_id} in the answer"
    return found.group(1)


def test_rebuild_answers_with_the_builds_and_audit_regions_it_changed(client, manager) -> None:
    image = os_image("debian_bookworm")
    client.force_login(manager)
    page = client.get(image.get_absolute_url()).content.decode()
    # The regions the answer swaps exist on the page under the same ids.
    assert 'id="image-builds"' in page and 'id="image-audit"' in page

    answer = client.post(
        reverse("builds:rebuild", args=[image.label]), HTTP_HX_REQUEST="true"
    ).content.decode()

    build = Build.objects.get(image=image)
    assert 'data-testid="queued"' in answer
    builds = oob_region(answer, "image-builds")
    assert f"#{build.pk}" in builds and "No build yet" not in builds
    audit = oob_region(answer, "image-audit")
    assert "build.requested" in audit and "Nothing recorded yet" not in audit


def test_a_recipe_change_answers_with_the_audit_region_too(client, manager) -> None:
    image = os_image("debian_trixie")
    client.force_login(manager)

    answer = client.post(
        reverse("catalog:step_add", args=[image.label]),
        {"type": StepType.INSTALL_PACKAGES, "p_packages": "nginx", "enabled": "on"},
        HTTP_HX_REQUEST="true",
    ).content.decode()

    assert 'id="recipe"' in answer
    assert "recipe.step_added" in oob_region(answer, "image-audit")
    assert 'id="image-builds"' not in answer


@pytest.mark.parametrize(
    ("value", "words"),
    [
        (dt.timedelta(minutes=10, seconds=32, microseconds=721739), "10 min 32 s"),
        (dt.timedelta(hours=2, minutes=5, seconds=3), "2 h 5 min"),
        (dt.timedelta(hours=1), "1 h"),
        (dt.timedelta(days=1, hours=3, minutes=1), "1 d 3 h"),
        (4.24, "4.2 s"),
        (0.04, "0 s"),
        (59.6, "59 s"),
        (9.99, "9.9 s"),
        (61, "1 min 1 s"),
        (None, ""),
    ],
)
def test_durations_read_in_words(value, words) -> None:
    assert duration(value) == words


def test_the_build_page_shows_durations_in_words(client, manager) -> None:
    image = os_image("debian_bookworm")
    started = dt.datetime(2026, 12, 1, 10, 0, tzinfo=dt.UTC)
    build = Build.objects.create(
        image=image,
        state="done",
        started_at=started,
        finished_at=started + dt.timedelta(minutes=10, seconds=32, microseconds=721739),
    )
    client.force_login(manager)

    for url in (build.get_absolute_url(), reverse("builds:list")):
        page = client.get(url).content.decode()
        assert "10 min 32 s" in page
        assert "0:10:32" not in page


def test_the_recipe_as_executed_reads_as_steps_and_names_secrets_only() -> None:
    install = in_words({"type": "install_packages", "params": {"packages": ["nginx", "curl"]}})
    assert install.label == "Install packages"
    assert install.params == [("Packages", "nginx, curl", False)]

    command = in_words(
        {
            "type": "run_command",
            "params": {"command": "curl -H 'Token: ${secret:API_TOKEN}' x", "timeout": 630},
            "enabled": True,
        }
    )
    assert command.label == "Run command"
    assert command.params == [
        ("Command", "curl -H 'Token: [secret API_TOKEN]' x", True),
        ("Timeout", "10 min 30 s", False),
    ]

    download = in_words(
        {"type": "download_file", "params": {"url": "https://x/y", "sha256": "ab" * 32}}
    )
    assert [name for name, _, _ in download.params] == ["URL", "SHA-256"]


def test_the_version_page_shows_the_recipe_as_steps_not_dicts(client, manager) -> None:
    image = os_image("debian_bookworm")
    version = ImageVersion.objects.create(
        image=image,
        name="2026-12-01",
        recipe=[
            {"type": "update_packages", "params": {}, "enabled": True},
            {
                "type": "write_file",
                "params": {"path": "/etc/motd", "content": "key=${secret:MOTD_KEY}\n"},
                "enabled": True,
            },
        ],
    )
    client.force_login(manager)

    page = client.get(version.get_absolute_url()).content.decode()
    executed = page[page.index('data-testid="recipe-executed"') :].split("</ol>")[0]
    assert "Update all packages" in executed and "Write file" in executed
    assert "/etc/motd" in executed and "[secret MOTD_KEY]" in executed
    assert "{&#x27;" not in executed and "{'" not in executed and "${secret" not in executed


def built_with_upstream(image, name, manifest, upstream) -> ImageVersion:
    """A version and the build that made it, whose customize stage recorded `upstream`."""
    version = ImageVersion.objects.create(image=image, name=name, manifest=manifest)
    build = Build.objects.create(image=image, state="done", version=version)
    build.ensure_stages()
    outputs = {"manifest": manifest} if upstream is None else {"upstream_manifest": upstream}
    build.stages.filter(name=StageName.CUSTOMIZE).update(outputs=outputs)
    return version


def test_the_first_version_compares_with_the_upstream_images_own_packages(client, manager) -> None:
    image = os_image("debian_bookworm")
    version = built_with_upstream(
        image,
        "2026-12-01",
        manifest=[
            {"name": "bash", "version": "5.2-2", "arch": "amd64"},
            {"name": "nginx", "version": "1.22-1", "arch": "amd64"},
        ],
        upstream=[
            {"name": "bash", "version": "5.2-1", "arch": "amd64"},
            {"name": "nano", "version": "7.2-1", "arch": "amd64"},
        ],
    )
    client.force_login(manager)

    page = client.get(version.get_absolute_url()).content.decode()
    diff = page[page.index('data-testid="package-diff"') :].split("</section>")[0]
    assert "the upstream image" in diff
    assert "1 added, 1 removed, 1 upgraded or changed" in diff
    assert re.search(r'class="diff-added"><td>nginx', diff)
    assert re.search(r'class="diff-removed"><td>nano', diff)
    assert re.search(r'class="diff-changed"><td>bash</td><td class="mono">5.2-1', diff)


def test_a_later_version_shows_both_differences(client, manager) -> None:
    image = os_image("debian_bookworm")
    bash = {"name": "bash", "version": "5.2-1", "arch": "amd64"}
    ImageVersion.objects.create(image=image, name="2026-11-01", manifest=[bash])
    version = built_with_upstream(
        image, "2026-12-01", manifest=[bash, {"name": "vim", "version": "9"}], upstream=[bash]
    )
    client.force_login(manager)

    page = client.get(version.get_absolute_url()).content.decode()
    since_previous = page[page.index('data-testid="package-diff"') :].split("</section>")[0]
    assert "2026-11-01" in since_previous and "vim" in since_previous
    from_upstream = page[page.index('data-testid="upstream-diff"') :].split("</section>")[0]
    assert "1 added, 0 removed" in from_upstream and "vim" in from_upstream


@pytest.mark.parametrize("with_build", [False, True])
def test_an_older_version_says_plainly_the_upstream_list_is_not_known(
    client, manager, with_build
) -> None:
    image = os_image("debian_bookworm")
    manifest = [{"name": "bash", "version": "5.2-1"}]
    if with_build:
        version = built_with_upstream(image, "2025-01-01", manifest, upstream=None)
    else:
        version = ImageVersion.objects.create(image=image, name="2025-01-01", manifest=manifest)
    client.force_login(manager)

    page = client.get(version.get_absolute_url()).content.decode()
    assert 'data-testid="upstream-unknown"' in page
    assert "is not known" in page


def test_every_page_links_the_favicon_and_it_is_served(client, manager) -> None:
    from django.contrib.staticfiles import finders

    client.force_login(manager)
    page = client.get(reverse("catalog:overview")).content.decode()
    link = re.search(r'<link rel="icon" href="([^"]+)" type="image/svg\+xml">', page)
    assert link and link.group(1).endswith("img/favicon.svg")
    found = finders.find("img/favicon.svg")
    assert found and Path(str(found)).read_text().startswith("<svg")
