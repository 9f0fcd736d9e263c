"""The recipe editor of an image page, as a catalogue manager: add a step (refused with
the error next to its field when a parameter is invalid), edit one, move one, and find each
change in the audit log under the manager's name."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import User
from playwright.sync_api import Locator, Page, expect

from catalog.models import AuditEntry, Image, RecipeStep
from tests.browser.conftest import login

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def recipe(image: Image) -> list[tuple[str, dict]]:
    return [(s.type, s.params) for s in RecipeStep.objects.filter(image=image)]


def open_image(page: Page, live_server: Any, user: User, image: Image) -> None:
    login(page, live_server, user)
    page.goto(f"{live_server.url}{image.get_absolute_url()}")
    expect(page.get_by_role("heading", name="Recipe")).to_be_visible()


def step_rows(page: Page) -> Locator:
    return page.get_by_test_id("steps").locator("tr[data-step-type]")


def choose_step_type(page: Page, label: str) -> None:
    """Choose a type in the step form and wait until htmx has put the new form in place."""
    page.get_by_test_id("step-form").evaluate("form => form.dataset.replaced = 'no'")
    page.get_by_test_id("step-type").select_option(label=label)
    expect(page.locator("[data-testid=step-form]:not([data-replaced])")).to_have_count(1)


def test_an_invalid_package_name_is_shown_next_to_its_field_and_nothing_is_saved(
    page: Page, js_errors: list[str], live_server: Any, manager: User, catalogue: dict[str, Image]
) -> None:
    noble = catalogue["noble"]
    before = recipe(noble)
    open_image(page, live_server, manager, noble)

    page.get_by_test_id("add-step").click()
    form = page.get_by_test_id("step-form")
    # A new step starts as "Install packages".
    expect(form.get_by_test_id("step-type")).to_have_value("install_packages")
    form.get_by_label("Packages", exact=True).fill("bad name!")
    form.get_by_test_id("save-step").click()

    error = page.get_by_test_id("field-error")
    expect(error).to_have_text("Not a valid package name: name!.")
    # Next to the field: in the same block as the packages input, which keeps the value.
    expect(error.locator("xpath=..").get_by_label("Packages", exact=True)).to_have_value(
        "bad name!"
    )
    expect(step_rows(page)).to_have_count(2)
    assert recipe(noble) == before
    assert not AuditEntry.objects.filter(action__startswith="recipe.").exists()

    # Corrected in the same form, the step is saved and the recipe shows it.
    page.get_by_test_id("step-form").get_by_label("Packages", exact=True).fill("nginx certbot")
    page.get_by_test_id("save-step").click()

    expect(step_rows(page)).to_have_count(3)
    expect(step_rows(page).nth(2)).to_contain_text("Install packages")
    expect(step_rows(page).nth(2)).to_contain_text("nginx certbot")
    expect(page.get_by_test_id("step-form")).to_have_count(0)
    assert recipe(noble) == [*before, ("install_packages", {"packages": ["nginx", "certbot"]})]
    added = AuditEntry.objects.get(action="recipe.step_added")
    assert (added.actor, added.image) == (manager, noble)
    assert js_errors == []


def test_after_choosing_the_step_type_an_invalid_value_still_shows_its_error(
    page: Page, js_errors: list[str], live_server: Any, manager: User, catalogue: dict[str, Image]
) -> None:
    noble = catalogue["noble"]
    before = recipe(noble)
    open_image(page, live_server, manager, noble)

    page.get_by_test_id("add-step").click()
    choose_step_type(page, "Install packages")
    page.get_by_test_id("step-form").get_by_label("Packages", exact=True).fill("bad name!")
    page.get_by_test_id("save-step").click()

    expect(page.get_by_test_id("field-error")).to_have_text(
        "Not a valid package name: name!.", timeout=5_000
    )
    assert recipe(noble) == before
    assert js_errors == []


def test_a_new_step_of_another_type_gets_that_type_s_fields(
    page: Page, js_errors: list[str], live_server: Any, manager: User, catalogue: dict[str, Image]
) -> None:
    noble = catalogue["noble"]
    open_image(page, live_server, manager, noble)

    page.get_by_test_id("add-step").click()
    choose_step_type(page, "Enable systemd unit")
    expect(page.get_by_test_id("step-form").get_by_label("Unit", exact=True)).to_be_visible()
    page.get_by_test_id("step-form").get_by_label("Unit", exact=True).fill("nginx.service")
    page.get_by_test_id("save-step").click()

    expect(step_rows(page)).to_have_count(3)
    expect(step_rows(page).nth(2)).to_contain_text("nginx.service")
    assert recipe(noble)[-1] == ("enable_unit", {"unit": "nginx.service"})
    assert js_errors == []


def test_editing_moving_and_the_audit_log_under_the_manager_s_name(
    page: Page, js_errors: list[str], live_server: Any, manager: User, catalogue: dict[str, Image]
) -> None:
    noble = catalogue["noble"]
    open_image(page, live_server, manager, noble)
    install = RecipeStep.objects.get(image=noble, type="install_packages")

    # Edit the "Install packages" step: its form opens with the current value.
    page.locator(f"#step-{install.pk}").get_by_test_id("edit-step").click()
    field = page.get_by_test_id("step-form").get_by_label("Packages", exact=True)
    expect(field).to_have_value("curl")
    field.fill("curl jq")
    page.get_by_test_id("save-step").click()

    expect(page.locator(f"#step-{install.pk}")).to_contain_text("curl jq")
    install.refresh_from_db()
    assert install.params == {"packages": ["curl", "jq"]}
    assert RecipeStep.objects.filter(image=noble).count() == 2

    # Move it up: it becomes the first step.
    page.locator(f"#step-{install.pk}").get_by_role("button", name="↑").click()

    expect(step_rows(page).first).to_have_attribute("id", f"step-{install.pk}")
    assert [s.type for s in RecipeStep.objects.filter(image=noble)] == [
        "install_packages",
        "update_packages",
    ]
    assert list(RecipeStep.objects.filter(image=noble).values_list("position", flat=True)) == [1, 2]
    assert js_errors == []

    # The image page's audit section and the audit log name the manager for both changes.
    page.reload()
    section = page.locator("section", has=page.get_by_role("heading", name="Audit log"))
    for action in ("recipe.step_changed", "recipe.step_moved"):
        row = section.get_by_test_id("audit").locator("tr", has_text=action)
        expect(row).to_have_count(1)
        expect(row).to_contain_text("manon")

    page.get_by_role("link", name="Full history").click()
    expect(page.get_by_role("heading", name="Audit log")).to_be_visible()
    log = page.get_by_test_id("audit")
    expect(log.locator("tr", has_text="recipe.step_moved")).to_contain_text("manon")
    expect(log.locator("tr", has_text="recipe.step_changed")).to_contain_text("manon")
    # The entry says what changed in the step, not only that the recipe changed.
    changed = log.locator("tr", has_text="recipe.step_changed")
    expect(changed).to_contain_text("params")
    expect(changed).to_contain_text("'jq'")
    expect(log.locator("tr", has_text="recipe.step_moved")).to_contain_text("Install packages")
