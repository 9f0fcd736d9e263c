"""Pages of the refresh triggers and of deprecation.

- the Triggers page (catalogue managers and above): security advisory, ecosystem package
  update and new product forms, recent upstream checks, images due for a refresh;
- bulk rebuilds go through a confirmation page listing the images, like Django admin's
  delete_selected: the first POST shows it, a second POST with the ids and `confirm=yes`
  queues the builds;
- partials the catalogue pages load with htmx: an image's deprecation panel (with the form
  release managers use to set or move the date) and a version's advisory status.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import permission_required
from django.core.exceptions import ValidationError
from django.db.models import Q
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.template.loader import render_to_string
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from builds.choices import Trigger
from catalog import dates, roles
from catalog.choices import ImageState
from catalog.htmx import partial_request
from catalog.models import Image, ImageVersion
from lifecycle import deprecation, refresh, versions
from lifecycle.models.triggers import SecurityAdvisory, UpstreamCheck
from lifecycle.templatetags.lifecycle_timeline import image_timeline

RECENT_CHECKS = 50

# --- forms -------------------------------------------------------------------------------------


class AdvisoryForm(forms.Form):
    """A security advisory: which packages, fixed in which version."""

    advisory_id = forms.CharField(max_length=64, label="Advisory id")
    packages = forms.CharField(
        max_length=2000,
        label="Affected package names",
        help_text="Binary package names, separated by spaces or commas.",
    )
    fixed_version = forms.CharField(
        max_length=128,
        required=False,
        label="Fixed version",
        help_text="Blank: every installed version is affected.",
    )

    def clean_packages(self) -> list[str]:
        names = refresh.parse_packages(self.cleaned_data["packages"])
        if not names:
            raise ValidationError("Name at least one package.")
        return names

    def clean_fixed_version(self) -> str:
        value = self.cleaned_data["fixed_version"]
        if value and not versions.is_valid_version(value):
            raise ValidationError(f"Not a package version: {versions.VERSION_HELP}")
        return value


class EcosystemForm(forms.Form):
    """A new version of the provider's ecosystem package: every image is rebuilt."""

    package_version = forms.CharField(max_length=64, label="New package version")


class NewProductForm(forms.Form):
    """A new product (e.g. an instance type): every image is rebuilt, with a note."""

    note = forms.CharField(max_length=500, label="Note")


class IdsField(forms.ModelMultipleChoiceField):
    """Rows chosen by id, each first checked to be a whole number the database can hold
    (a huge one overflowed SQLite's `IN` list, a 500)."""

    largest_id = 2**63 - 1

    def clean(self, value: Any) -> Any:
        for pk in value if isinstance(value, list | tuple) else []:
            text = str(pk)
            if not (text.isascii() and text.isdigit()) or int(text) > self.largest_id:
                raise ValidationError(
                    self.error_messages["invalid_pk_value"],
                    code="invalid_pk_value",
                    params={"pk": pk},
                )
        return super().clean(value)


class ConfirmedImagesForm(forms.Form):
    """The images ticked on the confirmation page: ids from the browser, checked here.

    Any image may be named: the rebuild itself keeps only the live (and, for an advisory,
    still matching) ones, since an image may change between the two pages.
    """

    image = IdsField(
        queryset=Image.objects.all(),
        required=False,
        error_messages={
            "invalid_pk_value": "“%(pk)s” is not an image id.",
            "invalid_choice": "Image %(value)s does not exist.",
            "invalid_list": "Tick the images to rebuild.",
        },
    )


class DeprecationForm(forms.Form):
    """A release manager sets or moves a deprecation date; the reason is required."""

    date = forms.DateField(
        validators=[dates.validate_in_range], widget=forms.DateInput(attrs=dates.widget_attrs())
    )
    reason = forms.CharField(max_length=1000, widget=forms.TextInput(attrs={"size": 40}))
    # A label typed into a search field (htmx suggests matches, REPLACEMENT_SUGGESTIONS at
    # most) and checked here: a <select> of the whole catalogue cost most of the panel's time.
    replacement = forms.ModelChoiceField(
        queryset=Image.objects.filter(state__in=deprecation.OFFERED),
        required=False,
        to_field_name="label",
        widget=forms.TextInput(
            attrs={
                "type": "search",
                "list": "replacement-options",
                "autocomplete": "off",
                "placeholder": "(the default replacement)",
                "data-testid": "replacement",
            }
        ),
        error_messages={"invalid_choice": "No offered image has this label."},
    )


REPLACEMENT_SUGGESTIONS = 20


FORMS: dict[str, type[forms.Form]] = {
    Trigger.SECURITY: AdvisoryForm,
    Trigger.ECOSYSTEM: EcosystemForm,
    Trigger.NEW_PRODUCT: NewProductForm,
}


# --- the Triggers page -----------------------------------------------------------------------


def _triggers_context(**forms_given: forms.Form) -> dict:
    return {
        "advisory_form": forms_given.get(Trigger.SECURITY) or AdvisoryForm(),
        "ecosystem_form": forms_given.get(Trigger.ECOSYSTEM) or EcosystemForm(),
        "product_form": forms_given.get(Trigger.NEW_PRODUCT) or NewProductForm(),
        "checks": UpstreamCheck.objects.select_related("image", "build")[:RECENT_CHECKS],
        "statuses": refresh.refresh_status(),
        "refresh_days": refresh.refresh_days(),
        "margin_days": refresh.refresh_margin_days(),
        "advisories": SecurityAdvisory.objects.select_related("created_by").prefetch_related(
            "images"
        )[:20],
        "today": timezone.localdate(),
    }


@require_GET
@permission_required(roles.RUN_BUILDS, raise_exception=True)
def triggers_page(request: HttpRequest) -> HttpResponse:
    return render(request, "lifecycle/triggers/page.html", _triggers_context())


@require_POST
@permission_required(roles.RUN_BUILDS, raise_exception=True)
def bulk_rebuild(request: HttpRequest) -> HttpResponse:
    """Step 1 (no `confirm`): show the images to rebuild. Step 2 (`confirm=yes`): queue."""
    kind = request.POST.get("kind", "")
    if kind not in FORMS:
        messages.error(request, "Unknown trigger.")
        return redirect("lifecycle:triggers")
    form = FORMS[kind](request.POST)
    if not form.is_valid():
        return render(
            request, "lifecycle/triggers/page.html", _triggers_context(**{kind: form}), status=400
        )
    data = form.cleaned_data
    if kind == Trigger.SECURITY:
        matches = refresh.match_advisory(data["packages"], data["fixed_version"])
        rows = [(m.image, m.summary) for m in matches]
        reason = f"Security advisory {data['advisory_id']}"
    else:
        reason = (
            refresh.ecosystem_reason(data["package_version"])
            if kind == Trigger.ECOSYSTEM
            else refresh.new_product_reason(data["note"])
        )
        rows = [(image, "") for image in refresh.live_images().order_by("kind", "label")]

    confirmed = request.POST.get("confirm") == "yes"
    chosen = ConfirmedImagesForm(request.POST) if confirmed else None
    if chosen is None or not chosen.is_valid():
        return render(
            request,
            "lifecycle/triggers/confirm.html",
            {
                "kind": kind,
                "kind_label": Trigger(kind).label,
                "form": form,
                "chosen": chosen,
                "rows": [(image, note, refresh.build_arches(image)) for image, note in rows],
                "reason": reason,
            },
            status=400 if chosen is not None else 200,
        )

    ids = [image.pk for image in chosen.cleaned_data["image"]]
    if kind == Trigger.SECURITY:
        advisory, results = refresh.rebuild_for_advisory(
            data["advisory_id"],
            data["packages"],
            data["fixed_version"],
            image_ids=ids,
            user=request.user,
        )
        messages.success(
            request,
            f"{advisory.advisory_id}: {advisory.images.count()} image(s) matched, "
            f"{sum(r.created for r in results)} build(s) queued.",
        )
    else:
        results = refresh.rebuild_all(trigger=kind, reason=reason, image_ids=ids, user=request.user)
        messages.success(
            request,
            f"{Trigger(kind).label}: {sum(r.created for r in results)} build(s) queued, "
            f"{sum(not r.created for r in results)} already queued or running.",
        )
    return redirect("lifecycle:triggers")


# --- deprecation panel -------------------------------------------------------------------------


def _panel(request: HttpRequest, image: Image, form: DeprecationForm | None = None, status=200):
    plan = deprecation.plan_for(image)
    if form is None:
        form = DeprecationForm(
            initial={
                "date": plan.date,
                "replacement": plan.replacement.label if plan.replacement else None,
            }
        )
    context = {
        "image": image,
        "plan": plan,
        "form": form,
        "can_manage_deprecation": request.user.has_perm(roles.MANAGE_DEPRECATION),
        "editable": image.state in (ImageState.ACTIVE, ImageState.DEPRECATION_SCHEDULED),
        "lead_days": deprecation.notice_lead_days(),
        "retention_days": deprecation.retention_days(),
        "cloud": deprecation.cloud_status(image),
    }
    template = "lifecycle/triggers/deprecation_panel.html"
    if not partial_request(request):
        template = "lifecycle/triggers/deprecation_page.html"
    return render(request, template, context, status=status)


@require_GET
def deprecation_panel(request: HttpRequest, label: str) -> HttpResponse:
    image = get_object_or_404(
        Image.objects.select_related("upstream", "base_image__upstream", "replacement"),
        label=label,
    )
    return _panel(request, image)


@require_POST
@permission_required(roles.MANAGE_DEPRECATION, raise_exception=True)
def deprecation_set(request: HttpRequest, label: str) -> HttpResponse:
    image = get_object_or_404(Image, label=label)
    form = DeprecationForm(request.POST)
    if form.is_valid():
        try:
            image = deprecation.set_deprecation_date(
                image,
                form.cleaned_data["date"],
                reason=form.cleaned_data["reason"],
                user=request.user,
                replacement=form.cleaned_data["replacement"],
            )
        except ValidationError as exc:
            if hasattr(exc, "error_dict"):
                for field, errors in exc.error_dict.items():
                    form.add_error(field if field in form.fields else None, errors)
            else:
                form.add_error(None, exc)
    if not form.is_valid():
        return _panel(request, image, form, status=400)
    if partial_request(request):
        image = Image.objects.select_related("upstream", "base_image__upstream", "replacement").get(
            pk=image.pk
        )
        response = _panel(request, image)
        if request.htmx.current_url_abs_path != image.get_absolute_url():  # type: ignore[attr-defined]
            return response  # the deprecation page: the panel is all there is
        # Out of band, the image page's timeline and audit log, which the new date changed.
        changed = {
            **image_timeline(image),
            "oob": True,
            "image": image,
            "builds": None,
            "audit_entries": image.audit_entries.select_related("actor")[:20],
        }
        response.content += (
            render_to_string("lifecycle/timeline/image.html", changed, request).encode()
            + render_to_string("catalog/image_changed.html", changed, request).encode()
        )
        return response
    messages.success(request, f"Deprecation date of {image.label} set to {image.deprecation_date}.")
    return redirect(image.get_absolute_url())


@require_GET
def replacement_options(request: HttpRequest, label: str) -> HttpResponse:
    """The replacement field's suggestions: offered images whose label or name holds what
    was typed, REPLACEMENT_SUGGESTIONS at most (the form checks the label it gets anyway)."""
    image = get_object_or_404(Image, label=label)
    typed = request.GET.get("replacement", "").strip()[:100]
    candidates = Image.objects.filter(state__in=deprecation.OFFERED).exclude(pk=image.pk)
    if typed:
        candidates = candidates.filter(Q(label__icontains=typed) | Q(name__icontains=typed))
    return render(
        request,
        "lifecycle/triggers/replacement_options.html",
        {"candidates": candidates.order_by("label")[:REPLACEMENT_SUGGESTIONS]},
    )


# --- version page: advisories ------------------------------------------------------------------


@require_GET
def version_advisories(request: HttpRequest, version_id: int) -> HttpResponse:
    version = get_object_or_404(
        ImageVersion.objects.select_related("image__base_image"), pk=version_id
    )
    context = {"version": version, "advisories": refresh.advisories_for(version)}
    template = "lifecycle/triggers/version_advisories.html"
    if not partial_request(request):
        template = "lifecycle/triggers/version_advisories_page.html"
    return render(request, template, context)
