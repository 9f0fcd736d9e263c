"""Package manifests of built images and the difference between two of them."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class ManifestDiff:
    """Packages added, removed and changed (name, old version, new version), each by name."""

    added: list[dict] = field(default_factory=list)
    removed: list[dict] = field(default_factory=list)
    changed: list[tuple[str, str, str]] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        """True when both manifests list the same packages at the same versions."""
        return not (self.added or self.removed or self.changed)


def _keyed(manifest: list[dict], multi_arch: set[str]) -> dict[str, dict]:
    # Multi-arch images may list a name twice (libc6 amd64 and i386); keep those apart.
    return {
        f"{p['name']}:{p.get('arch', '')}" if p["name"] in multi_arch else p["name"]: p
        for p in manifest
    }


def _multi_arch_names(manifest: list[dict]) -> set[str]:
    seen: set[str] = set()
    repeated: set[str] = set()
    for package in manifest:
        (repeated if package["name"] in seen else seen).add(package["name"])
    return repeated


def diff_manifests(old: list[dict], new: list[dict]) -> ManifestDiff:
    """Compare two manifests (lists of {name, version, arch}); results are sorted by name.

    A name installed for several architectures (in either manifest) is compared per
    architecture and reported as ``name:arch`` in ``changed``.
    """
    multi_arch = _multi_arch_names(old) | _multi_arch_names(new)
    before, after = _keyed(old, multi_arch), _keyed(new, multi_arch)
    added = [after[name] for name in sorted(after.keys() - before.keys())]
    removed = [before[name] for name in sorted(before.keys() - after.keys())]
    changed = [
        (name, before[name]["version"], after[name]["version"])
        for name in sorted(before.keys() & after.keys())
        if before[name]["version"] != after[name]["version"]
    ]
    return ManifestDiff(added=added, removed=removed, changed=changed)
