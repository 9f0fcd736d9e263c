"""Package version ordering as the distributions themselves define it.

A security advisory says "fixed in 2.36-9+deb12u4"; whether an image's `2.36-9+deb12u10` is
older is not a question of string order. Debian-family images follow dpkg's rules
(`epoch:upstream-revision`, `~` before everything, letters before other characters, digit
runs compared as numbers); the RPM family follows rpmvercmp (alternating alphanumeric
segments, `~` sorts before and `^` after the base version). Both are written here from the
tools' documented algorithms, so that no external library decides which image is rebuilt.
"""

from __future__ import annotations

import functools
import re
import string
from collections.abc import Callable

from django.db import models

_DIGITS = frozenset(string.digits)
_LETTERS = frozenset(string.ascii_letters)
_ALNUM = _DIGITS | _LETTERS

# What a version given by a person may hold, in both families: an optional numeric epoch, then
# ASCII letters, digits and . + ~ ^ _ - :. ("²".isdigit() is true, and int() refuses it.)
VERSION_SYNTAX = re.compile(r"(?:[0-9]+:)?[A-Za-z0-9][A-Za-z0-9.+~^_:-]*", re.ASCII)
VERSION_HELP = (
    "ASCII letters, digits and . + ~ ^ _ - : only, after an optional numeric epoch "
    "(for example 1:2.36-9+deb12u10)."
)


def is_valid_version(value: str) -> bool:
    """True when `value` is a version both orderings can compare (see VERSION_SYNTAX)."""
    return bool(VERSION_SYNTAX.fullmatch(value))


def _epoch(head: str) -> int | None:
    """The epoch before a colon, or None when `head` is not one (ASCII digits only)."""
    return int(head) if head.isascii() and head.isdigit() else None


class Scheme(models.TextChoices):
    """The version ordering a distribution uses."""

    DPKG = "dpkg", "dpkg (Debian, Ubuntu)"
    RPM = "rpm", "rpm (RHEL family, Fedora)"


# Lower-case distribution names (or their first word) -> ordering. Arch Linux's vercmp is
# rpmvercmp's descendant, so its packages order by the rpm rules too.
_SCHEMES: dict[str, Scheme] = {
    "debian": Scheme.DPKG,
    "ubuntu": Scheme.DPKG,
    "rocky": Scheme.RPM,
    "almalinux": Scheme.RPM,
    "alma": Scheme.RPM,
    "centos": Scheme.RPM,
    "fedora": Scheme.RPM,
    "rhel": Scheme.RPM,
    "red": Scheme.RPM,  # "Red Hat Enterprise Linux"
    "oracle": Scheme.RPM,
    "opensuse": Scheme.RPM,
    "arch": Scheme.RPM,
}


def scheme_for(distribution: str) -> Scheme | None:
    """The ordering of a distribution's packages ("Rocky Linux" -> rpm), None if unknown."""
    name = distribution.strip().lower()
    if not name:
        return None
    return _SCHEMES.get(name) or _SCHEMES.get(name.replace("_", " ").split()[0])


# --- dpkg -----------------------------------------------------------------------------------


def _dpkg_order(text: str, index: int) -> int:
    """dpkg's weight of one character: end and digits 0, ~ -1, letters first, then others."""
    if index >= len(text):
        return 0
    char = text[index]
    if char in _DIGITS:
        return 0
    if char in _LETTERS:
        return ord(char)
    if char == "~":
        return -1
    return ord(char) + 256


def _dpkg_part(a: str, b: str) -> int:
    """dpkg's verrevcmp: compare an upstream version or a revision."""
    i = j = 0
    while i < len(a) or j < len(b):
        first_diff = 0
        while (i < len(a) and a[i] not in _DIGITS) or (j < len(b) and b[j] not in _DIGITS):
            ac, bc = _dpkg_order(a, i), _dpkg_order(b, j)
            if ac != bc:
                return ac - bc
            i += 1
            j += 1
        while i < len(a) and a[i] == "0":
            i += 1
        while j < len(b) and b[j] == "0":
            j += 1
        while i < len(a) and a[i] in _DIGITS and j < len(b) and b[j] in _DIGITS:
            if not first_diff:
                first_diff = ord(a[i]) - ord(b[j])
            i += 1
            j += 1
        # The longer digit run (leading zeros skipped) is the larger number.
        if i < len(a) and a[i] in _DIGITS:
            return 1
        if j < len(b) and b[j] in _DIGITS:
            return -1
        if first_diff:
            return first_diff
    return 0


def _split_dpkg(version: str) -> tuple[int, str, str]:
    """`[epoch:]upstream[-revision]`: the revision follows the *last* hyphen."""
    version = version.strip()
    epoch = 0
    head, sep, rest = version.partition(":")
    if sep and (found := _epoch(head)) is not None:
        epoch, version = found, rest
    upstream, sep, revision = version.rpartition("-")
    if not sep:
        upstream, revision = version, ""
    return epoch, upstream, revision


def compare_dpkg(a: str, b: str) -> int:
    """Negative, zero or positive as `a` sorts before, with or after `b` for dpkg."""
    ea, ua, ra = _split_dpkg(a)
    eb, ub, rb = _split_dpkg(b)
    if ea != eb:
        return -1 if ea < eb else 1
    result = _dpkg_part(ua, ub) or _dpkg_part(ra, rb)
    return (result > 0) - (result < 0)


# --- rpm ------------------------------------------------------------------------------------


def rpmvercmp(a: str, b: str) -> int:
    """rpm's segment comparison of one version or release string (rpm >= 4.15 with ^)."""
    if a == b:
        return 0
    i = j = 0
    while i < len(a) or j < len(b):
        while i < len(a) and a[i] not in _ALNUM and a[i] not in "~^":
            i += 1
        while j < len(b) and b[j] not in _ALNUM and b[j] not in "~^":
            j += 1
        # A tilde sorts before everything, even the end of the string.
        a_tilde, b_tilde = i < len(a) and a[i] == "~", j < len(b) and b[j] == "~"
        if a_tilde or b_tilde:
            if not a_tilde:
                return 1
            if not b_tilde:
                return -1
            i += 1
            j += 1
            continue
        # A caret sorts after the end of the string (1.0^post > 1.0) but before anything else.
        a_caret, b_caret = i < len(a) and a[i] == "^", j < len(b) and b[j] == "^"
        if a_caret or b_caret:
            if i >= len(a):
                return -1
            if j >= len(b):
                return 1
            if not a_caret:
                return 1
            if not b_caret:
                return -1
            i += 1
            j += 1
            continue
        if i >= len(a) or j >= len(b):
            break
        start_a, start_b = i, j
        numeric = a[i] in _DIGITS
        kind = _DIGITS if numeric else _LETTERS
        while i < len(a) and a[i] in kind:
            i += 1
        while j < len(b) and b[j] in kind:
            j += 1
        seg_a, seg_b = a[start_a:i], b[start_b:j]
        if not seg_b:
            # Segments of different kinds: a number is newer than letters.
            return 1 if numeric else -1
        if numeric:
            seg_a, seg_b = seg_a.lstrip("0"), seg_b.lstrip("0")
            if len(seg_a) != len(seg_b):
                return 1 if len(seg_a) > len(seg_b) else -1
        if seg_a != seg_b:
            return 1 if seg_a > seg_b else -1
    if i >= len(a) and j >= len(b):
        return 0
    # Whichever still has characters left is newer.
    return -1 if i >= len(a) else 1


def _split_rpm(version: str) -> tuple[int, str, str | None]:
    """`[epoch:]version[-release]`; a missing release is None, not empty."""
    version = version.strip()
    epoch = 0
    head, sep, rest = version.partition(":")
    if sep and (found := _epoch(head)) is not None:
        epoch, version = found, rest
    ver, sep, release = version.rpartition("-")
    if not sep:
        return epoch, version, None
    return epoch, ver, release


def compare_rpm(a: str, b: str) -> int:
    """Negative, zero or positive as `a` sorts before, with or after `b` for rpm.

    As rpm does when one side has no release (an advisory saying "fixed in 2.34"), only
    epoch and version are compared then.
    """
    ea, va, ra = _split_rpm(a)
    eb, vb, rb = _split_rpm(b)
    if ea != eb:
        return -1 if ea < eb else 1
    result = rpmvercmp(va, vb)
    if result == 0 and ra is not None and rb is not None:
        result = rpmvercmp(ra, rb)
    return result


# --- both -----------------------------------------------------------------------------------

_COMPARE: dict[str, Callable[[str, str], int]] = {
    Scheme.DPKG: compare_dpkg,
    Scheme.RPM: compare_rpm,
}


def compare(scheme: str, a: str, b: str) -> int:
    """Compare two versions with a scheme's rules: <0, 0 or >0."""
    return _COMPARE[Scheme(scheme)](a, b)


def is_older(scheme: str, installed: str, fixed: str) -> bool:
    """True when `installed` sorts strictly before `fixed`."""
    return compare(scheme, installed, fixed) < 0


def sort_key(scheme: str) -> Callable[[str], object]:
    """A `key=` for `sorted()` that orders version strings by the scheme's rules."""
    return functools.cmp_to_key(_COMPARE[Scheme(scheme)])
