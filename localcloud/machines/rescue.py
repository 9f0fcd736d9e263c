"""The rescue system: a kernel and a small initramfs with busybox and an SSH server.

On Scaleway a server with `boot_type: "rescue"` boots a Linux in RAM with its own disk
attached, and the customer SSHes in with their keys to repair that disk. The QEMU backend
boots the two files returned by `rescue_boot_files()` with `-kernel`/`-initrd`.

They are built from what the host already has (its kernel and modules, busybox, dropbear), so
nothing has to be downloaded, and cached: a build takes seconds, a boot must not pay for it.
The initramfs is a gzip'd newc cpio archive written in Python, which needs neither root nor
loop mounts and can still hold device nodes such as /dev/console. The scripts that run inside
(/init, the DHCP hook, the metadata key fetcher, the "booted" signal) live in rescue_files/.

Layout of the archive: merged /usr (/bin, /sbin, /lib, /lib64 are symlinks into /usr), so
binaries and the libraries `ldd` reports keep the paths the dynamic loader expects.
"""

from __future__ import annotations

import contextlib
import fcntl
import gzip
import hashlib
import io
import json
import logging
import lzma
import os
import re
import shutil
import stat
import subprocess
import tempfile
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

log = logging.getLogger(__name__)

RESCUE_FILES = Path(__file__).with_name("rescue_files")
DEFAULT_CACHE_DIR = Path("/var/cache/localcloud-rescue")
BOOT_DIR = Path("/boot")
MODULES_ROOT = Path("/lib/modules")
SEARCH_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

# Kernel modules in load order as (name, required); modules.dep adds each one's dependencies
# before it. The crc32c and crct10dif providers come first because ext4/jbd2 and sd_mod only
# ask for them through the crypto API (modules.softdep), which modules.dep does not list.
MODULES: tuple[tuple[str, bool], ...] = (
    ("crc32c_intel", False),
    ("crc32c_generic", False),
    ("crct10dif_pclmul", False),
    ("crct10dif_generic", False),
    ("virtio_pci", True),
    ("virtio_blk", True),
    ("virtio_net", True),
    ("virtio_scsi", False),
    ("sd_mod", False),
    ("virtio_rng", False),
    ("ext4", True),
    ("xfs", False),
    ("vfat", False),
    ("nls_cp437", False),
    ("nls_ascii", False),
    ("nls_utf8", False),
    ("nls_iso8859_1", False),
    ("evdev", False),
    ("button", False),
)

# Host binaries copied in, as (name searched in SEARCH_PATH, path in the archive, required).
BINARIES: tuple[tuple[str, str, bool], ...] = (
    ("busybox", "usr/bin/busybox", True),
    ("dropbear", "usr/sbin/dropbear", True),
    ("dropbearkey", "usr/bin/dropbearkey", True),
    ("dbclient", "usr/bin/dbclient", False),
)

# rescue_files/<name> -> (path in the archive, mode).
SCRIPTS: dict[str, tuple[str, int]] = {
    "init": ("init", 0o755),
    "fetch-keys": ("etc/rescue/fetch-keys", 0o755),
    "signal-booted": ("etc/rescue/signal-booted", 0o755),
    "udhcpc.script": ("etc/rescue/udhcpc.script", 0o755),
    "poweroff-button": ("etc/acpi/PWRF/00000080", 0o755),
    "inittab": ("etc/inittab", 0o644),
    "profile": ("etc/profile", 0o644),
    "motd": ("etc/motd", 0o644),
    "acpid.conf": ("etc/acpid.conf", 0o644),
}

# Small files written as they are: the identity of the system and root's account.
ETC_FILES: dict[str, tuple[str, int]] = {
    "etc/scw-rescue": ("rescue\n", 0o644),
    "etc/hostname": ("rescue\n", 0o644),
    "etc/hosts": ("127.0.0.1\tlocalhost\n127.0.1.1\trescue\n", 0o644),
    "etc/passwd": ("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534::/:/bin/false\n", 0o644),
    "etc/shadow": ("root:*:19000:0:99999:7:::\nnobody:*:19000:0:99999:7:::\n", 0o600),
    "etc/group": ("root:x:0:\ntty:x:5:\nnogroup:x:65534:\n", 0o644),
    "etc/shells": ("/bin/sh\n/bin/ash\n", 0o644),
    "etc/nsswitch.conf": ("passwd: files\ngroup: files\nshadow: files\nhosts: files dns\n", 0o644),
    "etc/os-release": ('NAME="localcloud rescue"\nID=localcloud-rescue\n', 0o644),
}

# Top-level symlinks of the merged-/usr layout.
USR_MERGED = ("bin", "sbin", "lib", "lib64")


class RescueBuildError(RuntimeError):
    """The host lacks something the rescue system needs (a kernel, busybox, dropbear, ...)."""


# --- the host's kernel, binaries and modules ------------------------------------------------


def _version_key(version: str) -> tuple[Any, ...]:
    """Sort key for kernel versions: numbers compare as numbers (6.1.0-10 < 6.1.0-9 is wrong)."""
    return tuple(
        (int(part), "") if part.isdigit() else (-1, part) for part in re.split(r"(\d+)", version)
    )


def host_kernel(boot_dir: Path = BOOT_DIR, modules_root: Path = MODULES_ROOT) -> tuple[str, Path]:
    """The newest `/boot/vmlinuz-<version>` that has its modules in `/lib/modules/<version>`.

    A kernel without modules cannot reach a virtio disk (virtio_blk is a module on Debian).
    """
    candidates = []
    for kernel in boot_dir.glob("vmlinuz-*"):
        version = kernel.name.removeprefix("vmlinuz-")
        if (modules_root / version / "modules.dep").is_file():
            candidates.append((version, kernel))
    if not candidates:
        raise RescueBuildError(
            f"no {boot_dir}/vmlinuz-<version> with {modules_root}/<version>: "
            "install linux-image-amd64"
        )
    return max(candidates, key=lambda item: _version_key(item[0]))


def _find_binary(name: str, required: bool) -> Path | None:
    found = shutil.which(name, path=SEARCH_PATH)
    if found is None and required:
        package = "dropbear-bin" if name.startswith("dropbear") else name
        raise RescueBuildError(f"{name} not found: apt-get install {package}")
    return Path(found).resolve() if found else None


def _binary_version(name: str, path: Path) -> str:
    """The version line a binary prints: part of the cache key next to its digest."""
    args = {"busybox": [str(path)], "dropbear": [str(path), "-V"]}.get(name)
    if args is None:
        return ""
    result = subprocess.run(args, capture_output=True, text=True, timeout=30, check=False)
    lines = (result.stdout + result.stderr).strip().splitlines()
    return lines[0] if lines else ""


def shared_libraries(binary: Path) -> list[Path]:
    """The shared libraries (and the dynamic loader) `ldd` resolves for `binary`.

    Empty for a static binary (busybox-static), which is why that one is preferred when the
    host has it.
    """
    result = subprocess.run(
        ["ldd", str(binary)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        env={**os.environ, "LC_ALL": "C"},
    )
    if result.returncode != 0 or "not a dynamic executable" in result.stdout + result.stderr:
        return []
    libraries = []
    for line in result.stdout.splitlines():
        match = re.search(r"(?:=>\s*)?(/\S+)\s+\(0x", line)
        if match:
            libraries.append(Path(match.group(1)))
        elif "not found" in line:
            raise RescueBuildError(f"{binary}: missing library: {line.strip()}")
    return libraries


def _module_name(path: str) -> str:
    """`kernel/fs/nls/nls_iso8859-1.ko.xz` -> `nls_iso8859_1` (module names use `_`)."""
    name = path.rsplit("/", 1)[-1]
    name = re.sub(r"\.ko(\.(xz|gz|zst))?$", "", name)
    return name.replace("-", "_")


def module_load_order(modules_dir: Path, wanted: Iterable[tuple[str, bool]] = MODULES) -> list[str]:
    """Paths (relative to `modules_dir`) to insmod in order, dependencies first.

    Built-in modules are skipped; a missing optional module is skipped too, a missing
    required one is an error.
    """
    deps: dict[str, list[str]] = {}
    by_name: dict[str, str] = {}
    for line in (modules_dir / "modules.dep").read_text().splitlines():
        if ":" not in line:
            continue
        module, _, rest = line.partition(":")
        deps[module] = rest.split()
        by_name[_module_name(module)] = module
    builtin_file = modules_dir / "modules.builtin"
    builtin = (
        {_module_name(line) for line in builtin_file.read_text().split()}
        if builtin_file.is_file()
        else set()
    )
    order: list[str] = []

    def visit(module: str) -> None:
        if module in order:
            return
        for dep in deps.get(module, []):
            visit(dep)
        order.append(module)

    for name, required in wanted:
        name = name.replace("-", "_")
        if name in by_name:
            visit(by_name[name])
        elif required and name not in builtin:
            raise RescueBuildError(f"kernel module {name} not found in {modules_dir}")
    return order


def _read_module(path: Path) -> bytes:
    """A module's bytes, decompressed: busybox insmod loads plain .ko files only."""
    data = path.read_bytes()
    if path.name.endswith(".xz"):
        return lzma.decompress(data)
    if path.name.endswith(".gz"):
        return gzip.decompress(data)
    if path.name.endswith(".zst"):
        if shutil.which("zstd") is None:
            raise RescueBuildError(f"{path} is zstd-compressed: apt-get install zstd")
        return subprocess.run(
            ["zstd", "-dc", str(path)], capture_output=True, check=True, timeout=60
        ).stdout
    return data


def _plain_module_path(path: str) -> str:
    return re.sub(r"\.(xz|gz|zst)$", "", path)


# --- the archive -----------------------------------------------------------------------------


def _archive_path(path: str | Path) -> str:
    """Where a host path lives in the archive: relative, and under /usr for the merged dirs
    (a real file under `lib/` would collide with the `lib -> usr/lib` symlink)."""
    relative = str(path).lstrip("/")
    top = relative.split("/", 1)[0]
    return f"usr/{relative}" if top in USR_MERGED else relative


class NewcArchive:
    """An in-memory cpio archive in the `newc` format the kernel unpacks as initramfs.

    Every entry is owned by root and has mtime 0, so the same inputs give the same bytes.
    Parent directories are added automatically (mode 0755) unless added explicitly.
    """

    def __init__(self) -> None:
        # path -> (mode, data, rdev major, rdev minor)
        self.entries: dict[str, tuple[int, bytes, int, int]] = {}

    def _add(self, path: str, mode: int, data: bytes = b"", rdev: tuple[int, int] = (0, 0)) -> None:
        path = path.strip("/")
        parent = path.rpartition("/")[0]
        if parent and parent not in self.entries:
            self.directory(parent)
        self.entries[path] = (mode, data, *rdev)

    def directory(self, path: str, mode: int = 0o755) -> None:
        self._add(path, stat.S_IFDIR | mode)

    def file(self, path: str, data: bytes, mode: int = 0o644) -> None:
        self._add(path, stat.S_IFREG | mode, data)

    def symlink(self, path: str, target: str) -> None:
        self._add(path, stat.S_IFLNK | 0o777, target.encode())

    def char_device(self, path: str, major: int, minor: int, mode: int = 0o600) -> None:
        self._add(path, stat.S_IFCHR | mode, rdev=(major, minor))

    def __contains__(self, path: str) -> bool:
        return path.strip("/") in self.entries

    def write(self, out: IO[bytes] | io.BufferedIOBase) -> None:
        """Write the entries (sorted, so parents come before their children) and the trailer."""

        def entry(name: str, ino: int, mode: int, data: bytes, rdev: tuple[int, int]) -> None:
            encoded = name.encode() + b"\0"
            nlink = 2 if stat.S_ISDIR(mode) else 1
            fields = (ino, mode, 0, 0, nlink, 0, len(data), 0, 0, *rdev, len(encoded), 0)
            header = b"070701" + b"".join(b"%08X" % value for value in fields)
            out.write(header + encoded + b"\0" * (-(len(header) + len(encoded)) % 4))
            out.write(data + b"\0" * (-len(data) % 4))

        for ino, path in enumerate(sorted(self.entries), start=1):
            mode, data, major, minor = self.entries[path]
            entry(path, ino, mode, data, (major, minor))
        entry("TRAILER!!!", 0, 0, b"", (0, 0))


def build_initramfs(kernel_version: str, destination: Path) -> dict[str, Any]:
    """Write the gzip'd initramfs for `kernel_version` to `destination`; return a manifest
    (modules, binaries with versions) for the cache directory."""
    archive = NewcArchive()
    for top in USR_MERGED:
        archive.symlink(top, f"usr/{top}")
    for path, mode in (
        ("dev", 0o755),
        ("proc", 0o555),
        ("sys", 0o555),
        ("run", 0o755),
        ("tmp", 0o1777),
        ("mnt", 0o755),
        ("root", 0o700),
        ("root/.ssh", 0o700),
        ("etc/dropbear", 0o700),
        ("var/log", 0o755),
        ("var/empty", 0o755),
        ("usr/lib64", 0o755),
    ):
        archive.directory(path, mode)
    # Before devtmpfs is mounted the kernel opens /dev/console for init's stdio.
    archive.char_device("dev/console", 5, 1)
    archive.char_device("dev/null", 1, 3, 0o666)
    archive.symlink("var/run", "../run")
    # Dropbear records logins there and complains on every login when they are missing.
    archive.file("var/log/lastlog", b"", 0o644)
    archive.file("var/log/wtmp", b"", 0o644)
    archive.symlink("etc/mtab", "/proc/mounts")

    manifest: dict[str, Any] = {"kernel_version": kernel_version, "binaries": {}, "modules": []}
    for name, target, required in BINARIES:
        binary = _find_binary(name, required)
        if binary is None:
            continue
        archive.file(target, binary.read_bytes(), 0o755)
        for library in shared_libraries(binary):
            archive.file(_archive_path(library), library.resolve().read_bytes(), 0o755)
        manifest["binaries"][name] = {"path": str(binary), "version": _binary_version(name, binary)}

    busybox = "usr/bin/busybox"
    applets = subprocess.run(
        [str(_find_binary("busybox", True)), "--list-full"],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout.split()
    for applet in applets:
        if "/" not in applet:  # linuxrc
            continue
        path = _archive_path(applet)
        if path not in archive:
            archive.symlink(path, f"/{busybox}")
    # Busybox puts a few applets under /bin or /sbin only; make both spellings work.
    for tool in ("sh", "mount", "insmod", "modprobe", "ip", "init", "poweroff", "reboot"):
        for directory in ("usr/bin", "usr/sbin"):
            if f"{directory}/{tool}" not in archive:
                archive.symlink(f"{directory}/{tool}", f"/{busybox}")

    modules_dir = MODULES_ROOT / kernel_version
    order = module_load_order(modules_dir)
    plain = [_plain_module_path(module) for module in order]
    target_dir = f"usr/lib/modules/{kernel_version}"
    for module, plain_path in zip(order, plain, strict=True):
        archive.file(f"{target_dir}/{plain_path}", _read_module(modules_dir / module))
    # A filtered modules.dep/alias so that busybox modprobe (and the kernel's request_module)
    # also work from a rescue shell for the modules that are there.
    deps = {}
    for line in (modules_dir / "modules.dep").read_text().splitlines():
        module, _, rest = line.partition(":")
        if module in order:
            deps[_plain_module_path(module)] = [_plain_module_path(d) for d in rest.split()]
    archive.file(
        f"{target_dir}/modules.dep",
        "".join(f"{m}:{''.join(' ' + dep for dep in d)}\n" for m, d in deps.items()).encode(),
    )
    names = {_module_name(module) for module in order}
    aliases = [
        line
        for line in (modules_dir / "modules.alias").read_text().splitlines()
        if line.startswith("alias ") and line.split()[-1].replace("-", "_") in names
    ]
    archive.file(f"{target_dir}/modules.alias", ("\n".join(aliases) + "\n").encode())
    for extra in ("modules.builtin",):
        if (modules_dir / extra).is_file():
            archive.file(f"{target_dir}/{extra}", (modules_dir / extra).read_bytes())
    archive.file("etc/rescue/modules", ("\n".join(plain) + "\n").encode())
    manifest["modules"] = plain

    for path, (text, mode) in ETC_FILES.items():
        archive.file(path, text.encode(), mode)
    for name, (path, mode) in SCRIPTS.items():
        archive.file(path, (RESCUE_FILES / name).read_bytes(), mode)

    with destination.open("wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as out:
        archive.write(out)
    return manifest


# --- the cache ---------------------------------------------------------------------------------


def default_cache_dir() -> Path:
    """`$LOCALCLOUD_RESCUE_CACHE`, else /var/cache/localcloud-rescue."""
    return Path(os.environ.get("LOCALCLOUD_RESCUE_CACHE") or DEFAULT_CACHE_DIR)


def _digest(path: Path) -> str:
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def cache_key(kernel_version: str, kernel: Path) -> str:
    """What the built files depend on: this module and its scripts, the kernel, and the
    binaries (version line and digest), so a change or an upgrade of any of them rebuilds."""
    parts = [_digest(Path(__file__)), kernel_version, _digest(kernel), json.dumps(MODULES)]
    parts += [f"{name}={(RESCUE_FILES / name).read_bytes().hex()}" for name in sorted(SCRIPTS)]
    parts += [f"{path}={text}" for path, (text, _) in sorted(ETC_FILES.items())]
    for name, _, required in BINARIES:
        binary = _find_binary(name, required)
        if binary is not None:
            parts.append(f"{name}:{_binary_version(name, binary)}:{_digest(binary)}")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:24]


@contextlib.contextmanager
def _locked(lock_path: Path) -> Iterator[None]:
    with lock_path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def rescue_boot_files(cache_dir: Path | None = None) -> tuple[Path, Path]:
    """(kernel, initramfs) of the rescue system, built on first use and cached.

    The cache entry is a directory named after `cache_key()`, renamed into place only when
    complete, so a reader never sees half a build; a file lock makes concurrent localcloud
    processes build it once. The kernel is copied next to the initramfs so that a host kernel
    upgrade removing the old /boot file cannot break the pair.
    """
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    kernel_version, host_vmlinuz = host_kernel()
    entry = cache_dir / cache_key(kernel_version, host_vmlinuz)
    kernel, initramfs = entry / "vmlinuz", entry / "initramfs.img"
    if kernel.is_file() and initramfs.is_file():
        return kernel, initramfs
    cache_dir.mkdir(parents=True, exist_ok=True)
    with _locked(cache_dir / ".build.lock"):
        if kernel.is_file() and initramfs.is_file():
            return kernel, initramfs
        started = time.monotonic()
        scratch = Path(tempfile.mkdtemp(prefix=".build-", dir=cache_dir))
        try:
            shutil.copyfile(host_vmlinuz, scratch / "vmlinuz")
            manifest = build_initramfs(kernel_version, scratch / "initramfs.img")
            manifest["build_seconds"] = round(time.monotonic() - started, 2)
            (scratch / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
            for path in scratch.iterdir():
                path.chmod(0o644)
            scratch.chmod(0o755)
            os.rename(scratch, entry)
        except BaseException:
            shutil.rmtree(scratch, ignore_errors=True)
            raise
        log.info(
            "built the rescue system for kernel %s in %.1f s: %s",
            kernel_version,
            time.monotonic() - started,
            entry,
        )
    return kernel, initramfs


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    print(*rescue_boot_files(), sep="\n")
