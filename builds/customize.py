"""Customize a QCOW2 working copy offline, in one libguestfs appliance launch.

The image is never booted: every step runs through the guestfs Python API (file operations) or
in a chroot of the guest (``g.sh``: package managers, commands). After the steps, and whatever
they were, the image is cleaned the way a never-booted cloud image must be (machine-id, SSH host
keys, cloud-init state, logs, histories, DHCP leases, package caches), SELinux guests get their
relabel, and the package manifest is read back by inspection, each package with the source
package it was built from as the guest's package database says (``builds.package_sources``).

Steps come from a recipe (see ``catalog.recipes``): ``{"type": ..., "params": {...},
"enabled": bool}``. Secrets are referenced as ``${secret:NAME}``, resolved only here and masked
in every log line. Each step has a deadline enforced by a watchdog thread which kills the
appliance (libguestfs calls cannot be interrupted otherwise); the same thread polls
``cancelled()`` every second.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shlex
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlparse

import requests

from builds import package_sources
from builds.guestfs_launch import Appliance
from builds.recipe_secrets import Masker
from catalog.choices import StepType
from catalog.recipes import SECRET_REF, check_download_host, file_in_files_dir
from cloud.cancel import CancelCheck, Cancelled

STEP_LABELS: dict[str, str] = dict(StepType.choices)

# Steps that need the appliance's network and a working resolv.conf in the guest.
NETWORK_STEPS = frozenset(
    {
        StepType.UPDATE_PACKAGES,
        StepType.INSTALL_PACKAGES,
        StepType.REMOVE_PACKAGES,
        StepType.RUN_COMMAND,
        StepType.KERNEL_UPGRADE,
        StepType.CLOUD_INIT_UPGRADE,
        StepType.ECOSYSTEM_PACKAGE,
        StepType.UEFI_ENABLEMENT,
    }
)

# libguestfs 1.48 puts the appliance on slirp's 169.254.0.0/16; its DNS forwarder is .2.3.
APPLIANCE_RESOLV_CONF = b"nameserver 169.254.2.3\n"
ESP_GPT_TYPE = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"
WORK_DIR = "/tmp/.image-factory"
OUTPUT_TAIL_LINES = 15

# Package manager command strings as virt-customize writes them (libguestfs-common
# mlcustomize/guest_packages.ml), so a recipe behaves the same under both tools.
APT_PRELUDE = (
    "export DEBIAN_FRONTEND=noninteractive; apt_opts='-q -y -o Dpkg::Options::=--force-confnew'; "
)
PM_INSTALL = {
    "apt": APT_PRELUDE + "apt-get $apt_opts update; apt-get $apt_opts install {pkgs}",
    "dnf": "dnf -y install {pkgs}",
    "yum": "yum -y install {pkgs}",
    "zypper": "zypper -n in -l {pkgs}",
}
PM_UPDATE = {
    "apt": APT_PRELUDE + "apt-get $apt_opts update; apt-get $apt_opts upgrade",
    "dnf": "dnf -y --best upgrade",
    "yum": "yum -y update",
    "zypper": "zypper -n dup -l",
}
PM_REMOVE = {
    "apt": APT_PRELUDE + "apt-get $apt_opts remove {pkgs}",
    "dnf": "dnf -y --disableplugin=subscription-manager remove {pkgs}",
    "yum": "yum -y remove {pkgs}",
    "zypper": "zypper -n rm {pkgs}",
}

NOT_FOUND_MARKERS = (
    ("E: Unable to locate package ", "apt"),
    ("No match for argument: ", "dnf"),
    ("No package ", "yum"),
    ("No provider of '", "zypper"),
)
MIRROR_MARKERS = (
    "Failed to fetch",
    "Could not connect to",
    "Temporary failure resolving",
    "Connection refused",
    "Cannot download repomd.xml",
    "Failed to download metadata",
    "Could not resolve host",
    "Network is unreachable",
)

# Never-booted clean-up: globs removed outright.
CLEANUP_GLOBS = (
    "/var/lib/dbus/machine-id",
    "/etc/ssh/ssh_host_*",
    "/var/lib/cloud/*",
    "/root/.bash_history",
    "/root/.zsh_history",
    "/root/.history",
    "/root/.python_history",
    "/root/.lesshst",
    "/root/.viminfo",
    "/home/*/.bash_history",
    "/home/*/.zsh_history",
    "/home/*/.python_history",
    "/var/lib/dhcp/*",
    "/var/lib/dhclient/*",
    "/var/lib/dhcpcd/*",
    "/var/lib/NetworkManager/*lease*",
    "/var/lib/systemd/network/*lease*",
    "/var/lib/systemd/random-seed",
    "/var/cache/apt/archives/*.deb",
    "/var/cache/apt/archives/partial/*",
    "/var/cache/apt/*.bin",
    "/var/cache/dnf/*",
    "/var/cache/yum/*",
    "/var/cache/zypp/packages/*",
    "/var/log/journal/*",
    WORK_DIR,
)
ROTATED_LOG_SUFFIXES = (".gz", ".xz", ".bz2", ".zst", ".old", ".1", ".2", ".3", ".4")


class CustomizeError(Exception):
    """A customization failed; ``message`` says why in plain words.

    ``step_index`` is the 0-based position of the failing step in the recipe's step list (the
    message counts from 1, as people do), or None when the failure is not a step's (inspection,
    clean-up).
    """

    def __init__(self, step_index: int | None, message: str) -> None:
        super().__init__(message)
        self.step_index = step_index
        self.message = message


@dataclass(frozen=True)
class CustomizeResult:
    """What a successful customization produced."""

    manifest: list[dict[str, str]]
    os_info: dict[str, object]
    # The packages of the image as fetched, read before the first step: what the recipe
    # changed is the difference with `manifest`. None when that reading failed.
    upstream_manifest: list[dict[str, str]] | None = None


class _StepFailure(Exception):
    """A step failed for a reason the step itself explains (wrapped into CustomizeError)."""


class _Masker(Masker):
    """Replaces every secret value, and its common encodings, by *** in text that leaves
    this module (see builds.recipe_secrets)."""

    def __init__(self, secrets: Mapping[str, str]) -> None:
        super().__init__(secrets.values(), replacement="***")


@dataclass
class _Watchdog:
    """Kills the appliance when the current step's deadline passes or the build is cancelled."""

    appliance: Appliance
    cancelled: CancelCheck
    reason: str | None = None
    deadline: float | None = None
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="customize-watchdog", daemon=True)
        self._thread.start()

    def arm(self, seconds: float) -> None:
        self.deadline = time.monotonic() + seconds

    def disarm(self) -> None:
        self.deadline = None

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.is_set():
            deadline = self.deadline
            wait = 1.0 if deadline is None else max(0.05, min(1.0, deadline - time.monotonic()))
            if self._stop.wait(wait):
                return
            try:
                is_cancelled = self.cancelled()
            except Exception:
                # A failing cancel probe (e.g. a database hiccup) must not kill a healthy build.
                is_cancelled = False
            if is_cancelled:
                self.reason = "cancel"
            elif self.deadline is not None and time.monotonic() >= self.deadline:
                self.reason = "timeout"
            if self.reason:
                self.appliance.kill()
                return


def _resolve_secrets(value: object, secrets: Mapping[str, str]) -> object:
    if isinstance(value, str):

        def replace(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in secrets:
                raise _StepFailure(f"secret '{name}' is not defined for this build")
            return secrets[name]

        return SECRET_REF.sub(replace, value)
    if isinstance(value, list):
        return [_resolve_secrets(v, secrets) for v in value]
    return value


def _package_list(value: object) -> list[str]:
    if isinstance(value, str):
        return value.split()
    return [str(v) for v in cast("Iterable[object]", value or [])]


def _mode(value: object, default: int) -> int:
    return int(str(value), 8) if value not in (None, "") else default


class _Session:
    """One launched appliance with the guest mounted, and the operations steps are made of."""

    def __init__(
        self,
        appliance: Appliance,
        *,
        say: Callable[[str], None],
        files_dir: Path,
        allowed_hosts: Sequence[str],
        cancelled: CancelCheck,
    ) -> None:
        assert appliance.g is not None
        self.g = appliance.g
        self.say = say
        self.files_dir = files_dir
        self.allowed_hosts = {h.lower() for h in allowed_hosts}
        self.cancelled = cancelled
        self.root = ""
        self.os_info: dict[str, object] = {}
        self.pm = "unknown"
        self.saved_resolv: tuple[str, bytes | str, int] | None = None
        self.resolv_replaced = False
        self.deadline: float | None = None
        self.sources: dict[package_sources.Key, tuple[str, str]] = {}

    # -- inspection -------------------------------------------------------------------------

    def inspect_and_mount(self) -> None:
        g = self.g
        roots = g.inspect_os()
        if not roots:
            raise CustomizeError(
                None, "no operating system found in the image: inspection found no root filesystem"
            )
        if len(roots) > 1:
            raise CustomizeError(
                None,
                f"{len(roots)} operating systems found in the image ({', '.join(roots)}): "
                "exactly one is required",
            )
        root = self.root = roots[0]
        mountpoints = g.inspect_get_mountpoints(root)
        # Shortest mountpoint first, so /boot/efi lands on a mounted /boot; a failing entry
        # (stale fstab line) is not fatal, as with guestfish -i.
        for mountpoint in sorted(mountpoints, key=len):
            try:
                g.mount(mountpoints[mountpoint], mountpoint)
            except RuntimeError as exc:
                self.say(f"warning: could not mount {mountpoint}: {exc}")
        self.pm = g.inspect_get_package_management(root)
        self.os_info = {
            "distro": g.inspect_get_distro(root),
            "product_name": g.inspect_get_product_name(root),
            "major": g.inspect_get_major_version(root),
            "minor": g.inspect_get_minor_version(root),
            "package_format": g.inspect_get_package_format(root),
            "package_management": self.pm,
        }
        self.say(
            f"Guest: {self.os_info['product_name']} ({self.os_info['distro']} "
            f"{self.os_info['major']}.{self.os_info['minor']}), packages by {self.pm}"
        )

    # -- resolv.conf --------------------------------------------------------------------------

    def replace_resolv_conf(self) -> None:
        """Point the guest at the appliance's DNS; cloud images use a stub that is not running."""
        if self.resolv_replaced:
            return
        g, path = self.g, "/etc/resolv.conf"
        if g.is_symlink(path):
            self.saved_resolv = ("link", g.readlink(path), 0)
        elif g.is_file(path):
            self.saved_resolv = ("file", g.read_file(path), g.statns(path)["st_mode"] & 0o7777)
        else:
            self.saved_resolv = None
        g.rm_f(path)
        g.mkdir_p("/etc")
        g.write(path, APPLIANCE_RESOLV_CONF)
        self.resolv_replaced = True

    def restore_resolv_conf(self) -> None:
        if not self.resolv_replaced:
            return
        g, path = self.g, "/etc/resolv.conf"
        g.rm_f(path)
        if self.saved_resolv is not None:
            kind, content, mode = self.saved_resolv
            if kind == "link":
                g.ln_s(str(content), path)
            else:
                g.write(path, content)
                g.chmod(mode, path)
        self.resolv_replaced = False

    # -- commands -----------------------------------------------------------------------------

    def run_script(
        self, script: str, *, echo: str | None = None, quiet: bool = False
    ) -> tuple[int, list[str]]:
        """Run ``script`` with /bin/sh in the guest; return (exit code, output lines).

        Output goes to a file in the guest and is read back as bytes: the Python bindings of
        libguestfs 1.48 can crash on non-UTF-8 text coming through event callbacks. With
        ``quiet`` the output is returned but not logged (a query read by the caller).
        """
        g = self.g
        g.mkdir_p(WORK_DIR)
        script_path, log_path = f"{WORK_DIR}/step.sh", f"{WORK_DIR}/step.log"
        proxies = "".join(
            f"export {name}={shlex.quote(os.environ[name])}\n"
            for name in ("http_proxy", "https_proxy", "ftp_proxy", "no_proxy")
            if os.environ.get(name)
        )
        g.write(script_path, f"export LC_ALL=C\n{proxies}{script}\n".encode())
        self.say(f"$ {echo if echo is not None else script}")
        try:
            out = g.sh(f"/bin/sh {script_path} >{log_path} 2>&1 </dev/null; echo $?")
        finally:
            # The script may hold resolved secrets; do not leave it in the image.
            with contextlib.suppress(RuntimeError):
                g.rm_f(script_path)
        code = int(out.strip().splitlines()[-1])
        # Progress meters redraw with \r; only the last state of such a line is worth a log line.
        raw_lines = g.read_file(log_path).decode("utf-8", "replace").split("\n")
        lines = [line.rstrip("\r").rsplit("\r", 1)[-1] for line in raw_lines]
        if lines and not lines[-1]:
            lines.pop()
        g.rm_f(log_path)
        if not quiet:
            for line in lines:
                self.say(line)
        return code, lines

    def run_checked(self, script: str, *, echo: str | None = None, what: str = "command") -> None:
        code, lines = self.run_script(script, echo=echo)
        if code != 0:
            raise _StepFailure(_explain_failure(what, code, lines))

    def package_command(self, table: Mapping[str, str], packages: list[str] | None = None) -> str:
        if self.pm not in table:
            raise _StepFailure(
                f"package management '{self.pm}' is not supported offline; "
                "use a firstboot script instead"
            )
        return table[self.pm].format(pkgs=" ".join(shlex.quote(p) for p in packages or []))

    # -- steps --------------------------------------------------------------------------------

    def step_update_packages(self, params: dict[str, Any]) -> None:
        self.run_checked(self.package_command(PM_UPDATE), what="package update")

    def step_install_packages(self, params: dict[str, Any]) -> None:
        packages = _package_list(params.get("packages"))
        self.run_checked(self.package_command(PM_INSTALL, packages), what="package installation")

    def step_remove_packages(self, params: dict[str, Any]) -> None:
        packages = _package_list(params.get("packages"))
        self.run_checked(self.package_command(PM_REMOVE, packages), what="package removal")

    def _place(self, local: Path, destination: str, mode: int) -> None:
        g = self.g
        if g.is_dir(destination):
            destination = f"{destination.rstrip('/')}/{local.name}"
        g.mkdir_p(os.path.dirname(destination) or "/")
        g.upload(str(local), destination)
        g.chown(0, 0, destination)
        g.chmod(mode, destination)
        self.say(f"{destination} ({local.stat().st_size} bytes, mode {mode:04o})")

    def _local_file(self, source: str) -> Path:
        return file_in_files_dir(self.files_dir, source)

    def step_upload_file(self, params: dict[str, Any]) -> None:
        local = self._local_file(str(params["source"]))
        self._place(local, str(params["destination"]), _mode(params.get("mode"), 0o644))

    def step_write_file(self, params: dict[str, Any]) -> None:
        g, path = self.g, str(params["path"])
        mode = _mode(params.get("mode"), 0o644)
        g.mkdir_p(os.path.dirname(path) or "/")
        g.write(path, str(params.get("content", "")).encode())
        g.chown(0, 0, path)
        g.chmod(mode, path)
        self.say(f"{path} written (mode {mode:04o})")

    def step_download_file(self, params: dict[str, Any]) -> None:
        url, expected = str(params["url"]), str(params["sha256"]).strip().lower()
        with tempfile.TemporaryDirectory(prefix="factory-download-") as tmp:
            local = Path(tmp) / (os.path.basename(urlparse(url).path) or "download")
            digest = self._download(url, local)
            if digest != expected:
                raise _StepFailure(
                    f"checksum mismatch for {url}: got {digest}, expected {expected}"
                )
            self._place(local, str(params["destination"]), _mode(params.get("mode"), 0o644))

    def _check_host(self, url: str) -> None:
        check_download_host(url, self.allowed_hosts)

    def _download(self, url: str, local: Path) -> str:
        """Stream ``url`` to ``local`` on the host; return its SHA-256."""
        self._check_host(url)
        self.say(f"downloading {url}")
        digest = hashlib.sha256()
        try:
            with requests.get(url, stream=True, timeout=(10, 60)) as response:
                for hop in [*response.history, response]:
                    self._check_host(hop.url)
                response.raise_for_status()
                with open(local, "wb") as f:
                    for chunk in response.iter_content(1024 * 1024):
                        if self.cancelled():
                            raise _StepFailure("cancelled during the download")
                        if self.deadline is not None and time.monotonic() > self.deadline:
                            raise _StepFailure("download took longer than the step's timeout")
                        digest.update(chunk)
                        f.write(chunk)
        except requests.RequestException as exc:
            raise _StepFailure(f"download of {url} failed: {exc}") from exc
        except ValueError as exc:
            # A redirect to a host outside the allowed list.
            raise _StepFailure(str(exc)) from exc
        return digest.hexdigest()

    def step_run_command(self, params: dict[str, Any], *, echo: str | None = None) -> None:
        self.run_checked(str(params["command"]), echo=echo)

    def step_enable_unit(self, params: dict[str, Any]) -> None:
        unit = str(params["unit"])
        self.run_checked(f"systemctl enable {shlex.quote(unit)}", what=f"enabling {unit}")

    def step_kernel_upgrade(self, params: dict[str, Any]) -> None:
        package = str(params.get("package") or self._default_kernel_package())
        self._install_or_upgrade([package], what="kernel upgrade")

    def _default_kernel_package(self) -> str:
        distro = self.os_info.get("distro")
        if self.pm == "apt":
            candidates = {
                "ubuntu": ["linux-virtual", "linux-generic"],
            }.get(str(distro), ["linux-image-cloud-amd64", "linux-image-amd64"])
            for candidate in candidates:
                code, _ = self.run_script(
                    f"dpkg-query -W -f='${{Status}}' {candidate} | grep -q 'install ok installed'"
                )
                if code == 0:
                    return candidate
            return candidates[-1]
        if self.pm == "zypper":
            return "kernel-default"
        return "kernel"

    def _install_or_upgrade(self, packages: list[str], *, what: str) -> None:
        command = self.package_command(PM_INSTALL, packages)
        if self.pm in ("dnf", "yum"):
            # "install" is a no-op for an installed package on the RPM side.
            quoted = " ".join(shlex.quote(p) for p in packages)
            command += f" && {self.pm} -y upgrade {quoted}"
        self.run_checked(command, what=what)

    def step_cloud_init_upgrade(self, params: dict[str, Any]) -> None:
        self._install_or_upgrade(["cloud-init"], what="cloud-init upgrade")

    def step_ecosystem_package(self, params: dict[str, Any]) -> None:
        g, package = self.g, str(params["package"])
        if params.get("file"):
            local = self._local_file(str(params["file"]))
            g.mkdir_p(WORK_DIR)
            remote = f"{WORK_DIR}/{local.name}"
            g.upload(str(local), remote)
            self._install_or_upgrade([remote], what=f"installing {package}")
            return
        if params.get("repository"):
            repository = str(params["repository"])
            if self.pm == "apt":
                g.write("/etc/apt/sources.list.d/ecosystem.list", f"{repository}\n".encode())
            elif self.pm in ("dnf", "yum"):
                g.write(
                    "/etc/yum.repos.d/ecosystem.repo",
                    f"[ecosystem]\nname=Provider ecosystem\nbaseurl={repository}\n"
                    "enabled=1\n".encode(),
                )
            elif self.pm == "zypper":
                self.run_checked(f"zypper -n ar {shlex.quote(repository)} ecosystem")
            else:
                raise _StepFailure(f"cannot add a repository for package management '{self.pm}'")
        self._install_or_upgrade([package], what=f"installing {package}")

    def _find_esp(self) -> str | None:
        g = self.g
        for partition in g.list_partitions():
            device = g.part_to_dev(partition)
            number = g.part_to_partnum(partition)
            try:
                if g.part_get_parttype(device) == "gpt":
                    if g.part_get_gpt_type(device, number).upper() == ESP_GPT_TYPE:
                        return str(partition)
                elif g.part_get_mbr_id(device, number) == 0xEF:
                    return str(partition)
            except RuntimeError:
                continue
        return None

    def step_uefi_enablement(self, params: dict[str, Any]) -> None:
        g = self.g
        esp = self._find_esp()
        if esp is None:
            raise _StepFailure(
                "no EFI system partition: cannot add UEFI boot offline on this layout"
            )
        if "/boot/efi" not in g.mountpoints().values():
            g.mkdir_p("/boot/efi")
            g.mount(esp, "/boot/efi")
        if self.pm == "apt":
            packages = ["grub-efi-amd64-bin", "shim-signed"]
            install = (
                "grub-install --target=x86_64-efi --efi-directory=/boot/efi --removable --no-nvram"
            )
            install += " && if command -v update-grub >/dev/null; then update-grub; fi"
        elif self.pm in ("dnf", "yum"):
            packages = ["grub2-efi-x64", "shim-x64"]
            install = "grub2-mkconfig -o /boot/grub2/grub.cfg"
        else:
            raise _StepFailure(
                f"UEFI enablement is not supported for package management '{self.pm}'"
            )
        self.run_checked(
            self.package_command(PM_INSTALL, packages), what="installing GRUB for UEFI"
        )
        self.run_checked(install, what="installing GRUB on the EFI system partition")

    def step_firstboot_script(self, params: dict[str, Any], *, number: int) -> None:
        g = self.g
        name = f"image-factory-firstboot-{number:02d}"
        script = f"/usr/lib/image-factory/firstboot/{name}.sh"
        unit = f"/etc/systemd/system/{name}.service"
        g.mkdir_p(os.path.dirname(script))
        g.write(script, str(params["script"]).encode())
        g.chmod(0o755, script)
        # "-" ignores the script's failure so the unit still disables itself; the condition
        # guards against a second run if disabling failed.
        g.write(
            unit,
            (
                "[Unit]\n"
                f"Description=Image factory first-boot script {number}\n"
                "Wants=network-online.target\n"
                "After=network-online.target\n"
                f"ConditionPathExists={script}\n\n"
                "[Service]\n"
                "Type=oneshot\n"
                f"ExecStart=-{script}\n"
                f"ExecStartPost=/bin/systemctl disable {name}.service\n"
                f"ExecStartPost=/bin/rm -f {script}\n"
                "StandardOutput=journal+console\n\n"
                "[Install]\n"
                "WantedBy=multi-user.target\n"
            ).encode(),
        )
        g.chmod(0o644, unit)
        g.mkdir_p("/etc/systemd/system/multi-user.target.wants")
        g.ln_sf(unit, f"/etc/systemd/system/multi-user.target.wants/{name}.service")
        self.say(f"{unit} enabled, runs {script} once at first boot")

    # -- after the steps ----------------------------------------------------------------------

    def kill_guest_daemons(self) -> None:
        # Package scripts may have started daemons inside the chroot; they would keep the
        # filesystem busy at unmount (virt-customize does the same).
        with contextlib.suppress(RuntimeError):
            self.g.debug("sh", ["fuser -k /sysroot >/dev/null 2>&1; true"])

    def never_booted_cleanup(self) -> None:
        g = self.g
        if g.is_file("/etc/machine-id"):
            g.truncate("/etc/machine-id")
        removed = 0
        for pattern in CLEANUP_GLOBS:
            for path in g.glob_expand(pattern):
                g.rm_rf(path.rstrip("/"))
                removed += 1
        truncated = 0
        if g.is_dir("/var/log"):
            for relative in g.find("/var/log"):
                path = f"/var/log/{relative}"
                if not g.is_file(path, followsymlinks=False):
                    continue
                if path.endswith(ROTATED_LOG_SUFFIXES):
                    g.rm_f(path)
                    removed += 1
                elif g.filesize(path) > 0:
                    # Truncated, not removed: keeps the owner and mode services expect.
                    g.truncate(path)
                    truncated += 1
        self.say(
            f"Clean-up: machine-id emptied, {removed} paths removed (SSH host keys, cloud-init "
            f"state, histories, leases, caches), {truncated} log files truncated"
        )

    def selinux_relabel(self) -> None:
        g = self.g
        if not (g.is_file("/usr/sbin/load_policy") and g.is_file("/etc/selinux/config")):
            return
        if g.feature_available(["selinuxrelabel"]):
            try:
                selinux_type = "targeted"
                for line in g.read_lines("/etc/selinux/config"):
                    if line.strip().startswith("SELINUXTYPE="):
                        selinux_type = line.split("=", 1)[1].strip() or selinux_type
                specfile = f"/etc/selinux/{selinux_type}/contexts/files/file_contexts"
                g.selinux_relabel(specfile, "/", force=True)
                g.rm_f("/.autorelabel")
                self.say("SELinux: files relabelled")
                return
            except RuntimeError as exc:
                self.say(f"SELinux: relabel failed ({exc}); falling back to /.autorelabel")
        g.touch("/.autorelabel")
        self.say(
            "SELinux: the appliance cannot relabel (no setfiles); /.autorelabel created, "
            "the guest relabels and reboots once at first boot"
        )

    def query_package_sources(self) -> None:
        """Ask the guest's package database which source package each installed package was
        built from (see builds.package_sources). Runs before the clean-up, which removes the
        work directory the command runs from. Any failure leaves the sources unknown, with the
        reason in the log: the manifest is then inspection's alone, as before."""
        package_format = str(self.os_info.get("package_format", ""))
        query = package_sources.QUERIES.get(package_format)
        if query is None:
            self.say(f"Package sources: not read for '{package_format}' packages")
            return
        try:
            code, lines = self.run_script(query, quiet=True)
        except RuntimeError as exc:
            self.say(f"Package sources: the query could not run ({exc}); sources unknown")
            return
        if code != 0:
            tail = "\n".join(lines[-OUTPUT_TAIL_LINES:])
            self.say(
                f"Package sources: the query failed with exit code {code}; sources unknown:\n{tail}"
            )
            return
        result = package_sources.PARSERS[package_format](lines)
        if not result.sources:
            self.say(
                f"Package sources: nothing readable in {len(lines)} lines of output; "
                "sources unknown"
            )
            return
        self.sources = result.sources
        if result.skipped:
            self.say(f"Package sources: {result.skipped} lines of output not read")

    def manifest(self) -> list[dict[str, str]]:
        packages = []
        for app in self.g.inspect_list_applications2(self.root):
            version = app["app2_version"]
            if app.get("app2_release"):
                version = f"{version}-{app['app2_release']}"
            if app.get("app2_epoch"):
                version = f"{app['app2_epoch']}:{version}"
            packages.append(
                {"name": app["app2_name"], "version": version, "arch": app.get("app2_arch", "")}
            )
        packages.sort(key=lambda p: (p["name"], p["arch"]))
        if self.sources:
            packages, matched = package_sources.with_sources(packages, self.sources)
            self.say(f"Package sources: known for {matched} of {len(packages)} packages")
        return packages


@dataclass(frozen=True)
class _Step:
    """One enabled step as its handler gets it."""

    index: int  # 0-based position in the recipe's step list
    params: dict[str, Any]  # secrets resolved
    raw_params: Mapping[str, Any]  # as written, for what is echoed to the log


_StepHandler = Callable[[_Session, _Step], None]


def _params_only(method: Callable[[_Session, dict[str, Any]], None]) -> _StepHandler:
    def handler(session: _Session, step: _Step) -> None:
        method(session, step.params)

    return handler


def _run_command(session: _Session, step: _Step) -> None:
    session.step_run_command(step.params, echo=str(step.raw_params.get("command", "")))


def _firstboot_script(session: _Session, step: _Step) -> None:
    session.step_firstboot_script(step.params, number=step.index + 1)


# Every step type and what runs it; a type missing here is refused before the launch.
STEP_HANDLERS: Mapping[str, _StepHandler] = {
    StepType.UPDATE_PACKAGES: _params_only(_Session.step_update_packages),
    StepType.INSTALL_PACKAGES: _params_only(_Session.step_install_packages),
    StepType.REMOVE_PACKAGES: _params_only(_Session.step_remove_packages),
    StepType.UPLOAD_FILE: _params_only(_Session.step_upload_file),
    StepType.WRITE_FILE: _params_only(_Session.step_write_file),
    StepType.DOWNLOAD_FILE: _params_only(_Session.step_download_file),
    StepType.RUN_COMMAND: _run_command,
    StepType.ENABLE_UNIT: _params_only(_Session.step_enable_unit),
    StepType.KERNEL_UPGRADE: _params_only(_Session.step_kernel_upgrade),
    StepType.CLOUD_INIT_UPGRADE: _params_only(_Session.step_cloud_init_upgrade),
    StepType.ECOSYSTEM_PACKAGE: _params_only(_Session.step_ecosystem_package),
    StepType.UEFI_ENABLEMENT: _params_only(_Session.step_uefi_enablement),
    StepType.FIRSTBOOT_SCRIPT: _firstboot_script,
}


def _explain_failure(what: str, code: int, lines: list[str]) -> str:
    tail = "\n".join(lines[-OUTPUT_TAIL_LINES:])
    text = "\n".join(lines)
    if "No space left on device" in text or "You don't have enough free space" in text:
        return f"{what} failed: the image's filesystem is full (no space left on device):\n{tail}"
    if any(marker in text for marker in MIRROR_MARKERS):
        return f"{what} failed: cannot reach the package mirror (exit code {code}):\n{tail}"
    for marker, _ in NOT_FOUND_MARKERS:
        for line in lines:
            if marker in line:
                name = line.split(marker, 1)[1].strip().strip("'\"").split()[0].strip("'\"")
                return f"package '{name}' not found:\n{tail}"
    return f"{what} failed with exit code {code}:\n{tail}"


def customize(
    disk: Path,
    steps: list[dict[str, Any]],
    *,
    log: Callable[[str], None],
    progress: Callable[[int, int], None],
    cancelled: CancelCheck,
    secrets: Mapping[str, str],
    files_dir: Path,
    allowed_hosts: Sequence[str],
    step_timeout: int,
    memsize_mb: int = 2048,
) -> CustomizeResult:
    """Apply ``steps`` to the QCOW2 working copy ``disk`` in place, in one appliance launch.

    Raises CustomizeError (plain-words message, step named) on failure and Cancelled when
    ``cancelled()`` turns true (the working copy is then undefined); in both cases the
    appliance is gone when the call returns.
    """
    mask = _Masker(secrets)

    def say(line: str) -> None:
        log(mask(line))

    active = [(i, s) for i, s in enumerate(steps) if s.get("enabled", True)]
    total = len(active)

    def label(index: int, step: dict[str, Any]) -> str:
        kind = step.get("type", "")
        return f"Step {index + 1} ({STEP_LABELS.get(kind, kind)})"

    # Resolve secrets before the (slow) launch so a missing one fails at once.
    resolved: dict[int, dict[str, Any]] = {}
    for index, step in active:
        if step.get("type") not in STEP_HANDLERS:
            raise CustomizeError(index, f"{label(index, step)}: unknown step type")
        try:
            resolved[index] = {
                k: _resolve_secrets(v, secrets) for k, v in (step.get("params") or {}).items()
            }
        except _StepFailure as exc:
            raise CustomizeError(index, f"{label(index, step)}: {exc}") from None

    if cancelled():
        raise Cancelled("cancelled before the appliance was launched")
    progress(0, total)
    needs_network = any(step.get("type") in NETWORK_STEPS for _, step in active)
    started = time.monotonic()
    say(f"Launching the appliance (network {'on' if needs_network else 'off'})")
    with Appliance(disk, readonly=False, network=needs_network, memsize_mb=memsize_mb) as app:
        say(f"Appliance up in {time.monotonic() - started:.0f} s")
        watchdog = _Watchdog(app, cancelled)
        watchdog.start()
        session = _Session(
            app, say=say, files_dir=files_dir, allowed_hosts=allowed_hosts, cancelled=cancelled
        )

        def interrupted(exc: BaseException, index: int | None, prefix: str, seconds: int) -> None:
            if watchdog.reason == "cancel":
                raise Cancelled("cancelled; the appliance was stopped") from exc
            if watchdog.reason == "timeout":
                raise CustomizeError(index, f"{prefix}: timed out after {seconds} s") from exc

        try:
            if cancelled():
                raise Cancelled("cancelled while the appliance was starting")
            watchdog.arm(step_timeout)
            try:
                session.inspect_and_mount()
            except RuntimeError as exc:
                interrupted(exc, None, "Inspection", step_timeout)
                raise CustomizeError(None, f"inspection of the image failed: {exc}") from exc
            upstream_manifest = _packages_before_steps(session)
            watchdog.disarm()

            for done, (index, step) in enumerate(active, start=1):
                if cancelled():
                    raise Cancelled("cancelled between steps")
                kind, params, prefix = step["type"], resolved[index], label(index, step)
                timeout = int(params.get("timeout") or step_timeout)
                say(f"{prefix} [{done}/{total}]")
                session.deadline = time.monotonic() + timeout
                watchdog.arm(timeout)
                try:
                    if kind in NETWORK_STEPS:
                        session.replace_resolv_conf()
                    STEP_HANDLERS[kind](session, _Step(index, params, step.get("params") or {}))
                except (_StepFailure, ValueError) as exc:
                    interrupted(exc, index, prefix, timeout)
                    raise CustomizeError(index, mask(f"{prefix}: {exc}")) from None
                except RuntimeError as exc:
                    interrupted(exc, index, prefix, timeout)
                    reason = str(exc)
                    if "No space left on device" in reason:
                        reason = f"the image's filesystem is full (no space left on device): {exc}"
                    raise CustomizeError(index, mask(f"{prefix}: {reason}")) from None
                finally:
                    watchdog.disarm()
                    session.deadline = None
                progress(done, total)

            watchdog.arm(step_timeout)
            try:
                session.restore_resolv_conf()
                session.kill_guest_daemons()
                session.query_package_sources()
                session.never_booted_cleanup()
                # Last write: anything written after the relabel would keep a wrong label.
                session.selinux_relabel()
                manifest = session.manifest()
                session.g.umount_all()
            except RuntimeError as exc:
                interrupted(exc, None, "Clean-up", step_timeout)
                raise CustomizeError(None, f"clean-up after the steps failed: {exc}") from exc
            watchdog.disarm()
        finally:
            watchdog.stop()
        if watchdog.reason == "cancel":
            raise Cancelled("cancelled; the appliance was stopped")
    say(f"Customization done in {time.monotonic() - started:.0f} s, {len(manifest)} packages")
    return CustomizeResult(
        manifest=manifest, os_info=session.os_info, upstream_manifest=upstream_manifest
    )


def _packages_before_steps(session: _Session) -> list[dict[str, str]] | None:
    """The fetched image's own package list, by the same inspection as the manifest (no
    source packages yet: they are read after the steps). None, with the reason in the log,
    when the inspection fails: the build goes on without it."""
    try:
        packages = session.manifest()
    except RuntimeError as exc:
        session.say(f"Upstream packages: not read ({exc}); what the recipe changed is unknown")
        return None
    session.say(f"Upstream image: {len(packages)} packages before the first step")
    return packages
