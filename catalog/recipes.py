"""The parameters each recipe step type takes, their validation and a one-line summary.

Steps are stored structured (a type plus parameters). Validation returns errors per parameter
so that the recipe editor can show each next to its field. Secrets are never stored: a step
refers to one by name as `${secret:NAME}` and the build resolves it from the environment.
Only names on `RECIPE_SECRETS` may be used; a step naming any other is refused here, when it
is saved (and again by the build, see builds/recipe_secrets.py).

The build's own checks of what a step reaches outside the image live here too, so that the
editor refuses a step the build would refuse: an upload source must stay inside the factory's
files folder (`file_in_files_dir`), a download must be from an allowed host and never from
the metadata service or any link-local address (`check_download_host`). The build runs them
again (a file may be gone, the allowed hosts may change), and also requires the file to exist,
which the editor does not: the files folder of the web server may not be the workers'.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from django.conf import settings

from catalog.choices import StepType
from catalog.templatetags.durations import duration

PACKAGE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.+_:@-]*$")
UNIT_NAME = re.compile(r"^[A-Za-z0-9@._:-]+\.(service|timer|socket|path|target|mount)$")
SECRET_REF = re.compile(r"\$\{secret:([A-Za-z_][A-Za-z0-9_]*)\}")
SHA256 = re.compile(r"^[0-9a-f]{64}$")
MODE = re.compile(r"^0?[0-7]{3,4}$")
MAX_STEP_TIMEOUT_SECONDS = 24 * 3600
# The metadata service of a Scaleway instance (a worker's own, with its user data), by name.
METADATA_HOSTS = frozenset({"169.254.42.42", "fd00:42::42", "metadata.scaleway.com"})


@dataclass(frozen=True)
class Param:
    """One parameter of a step type."""

    name: str
    # "str", "text", "packages", "path", "file", "url", "sha256", "mode", "int", "unit"
    kind: str
    required: bool = True
    help: str = ""


STEP_PARAMS: dict[str, tuple[Param, ...]] = {
    StepType.UPDATE_PACKAGES: (),
    StepType.INSTALL_PACKAGES: (Param("packages", "packages", help="Space-separated names."),),
    StepType.REMOVE_PACKAGES: (Param("packages", "packages", help="Space-separated names."),),
    StepType.UPLOAD_FILE: (
        Param("source", "file", help="File in the factory's files folder."),
        Param("destination", "path", help="Absolute path in the image."),
        Param("mode", "mode", required=False, help="Octal, e.g. 0644."),
    ),
    StepType.WRITE_FILE: (
        Param("path", "path", help="Absolute path in the image."),
        Param("content", "text"),
        Param("mode", "mode", required=False, help="Octal, e.g. 0644."),
    ),
    StepType.DOWNLOAD_FILE: (
        Param("url", "url", help="http(s) URL on an allowed host."),
        Param("sha256", "sha256", help="Expected SHA-256 of the file."),
        Param("destination", "path", help="Absolute path in the image."),
        Param("mode", "mode", required=False),
    ),
    StepType.RUN_COMMAND: (
        Param("command", "text", help="Run with /bin/sh in the image."),
        Param(
            "timeout",
            "int",
            required=False,
            help="Seconds, at most 86400 (24 h); the build's default otherwise.",
        ),
    ),
    StepType.ENABLE_UNIT: (Param("unit", "unit", help="e.g. nginx.service"),),
    StepType.KERNEL_UPGRADE: (
        Param("package", "str", required=False, help="Kernel package; the distribution's default."),
    ),
    StepType.CLOUD_INIT_UPGRADE: (),
    StepType.ECOSYSTEM_PACKAGE: (
        Param("package", "str", help="e.g. scaleway-ecosystem"),
        Param("repository", "str", required=False, help="apt line or yum baseurl."),
        Param("file", "file", required=False, help="A .deb or .rpm in the factory's files folder."),
    ),
    StepType.UEFI_ENABLEMENT: (),
    StepType.FIRSTBOOT_SCRIPT: (Param("script", "text", help="Runs once, at the first boot."),),
}


def params_of(step_type: str) -> tuple[Param, ...]:
    return STEP_PARAMS.get(step_type, ())


def file_in_files_dir(files_dir: Path, source: str, *, must_exist: bool = True) -> Path:
    """The local file ``source`` names inside ``files_dir``; refuses paths escaping it."""
    if "\x00" in source:
        raise ValueError("the source holds a NUL character")
    base = files_dir.resolve()
    path = (base / source).resolve()
    if not path.is_relative_to(base):
        raise ValueError(f"source '{source}' is outside the files folder")
    if must_exist and not path.is_file():
        raise ValueError(f"source '{source}' does not exist in the files folder")
    return path


def check_download_host(url: str, allowed_hosts: Sequence[str] | set[str]) -> None:
    """Raise ValueError unless ``url`` is http(s) on one of ``allowed_hosts`` and is not the
    metadata service or another link-local address (whatever the list says)."""
    parsed = urlparse(url)
    host = (parsed.hostname or "").lower()
    if parsed.scheme not in ("http", "https"):
        raise ValueError(f"only http and https downloads are allowed, not '{parsed.scheme}'")
    try:
        link_local = ipaddress.ip_address(host).is_link_local
    except ValueError:
        link_local = False
    if link_local or host in METADATA_HOSTS:
        raise ValueError(f"host '{host}' is the metadata service or link-local")
    if host not in {h.lower() for h in allowed_hosts}:
        raise ValueError(f"host '{host}' is not in the allowed download hosts")


def _check(param: Param, value: object) -> tuple[object, str | None]:
    """Return the normalized value and an error message (or None)."""
    if param.kind == "packages":
        names = value.split() if isinstance(value, str) else value
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            return value, "Give package names separated by spaces."
        bad = [n for n in names if not PACKAGE_NAME.match(n)]
        if bad:
            return names, f"Not a valid package name: {', '.join(bad)}."
        if not names:
            return names, "Give at least one package."
        return names, None
    if param.kind == "int":
        try:
            number = int(value)  # type: ignore[call-overload]  # any value; errors caught
        except (TypeError, ValueError, OverflowError):
            return value, "Give a whole number of seconds."
        if number <= 0:
            return number, "Must be above zero."
        if number > MAX_STEP_TIMEOUT_SECONDS:
            return number, f"At most {MAX_STEP_TIMEOUT_SECONDS} seconds (24 h)."
        return number, None
    if not isinstance(value, str):
        return value, "Expected text."
    if param.kind == "path":
        if not value.startswith("/") or "\x00" in value or "/../" in f"{value}/":
            return value, "Give an absolute path inside the image, without '..'."
    elif param.kind == "file":
        if "\n" in value:
            return value, "One line only."
        try:
            file_in_files_dir(settings.FILES_DIR, value, must_exist=False)
        except (ValueError, OSError) as exc:
            return value, f"Name a file inside the factory's files folder: {exc}."
    elif param.kind == "url":
        try:
            parsed = urlparse(value)
            # Reading the port raises on one out of range.
            usable = parsed.scheme in ("http", "https") and bool(parsed.hostname)
            usable = usable and parsed.port != 0
        except ValueError:  # an unbalanced "[" in the host, a port out of range
            usable = False
        if not usable:
            return value, "Give an http:// or https:// URL."
        try:
            check_download_host(value, settings.UPSTREAM_ALLOWED_HOSTS)
        except ValueError as exc:
            return value, f"The build would refuse it: {exc} (UPSTREAM_ALLOWED_HOSTS)."
    elif param.kind == "sha256":
        value = value.strip().lower()
        if not SHA256.match(value):
            return value, "A SHA-256 is 64 hexadecimal characters."
    elif param.kind == "mode":
        if not MODE.match(value):
            return value, "Give an octal mode such as 0644."
    elif param.kind == "unit":
        if not UNIT_NAME.match(value):
            return value, "Give a unit name such as nginx.service."
    elif param.kind == "str" and ("\n" in value):
        return value, "One line only."
    return value, None


def clean_params(step_type: str, raw: dict) -> tuple[dict, dict[str, str]]:
    """Validate and normalize parameters; return (params, errors by parameter name)."""
    errors: dict[str, str] = {}
    if step_type not in STEP_PARAMS:
        return {}, {"type": f"Unknown step type {step_type!r}."}
    if not isinstance(raw, dict):
        return {}, {"params": "Parameters must be an object."}
    known = {p.name for p in STEP_PARAMS[step_type]}
    for extra in sorted(set(raw) - known):
        errors[extra] = "Not a parameter of this step type."
    cleaned: dict = {}
    for param in STEP_PARAMS[step_type]:
        value = raw.get(param.name)
        if value in (None, "", []):
            if param.required:
                errors[param.name] = "This parameter is required."
            continue
        value, error = _check(param, value)
        error = error or secret_refusal(secret_names({param.name: value}))
        if error:
            errors[param.name] = error
        cleaned[param.name] = value
    if step_type == StepType.ECOSYSTEM_PACKAGE and raw.get("repository") and raw.get("file"):
        errors["file"] = "Give a repository or a file, not both."
    return cleaned, errors


def validate_params(step_type: str, params: dict) -> dict[str, str]:
    return clean_params(step_type, params)[1]


def secret_names(params: dict) -> set[str]:
    """Names of the secrets a step refers to as ${secret:NAME}."""
    found: set[str] = set()
    for value in params.values():
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, str):
                found.update(SECRET_REF.findall(item))
    return found


def secret_refusal(names: Collection[str], allowed: Collection[str] | None = None) -> str | None:
    """Why these secrets may not be used, or None when every name is on the allow-list
    (``allowed``, by default ``RECIPE_SECRETS``). Names are not secret: values are."""
    allowed = settings.RECIPE_SECRETS if allowed is None else allowed
    refused = sorted(set(names) - set(allowed))
    if not refused:
        return None
    which = ", ".join(refused)
    verb = "is" if len(refused) == 1 else "are"
    plural = "" if len(refused) == 1 else "s"
    listed = ", ".join(sorted(allowed)) if allowed else "none (RECIPE_SECRETS is empty)"
    return f"Secret{plural} {which} {verb} not on RECIPE_SECRETS; allowed: {listed}."


def summarize(step_type: str, params: dict) -> str:
    p = params or {}
    match step_type:
        case StepType.INSTALL_PACKAGES | StepType.REMOVE_PACKAGES:
            return " ".join(p.get("packages", []))
        case StepType.UPLOAD_FILE:
            return f"{p.get('source', '')} → {p.get('destination', '')}"
        case StepType.WRITE_FILE:
            return p.get("path", "")
        case StepType.DOWNLOAD_FILE:
            return f"{p.get('url', '')} → {p.get('destination', '')}"
        case StepType.RUN_COMMAND:
            first = (p.get("command") or "").strip().splitlines()
            return first[0][:80] if first else ""
        case StepType.ENABLE_UNIT:
            return p.get("unit", "")
        case StepType.KERNEL_UPGRADE:
            return p.get("package", "distribution kernel")
        case StepType.ECOSYSTEM_PACKAGE:
            return p.get("package", "")
        case StepType.FIRSTBOOT_SCRIPT:
            first = (p.get("script") or "").strip().splitlines()
            return first[0][:80] if first else ""
    return ""


@dataclass(frozen=True)
class StepInWords:
    """One step of a recipe as a person reads it: its label and each parameter given."""

    label: str
    params: list[tuple[str, str, bool]]  # (name, value, multi-line)
    enabled: bool = True


PARAM_LABELS = {"sha256": "SHA-256", "url": "URL"}


def _secret_in_words(text: str) -> str:
    """A secret is stored as its name only; say so instead of showing the reference."""
    return SECRET_REF.sub(lambda m: f"[secret {m.group(1)}]", text)


def _value_in_words(param: Param, value: object) -> str:
    if param.kind == "packages" and isinstance(value, list):
        return ", ".join(str(v) for v in value)
    if param.kind == "int" and param.name == "timeout":
        try:
            return duration(int(value))  # type: ignore[call-overload]  # as stored
        except (TypeError, ValueError):
            pass
    return _secret_in_words(str(value))


def in_words(step: dict) -> StepInWords:
    """A step of a version's recipe as executed (`{"type", "params", "enabled"}`), in words:
    the step type's label and its parameters by name, secrets by name only. A type or a
    parameter this release no longer knows is still shown, under its stored name."""
    step_type = str(step.get("type", ""))
    label = StepType(step_type).label if step_type in StepType.values else step_type
    params = dict(step.get("params") or {})
    known = {p.name: p for p in params_of(step_type)}
    lines: list[tuple[str, str, bool]] = []
    for name in [*known, *(n for n in params if n not in known)]:
        value = params.get(name)
        if value in (None, "", []):
            continue
        param = known.get(name, Param(name, "str"))
        text = _value_in_words(param, value)
        title = PARAM_LABELS.get(name, name.replace("_", " ").capitalize())
        lines.append((title, text, param.kind == "text" or "\n" in text))
    return StepInWords(str(label), lines, bool(step.get("enabled", True)))
