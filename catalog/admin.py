"""Django admin for the raw data.

Models that carry state are read-only here, so that every change goes through the
dashboard's checks and the audit log.
"""

from __future__ import annotations

from django.contrib import admin
from django.contrib.auth.admin import UserAdmin
from django.contrib.auth.models import User
from django.http import HttpRequest

from catalog.models import (
    AuditEntry,
    Category,
    Image,
    ImageVersion,
    LocalImage,
    RecipeStep,
    UpstreamLifecycle,
    UpstreamSource,
    Zone,
)


class ReadOnlyAdmin(admin.ModelAdmin):
    """Shows rows; changes none."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(Category)
class CategoryAdmin(admin.ModelAdmin):
    list_display = ["name", "description"]


@admin.register(Zone)
class ZoneAdmin(ReadOnlyAdmin):
    list_display = ["code", "region", "enabled", "added_at"]


@admin.register(Image)
class ImageAdmin(ReadOnlyAdmin):
    # Storage types are changed on the image page (audited), not here.
    list_display = ["label", "name", "kind", "state", "storage_types", "deprecation_date"]
    list_filter = ["kind", "state", "category"]
    search_fields = ["label", "name"]


@admin.register(UpstreamSource)
class UpstreamSourceAdmin(ReadOnlyAdmin):
    list_display = ["image", "arch", "channel_url", "checksum_format"]


@admin.register(UpstreamLifecycle)
class UpstreamLifecycleAdmin(ReadOnlyAdmin):
    list_display = ["image", "eol_product", "eol_cycle", "security_support_end", "last_checked_at"]


@admin.register(RecipeStep)
class RecipeStepAdmin(ReadOnlyAdmin):
    list_display = ["image", "position", "type", "enabled"]


@admin.register(ImageVersion)
class ImageVersionAdmin(ReadOnlyAdmin):
    list_display = ["image", "arch", "name", "state", "created_at", "released_at"]
    list_filter = ["state", "arch"]


@admin.register(LocalImage)
class LocalImageAdmin(ReadOnlyAdmin):
    list_display = ["version", "zone", "storage_type", "provider_image_id", "state"]
    list_filter = ["storage_type", "state"]


@admin.register(AuditEntry)
class AuditEntryAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "actor_name", "action", "image", "target_repr"]
    list_filter = ["action"]
    # The image is nullable, so the changelist's automatic select_related() skips it.
    list_select_related = ["image"]


class FactoryUserAdmin(UserAdmin):
    """Users, managed by Administrators (catalog.roles).

    A member of the Administrator group who is not a superuser adds people and puts them in
    groups, but cannot make anyone a superuser, hand out single permissions, or change or
    delete a superuser (nor set a superuser's password): stock UserAdmin would let anyone who
    may change users make themselves a superuser. Staff status follows the Administrator group.
    """

    def get_readonly_fields(self, request: HttpRequest, obj: object = None) -> tuple:
        fields = tuple(super().get_readonly_fields(request, obj))
        if request.user.is_superuser:
            return fields
        return (*fields, "is_staff", "is_superuser", "user_permissions")

    def has_change_permission(self, request: HttpRequest, obj: User | None = None) -> bool:
        if obj is not None and obj.is_superuser and not request.user.is_superuser:
            return False
        return super().has_change_permission(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: User | None = None) -> bool:
        if obj is not None and obj.is_superuser and not request.user.is_superuser:
            return False
        return super().has_delete_permission(request, obj)


admin.site.unregister(User)
admin.site.register(User, FactoryUserAdmin)
