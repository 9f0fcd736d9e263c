from __future__ import annotations

from django.contrib import admin

from advisories.models import Advisory, EcosystemImport, Exposure, ImagePolicy


@admin.register(EcosystemImport)
class EcosystemImportAdmin(admin.ModelAdmin):
    list_display = ["ecosystem", "last_ok", "last_attempt_at", "last_success_at", "last_message"]

    def has_change_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Advisory)
class AdvisoryAdmin(admin.ModelAdmin):
    list_display = ["osv_id", "ecosystem", "package", "severity", "modified"]
    list_filter = ["ecosystem", "severity"]
    search_fields = ["osv_id", "package", "aliases"]

    def has_change_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Exposure)
class ExposureAdmin(admin.ModelAdmin):
    list_display = ["version", "advisory", "package", "installed_version", "fixed_version"]
    list_select_related = ["version__image", "advisory"]

    def has_change_permission(self, request, obj=None) -> bool:
        return False


@admin.register(ImagePolicy)
class ImagePolicyAdmin(admin.ModelAdmin):
    list_display = ["image", "rebuild_min_severity"]
