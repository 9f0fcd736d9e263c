"""Reading a customized image back, read-only, in one libguestfs appliance: what the tests of
the customize stage assert about the files it wrote and the clean-up it did."""

from __future__ import annotations

from pathlib import Path

from builds.guestfs_launch import Appliance


def read_back(disk: Path) -> dict:
    """Open the customized image read-only and collect what the assertions need (its
    first-boot script is the recipe's seventh step)."""
    with Appliance(disk, readonly=True) as app:
        g = app.g
        assert g is not None
        roots = g.inspect_os()
        mountpoints = g.inspect_get_mountpoints(roots[0])
        for mountpoint in sorted(mountpoints, key=len):
            g.mount_ro(mountpoints[mountpoint], mountpoint)

        def content(path: str) -> str | None:
            return g.cat(path) if g.is_file(path) else None

        wants = "/etc/systemd/system/multi-user.target.wants"
        return {
            "etc_motd": content("/etc/motd"),
            "hello_binary": g.is_file("/usr/bin/hello"),
            "hello_out": content("/root/hello.out"),
            "motd": content("/etc/motd-extra"),
            "motd_mode": g.statns("/etc/motd-extra")["st_mode"] & 0o7777,
            "token": content("/etc/factory/token"),
            "networkd_wanted": g.is_symlink(f"{wants}/systemd-networkd.service"),
            "firstboot_wanted": g.is_symlink(f"{wants}/image-factory-firstboot-07.service"),
            "firstboot_unit": content("/etc/systemd/system/image-factory-firstboot-07.service"),
            "machine_id_exists": g.is_file("/etc/machine-id"),
            "machine_id_size": g.filesize("/etc/machine-id"),
            "dbus_machine_id": g.exists("/var/lib/dbus/machine-id"),
            "host_keys": g.glob_expand("/etc/ssh/ssh_host_*"),
            "resolv_is_link": g.is_symlink("/etc/resolv.conf"),
            "resolv_target": g.readlink("/etc/resolv.conf"),
            "debs": g.glob_expand("/var/cache/apt/archives/*.deb"),
            "pkgcache": g.glob_expand("/var/cache/apt/*.bin"),
            "history": g.exists("/root/.bash_history"),
            "leases": g.glob_expand("/var/lib/dhcp/*"),
            "fixture_log_size": g.filesize("/var/log/fixture.log"),
            "log_dir_kept": g.is_dir("/var/log/apt"),
            "work_dir": g.exists("/tmp/.image-factory"),
            "downloaded_size": g.filesize("/opt/hello_2.10-3_amd64.deb"),
        }
