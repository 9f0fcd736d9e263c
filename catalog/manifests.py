"""Comparing the package manifests of two versions (what changed in a rebuild)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class ManifestDiff:
    """Packages added, removed and changed between two manifests."""

    added: list[tuple[str, str]] = field(default_factory=list)
    removed: list[tuple[str, str]] = field(default_factory=list)
    changed: list[tuple[str, str, str]] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not (self.added or self.removed or self.changed)


def _versions(manifest: list[dict] | None) -> dict[str, str]:
    return {p["name"]: p.get("version", "") for p in manifest or [] if "name" in p}


def diff_manifests(old: list[dict] | None, new: list[dict] | None) -> ManifestDiff:
    before, after = _versions(old), _versions(new)
    return ManifestDiff(
        added=sorted((n, after[n]) for n in after.keys() - before.keys()),
        removed=sorted((n, before[n]) for n in before.keys() - after.keys()),
        changed=sorted(
            (n, before[n], after[n]) for n in before.keys() & after.keys() if before[n] != after[n]
        ),
    )
