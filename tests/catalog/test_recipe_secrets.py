"""Recipe secrets in the recipe editor: a step may name only secrets on RECIPE_SECRETS, and
the editor says which names are allowed when it refuses one."""

from __future__ import annotations

import html

import pytest
from django.urls import reverse

from catalog.models import AuditEntry, RecipeStep
from catalog.recipes import validate_params
from tests.catalog.factories import os_image

pytestmark = pytest.mark.django_db


@pytest.fixture
def image():
    return os_image("debian_bookworm")


def _add(client, image, command: str):
    return client.post(
        reverse("catalog:step_add", args=[image.label]),
        {"type": "run_command", "p_command": command, "enabled": "on"},
    )


def test_the_editor_refuses_a_step_naming_a_secret_not_on_recipe_secrets(
    client, manager, image, settings
) -> None:
    settings.RECIPE_SECRETS = ["DEMO_TOKEN", "APT_PASSWORD"]
    client.force_login(manager)

    response = _add(client, image, "echo ${secret:SCW_SECRET_KEY} | base64")

    assert response.status_code == 422
    assert (
        "Secret SCW_SECRET_KEY is not on RECIPE_SECRETS; allowed: APT_PASSWORD, DEMO_TOKEN."
        in html.unescape(response.content.decode())
    )
    assert not RecipeStep.objects.exists()
    assert not AuditEntry.objects.exists()


def test_the_editor_refuses_to_change_a_step_to_name_a_secret_not_allowed(
    client, manager, image, settings
) -> None:
    settings.RECIPE_SECRETS = ["DEMO_TOKEN"]
    step = RecipeStep.objects.create(
        image=image, position=1, type="run_command", params={"command": "true"}
    )
    client.force_login(manager)

    response = client.post(
        reverse("catalog:step_save", args=[image.label, step.pk]),
        {
            "type": "write_file",
            "p_path": "/etc/keys",
            "p_content": "${secret:DJANGO_SECRET_KEY}\n${secret:EMAIL_HOST_PASSWORD}\n",
            "enabled": "on",
        },
    )

    assert response.status_code == 422
    assert (
        "Secrets DJANGO_SECRET_KEY, EMAIL_HOST_PASSWORD are not on RECIPE_SECRETS; "
        "allowed: DEMO_TOKEN." in html.unescape(response.content.decode())
    )
    step.refresh_from_db()
    assert step.type == "run_command" and step.params == {"command": "true"}


def test_with_recipe_secrets_empty_no_secret_may_be_used(settings) -> None:
    settings.RECIPE_SECRETS = []

    errors = validate_params("firstboot_script", {"script": "use ${secret:DEMO_TOKEN}"})

    assert errors == {
        "script": "Secret DEMO_TOKEN is not on RECIPE_SECRETS; allowed: none (RECIPE_SECRETS "
        "is empty)."
    }


def test_the_editor_saves_a_step_naming_an_allowed_secret(client, manager, image, settings) -> None:
    settings.RECIPE_SECRETS = ["DEMO_TOKEN"]
    client.force_login(manager)

    response = _add(client, image, "login --token ${secret:DEMO_TOKEN}")

    assert response.status_code == 302
    step = RecipeStep.objects.get(image=image)
    # Stored by name only: the value is read by the build, from the worker's environment.
    assert step.params == {"command": "login --token ${secret:DEMO_TOKEN}"}
