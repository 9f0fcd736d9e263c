"""Recipe secrets: the allow-list, reading them at build time, and masking them in logs.

A step refers to a secret as ``${secret:NAME}``. Only names on ``RECIPE_SECRETS`` may be used:
the recipe editor refuses any other name (``catalog.recipes``) and the build refuses it again
before it reads the environment, so a recipe never reaches the worker's own credentials
(``SCW_SECRET_KEY``, ``DJANGO_SECRET_KEY``...). A value shorter than ``MIN_LENGTH`` is refused
too: it could not be masked without masking ordinary text of the log.

The allow-list is the control; masking is best effort. ``Masker`` replaces the value and the
forms a step most easily prints it in (reversed, hex, URL-encoded, base64 with or without
the newline ``echo`` adds, and the value's part of a longer base64 stream). It cannot catch
a value split across lines or transformed in any other way.
"""

from __future__ import annotations

import base64
import functools
import os
import re
from collections.abc import Callable, Collection, Iterable, Mapping
from urllib.parse import quote, quote_plus

from catalog import recipes

MIN_LENGTH = 8
_PERCENT_ESCAPE = re.compile(r"%[0-9A-F]{2}")


class SecretError(Exception):
    """A recipe needs a secret that may not be used or cannot be read; names only, no values."""


def resolve(
    names: Collection[str],
    environ: Mapping[str, str] = os.environ,
    allowed: Collection[str] | None = None,
) -> dict[str, str]:
    """The values of the secrets ``names``, read from ``environ``.

    Raises SecretError, before reading anything, for a name not on the allow-list
    (``allowed``, by default ``RECIPE_SECRETS``); then for a name missing from ``environ`` or
    whose value is shorter than MIN_LENGTH. Messages name the secrets, never their values.
    """
    refusal = recipes.secret_refusal(names, allowed)
    if refusal:
        raise SecretError(refusal)
    missing = sorted(n for n in names if n not in environ)
    if missing:
        raise SecretError(
            "The recipe needs secret(s) not set in the worker's environment: " + ", ".join(missing)
        )
    short = sorted(n for n in names if len(environ[n]) < MIN_LENGTH)
    if short:
        raise SecretError(
            f"Secret(s) shorter than {MIN_LENGTH} characters in the worker's environment: "
            f"{', '.join(short)}. A value that short could not be masked in the build log."
        )
    return {name: environ[name] for name in names}


def _base64_forms(data: bytes) -> set[str]:
    forms: set[str] = set()
    for encode in (base64.b64encode, base64.urlsafe_b64encode):
        for whole in (data, data + b"\n"):  # `echo $SECRET | base64` encodes the newline too
            text = encode(whole).decode()
            forms |= {text, text.rstrip("=")}
        # Inside a longer stream the value starts at one of three offsets in a 3-byte group.
        # Keep the characters made of the value's bits only: the first ones mix with what
        # comes before, the last ones with what comes after.
        for offset in range(3):
            text = encode(bytes(offset) + data).decode()
            start = (offset * 8 + 5) // 6
            end = (offset + len(data)) * 8 // 6
            forms.add(text[start:end])
    return forms


def _url_forms(value: str) -> set[str]:
    forms = {quote(value), quote(value, safe=""), quote_plus(value), quote_plus(value, safe="")}
    forms |= {_PERCENT_ESCAPE.sub(lambda m: m.group().lower(), form) for form in forms}
    return forms


def encoded_forms(value: str) -> set[str]:
    """The value and the forms of it that Masker catches (for values of MIN_LENGTH or more)."""
    data = value.encode()
    forms = {value, value[::-1], data.hex(), data.hex().upper()}
    return forms | _url_forms(value) | _base64_forms(data)


class Masker:
    """Replaces every secret value, and its common encodings, by ``replacement``.

    The forms are computed once, when it is made; a call does one substring search per form,
    which is cheap enough for every log line. Values shorter than MIN_LENGTH (which no build
    accepts) are masked as they are, without their encodings: those would match ordinary text.
    """

    def __init__(self, values: Iterable[str], replacement: str = "****") -> None:
        forms: set[str] = set()
        for value in values:
            if len(value) >= MIN_LENGTH:
                forms |= encoded_forms(value)
            elif value:
                forms.add(value)
        self.forms = tuple(sorted(forms, key=len, reverse=True))
        self.replacement = replacement

    def __call__(self, text: str) -> str:
        spans: list[tuple[int, int]] = []
        for form in self.forms:
            start = text.find(form)
            while start != -1:
                spans.append((start, start + len(form)))
                start = text.find(form, start + 1)
        if not spans:
            return text
        # Overlapping matches (two secrets sharing characters) are masked as one stretch.
        spans.sort()
        parts: list[str] = []
        kept_from = 0
        start, end = spans[0]
        for next_start, next_end in spans[1:]:
            if next_start <= end:
                end = max(end, next_end)
                continue
            parts += [text[kept_from:start], self.replacement]
            kept_from, start, end = end, next_start, next_end
        parts += [text[kept_from:start], self.replacement, text[end:]]
        return "".join(parts)


@functools.lru_cache(maxsize=32)
def _masker(values: frozenset[str], replacement: str) -> Masker:
    return Masker(values, replacement)


def masker_for(values: Iterable[str], replacement: str = "****") -> Callable[[str], str]:
    """A Masker for these values, made once per set of values (a stage logs many lines)."""
    return _masker(frozenset(v for v in values if v), replacement)
