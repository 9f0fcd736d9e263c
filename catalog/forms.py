"""Forms of the catalogue pages."""

from __future__ import annotations

from typing import Any

from django import forms

from catalog import dates
from catalog.choices import StepType, StorageType
from catalog.models import UpstreamLifecycle, validate_storage_types
from catalog.recipes import Param, clean_params, params_of


class StepForm(forms.Form):
    """A recipe step: its type, then one field per parameter of that type.

    The fields are built from the step type's parameter list, and the parameters are
    validated by catalog.recipes so that the editor and the builds agree on what is valid.
    """

    type = forms.ChoiceField(choices=StepType.choices)
    enabled = forms.BooleanField(required=False, initial=True)

    def __init__(self, *args: object, step_type: str | None = None, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        chosen = step_type or self.data.get("type") or self.initial.get("type")
        self.step_type = chosen if chosen in StepType.values else StepType.INSTALL_PACKAGES
        self.fields["type"].initial = self.step_type
        for param in params_of(self.step_type):
            self.fields[f"p_{param.name}"] = self._field_for(param)

    @staticmethod
    def _field_for(param: Param) -> forms.Field:
        common: dict[str, Any] = {
            "required": False,
            "label": param.name.replace("_", " "),
            "help_text": param.help,
        }
        if param.kind == "text":
            return forms.CharField(widget=forms.Textarea(attrs={"rows": 4}), strip=False, **common)
        if param.kind == "int":
            return forms.IntegerField(**common)
        return forms.CharField(**common)

    @classmethod
    def initial_for(cls, step_type: str, params: dict, enabled: bool) -> dict:
        initial: dict = {"type": step_type, "enabled": enabled}
        for param in params_of(step_type):
            value = params.get(param.name, "")
            initial[f"p_{param.name}"] = " ".join(value) if isinstance(value, list) else value
        return initial

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        assert data is not None  # Form.clean returns cleaned_data
        raw = {
            p.name: data.get(f"p_{p.name}")
            for p in params_of(self.step_type)
            if data.get(f"p_{p.name}") not in (None, "")
        }
        params, errors = clean_params(self.step_type, raw)
        for name, message in errors.items():
            key = f"p_{name}" if f"p_{name}" in self.fields else None
            self.add_error(key, message)
        data["params"] = params
        return data

    def param_fields(self) -> list[forms.BoundField]:
        return [self[name] for name in self.fields if name.startswith("p_")]


class LifecycleDateForm(forms.Form):
    """A manager sets (or clears) one upstream date; the import will not overwrite it."""

    field = forms.ChoiceField(
        choices=[
            ("release_date", "Release date"),
            ("active_support_end", "End of active support"),
            ("security_support_end", "End of standard security support (upstream EOL)"),
            ("extended_support_end", "End of extended support"),
        ]
    )
    value = forms.DateField(
        required=False,
        validators=[dates.validate_in_range],
        widget=forms.DateInput(attrs=dates.widget_attrs()),
    )
    reason = forms.CharField(max_length=500, widget=forms.TextInput(attrs={"size": 40}))

    def clean_field(self) -> str:
        value = self.cleaned_data["field"]
        if value not in UpstreamLifecycle.DATE_FIELDS:
            raise forms.ValidationError("Unknown date.")
        return value


STORAGE_TYPE_LABELS = {
    StorageType.LOCAL: (
        "Local storage (instance_local): an image over a local volume, for the types with "
        "local storage"
    ),
    StorageType.SBS: (
        "Block Storage (instance_sbs): an image over a Block Storage volume, for every type "
        "with Block Storage, including those without local storage"
    ),
}


class StorageTypesForm(forms.Form):
    """The storage types an image's versions are published with in every zone: one or both."""

    storage_types = forms.MultipleChoiceField(
        label="Publish each version in every zone as",
        choices=[(value, STORAGE_TYPE_LABELS[StorageType(value)]) for value in StorageType.values],
        widget=forms.CheckboxSelectMultiple,
        error_messages={"required": "Choose at least one storage type."},
    )

    def clean_storage_types(self) -> list[str]:
        chosen = set(self.cleaned_data["storage_types"])
        # In the catalogue's own order, so that the same choice is always the same value.
        value = [v for v in StorageType.values if v in chosen]
        validate_storage_types(value)
        return value
