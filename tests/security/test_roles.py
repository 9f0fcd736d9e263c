"""Roles: a signed-in user with no role sees only the "no access yet" page; Administrators
(the group, not only superusers) manage users, and staff status follows the group."""

from __future__ import annotations

import datetime as dt
from importlib import import_module

import pytest
from django.apps import apps
from django.contrib.auth.models import Group, User
from django.test import Client
from django.urls import reverse

from catalog import roles
from catalog.models import AuditEntry, RecipeStep, Zone
from tests.catalog.factories import os_image

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def fast_password_hashing(settings) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def nobody(db) -> User:
    """Signed up, in no group yet."""
    return User.objects.create_user("noor", password="pw-noor")


@pytest.fixture
def administrator(db) -> User:
    """A member of the Administrator group who is not a superuser."""
    user = User.objects.create_user("adele", password="pw-adele")
    user.groups.add(Group.objects.get(name=roles.ADMINISTRATOR))
    return user


@pytest.fixture
def image():
    image = os_image("debian_bookworm", eol=dt.date(2026, 7, 11))
    RecipeStep.objects.create(image=image, position=1, type="update_packages", params={})
    return image


def test_a_user_with_no_role_sees_the_no_access_page_on_every_page(client, nobody, image) -> None:
    client.force_login(nobody)
    for url in [
        "/",
        image.get_absolute_url(),
        "/builds/",
        "/zones/",
        "/audit/",
        "/builds/janitor/",
        "/lifecycle/requests/",
        "/lifecycle/feed.json",
        "/admin/",
    ]:
        response = client.get(url)
        assert response.status_code == 403, url
        page = response.content.decode()
        assert "No access yet" in page, url
        assert "An administrator must add you to a group" in page, url
        assert image.name not in page, url


def test_the_no_access_page_names_no_role_and_offers_no_navigation(client, nobody) -> None:
    client.force_login(nobody)

    page = client.get("/").content.decode()

    assert "noor · no role yet" in page
    assert 'href="/builds/"' not in page
    assert 'action="/accounts/logout/"' in page and 'href="/accounts/password/"' in page


def test_a_user_with_no_role_changes_nothing(client, nobody, image) -> None:
    Zone.objects.create(code="fr-par-1", enabled=True)
    client.force_login(nobody)
    for url in [
        reverse("catalog:step_add", args=[image.label]),
        reverse("catalog:import_eol"),
        reverse("builds:rebuild", args=[image.label]),
        reverse("catalog:zone_toggle", args=["fr-par-1"]),
    ]:
        assert client.post(url, {"type": "update_packages"}).status_code == 403, url
    assert image.steps.count() == 1
    assert Zone.objects.get(code="fr-par-1").enabled
    assert not AuditEntry.objects.exists()


def test_a_user_with_no_role_can_still_log_out_and_change_the_password(nobody) -> None:
    client = Client()
    client.force_login(nobody)

    assert client.get("/accounts/password/").status_code == 200
    response = client.post(
        "/accounts/password/",
        {
            "old_password": "pw-noor",
            "new_password1": "quarry-lantern-orbit-52",
            "new_password2": "quarry-lantern-orbit-52",
        },
    )
    assert response.status_code == 302
    assert client.get("/accounts/password/done/").status_code == 200
    assert client.post("/accounts/logout/").status_code == 302
    assert client.get("/").status_code == 302  # signed out: the login page


def test_an_htmx_poll_from_a_user_who_lost_the_role_reloads_the_page(client, viewer) -> None:
    client.force_login(viewer)
    viewer.groups.clear()

    response = client.get("/builds/", HTTP_HX_REQUEST="true")

    assert response.status_code == 403
    assert response["HX-Refresh"] == "true"


def test_once_in_a_group_the_user_reads_the_dashboard(client, nobody, image) -> None:
    client.force_login(nobody)
    nobody.groups.add(Group.objects.get(name=roles.VIEWER))

    response = client.get(image.get_absolute_url())

    assert response.status_code == 200
    assert "noor · Viewer" in response.content.decode()


def test_a_superuser_with_no_group_passes(client, admin_user) -> None:
    client.force_login(admin_user)

    response = client.get("/")

    assert response.status_code == 200
    assert "ada · Administrator" in response.content.decode()


def test_joining_the_administrator_group_makes_a_user_staff_and_leaving_it_takes_it_back(
    nobody,
) -> None:
    administrators = Group.objects.get(name=roles.ADMINISTRATOR)
    viewers = Group.objects.get(name=roles.VIEWER)

    nobody.groups.add(viewers)
    assert not User.objects.get(pk=nobody.pk).is_staff
    nobody.groups.add(administrators)
    assert User.objects.get(pk=nobody.pk).is_staff and nobody.is_staff
    nobody.groups.remove(administrators)
    assert not User.objects.get(pk=nobody.pk).is_staff

    administrators.user_set.add(nobody)  # from the group's side
    assert User.objects.get(pk=nobody.pk).is_staff
    administrators.user_set.clear()
    assert not User.objects.get(pk=nobody.pk).is_staff

    nobody.groups.set([administrators, viewers])
    assert User.objects.get(pk=nobody.pk).is_staff
    nobody.groups.clear()
    assert not User.objects.get(pk=nobody.pk).is_staff


def test_a_superusers_staff_status_is_left_alone(admin_user) -> None:
    admin_user.groups.add(Group.objects.get(name=roles.VIEWER))
    admin_user.groups.clear()

    assert User.objects.get(pk=admin_user.pk).is_staff


def test_the_administrator_group_holds_the_user_management_permissions() -> None:
    group = Group.objects.get(name=roles.ADMINISTRATOR)
    held = {f"{p.content_type.app_label}.{p.codename}" for p in group.permissions.all()}

    assert {"auth.add_user", "auth.change_user", "auth.view_user", "auth.delete_user"} <= held
    assert {"auth.view_group", "axes.view_accessattempt", "axes.delete_accessattempt"} <= held
    assert "auth.change_group" not in held


def test_an_administrator_who_is_not_a_superuser_manages_users_in_the_admin(
    client, administrator, nobody
) -> None:
    client.force_login(administrator)
    assert client.get("/admin/auth/user/").status_code == 200

    added = client.post(
        "/admin/auth/user/add/",
        {
            "username": "newcomer",
            "usable_password": "true",
            "password1": "quarry-lantern-orbit-52",
            "password2": "quarry-lantern-orbit-52",
        },
    )
    assert added.status_code == 302, added.content.decode()[:2000]
    assert User.objects.filter(username="newcomer").exists()

    viewers = Group.objects.get(name=roles.VIEWER)
    changed = client.post(f"/admin/auth/user/{nobody.pk}/change/", change_form(nobody, [viewers]))
    assert changed.status_code == 302, changed.content.decode()[:2000]
    assert list(nobody.groups.all()) == [viewers]


def test_an_administrator_makes_another_administrator_staff_through_the_admin(
    client, administrator, nobody
) -> None:
    client.force_login(administrator)
    administrators = Group.objects.get(name=roles.ADMINISTRATOR)

    client.post(f"/admin/auth/user/{nobody.pk}/change/", change_form(nobody, [administrators]))

    assert User.objects.get(pk=nobody.pk).is_staff
    client.force_login(User.objects.get(pk=nobody.pk))
    assert client.get("/admin/auth/user/").status_code == 200


def test_an_administrator_cannot_make_anyone_a_superuser_or_hand_out_permissions(
    client, administrator, nobody
) -> None:
    client.force_login(administrator)
    form = change_form(nobody, [])
    form.update(is_superuser="on", is_staff="on", user_permissions=["1", "2"])

    assert client.post(f"/admin/auth/user/{nobody.pk}/change/", form).status_code == 302
    own = change_form(administrator, [Group.objects.get(name=roles.ADMINISTRATOR)])
    own.update(is_superuser="on")
    assert client.post(f"/admin/auth/user/{administrator.pk}/change/", own).status_code == 302

    nobody.refresh_from_db()
    assert not nobody.is_superuser and not nobody.is_staff
    assert not nobody.user_permissions.exists()
    administrator.refresh_from_db()
    assert not administrator.is_superuser


def test_an_administrator_cannot_change_a_superuser_or_set_a_superusers_password(
    client, administrator, admin_user
) -> None:
    client.force_login(administrator)

    changed = client.post(f"/admin/auth/user/{admin_user.pk}/change/", change_form(admin_user, []))
    password = client.post(
        f"/admin/auth/user/{admin_user.pk}/password/",
        {"password1": "quarry-lantern-orbit-52", "password2": "quarry-lantern-orbit-52"},
    )
    deleted = client.post(f"/admin/auth/user/{admin_user.pk}/delete/", {"post": "yes"})

    assert changed.status_code == 403
    assert password.status_code == 403
    assert deleted.status_code == 403
    assert User.objects.get(pk=admin_user.pk).check_password("pw-ada")


def test_the_migration_makes_the_administrators_already_in_the_group_staff(nobody) -> None:
    administrators = Group.objects.get(name=roles.ADMINISTRATOR)
    administrators.user_set.add(nobody)
    User.objects.filter(pk=nobody.pk).update(is_staff=False)  # as before staff followed
    migration = import_module("catalog.migrations.0004_administrators_are_staff")

    migration.administrators_are_staff(apps, None)

    assert User.objects.get(pk=nobody.pk).is_staff


def change_form(user: User, groups: list[Group]) -> dict:
    """The admin's change form for `user` as a browser would send it back."""
    return {
        "username": user.username,
        "first_name": user.first_name,
        "last_name": user.last_name,
        "email": user.email,
        "is_active": "on",
        "groups": [str(g.pk) for g in groups],
        "last_login_0": "",
        "last_login_1": "",
        "date_joined_0": user.date_joined.strftime("%Y-%m-%d"),
        "date_joined_1": user.date_joined.strftime("%H:%M:%S"),
    }
