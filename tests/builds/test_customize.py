"""Customizing a real Debian image offline with libguestfs, and the ways it can fail.

The guestfs tests launch real appliances (about 40 s each under TCG, launch and inspection),
so each one carries as many assertions as its launch allows. Every step type applied to a real
image, with a real package from Debian, is proved by the build pipeline's second build
(tests/builds/test_build_pipeline.py), which reads the published image back.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from builds.customize import (
    CustomizeError,
    CustomizeResult,
    _explain_failure,
    _Masker,
    check_download_host,
    customize,
    file_in_files_dir,
)
from cloud.cancel import Cancelled

SECRET = "s3cr3t-Value-42"


def run(disk: Path, steps: list[dict], tmp_path: Path, **overrides: object) -> CustomizeResult:
    """customize() with test defaults; the log lines land in overrides['lines'] if given."""
    lines: list[str] = overrides.pop("lines", [])  # type: ignore[assignment]
    progress: list[tuple[int, int]] = overrides.pop("progress_calls", [])  # type: ignore[assignment]
    files_dir = tmp_path / "files"
    files_dir.mkdir(exist_ok=True)
    options: dict = {
        "log": lines.append,
        "progress": lambda k, n: progress.append((k, n)),
        "cancelled": lambda: False,
        "secrets": {"TOKEN": SECRET},
        "files_dir": files_dir,
        "allowed_hosts": [],
        "step_timeout": 600,
    }
    options.update(overrides)
    return customize(disk, steps, **options)


def step(kind: str, **params: object) -> dict:
    return {"type": kind, "params": params, "enabled": True}


# -- fast tests, no appliance -----------------------------------------------------------------


def test_a_missing_secret_fails_before_any_launch_and_names_the_secret(tmp_path: Path) -> None:
    disk = tmp_path / "never-opened.qcow2"
    with pytest.raises(CustomizeError) as caught:
        run(disk, [step("write_file", path="/etc/x", content="${secret:NOPE}")], tmp_path)
    assert caught.value.step_index == 0
    assert "secret 'NOPE' is not defined" in caught.value.message
    assert caught.value.message.startswith("Step 1 (Write file)")


def test_disabled_steps_are_skipped_and_unknown_types_refused(tmp_path: Path) -> None:
    steps = [
        {"type": "write_file", "params": {"content": "${secret:NOPE}"}, "enabled": False},
        step("reboot_into_windows"),
    ]
    with pytest.raises(CustomizeError) as caught:
        run(tmp_path / "x.qcow2", steps, tmp_path)
    assert caught.value.step_index == 1
    assert "unknown step type" in caught.value.message


def test_secret_values_are_masked_longest_first() -> None:
    mask = _Masker({"A": "abc", "B": "abcdef", "EMPTY": ""})
    assert mask("x abcdef y abc z") == "x *** y *** z"


def test_upload_sources_cannot_escape_the_files_folder(tmp_path: Path) -> None:
    (tmp_path / "files").mkdir()
    (tmp_path / "files" / "ok.txt").write_text("ok")
    (tmp_path / "secret.txt").write_text("no")
    assert file_in_files_dir(tmp_path / "files", "ok.txt").name == "ok.txt"
    with pytest.raises(ValueError, match="outside the files folder"):
        file_in_files_dir(tmp_path / "files", "../secret.txt")
    with pytest.raises(ValueError, match="outside the files folder"):
        file_in_files_dir(tmp_path / "files", str(tmp_path / "secret.txt"))
    with pytest.raises(ValueError, match="does not exist"):
        file_in_files_dir(tmp_path / "files", "missing.txt")


def test_downloads_are_limited_to_the_allowed_hosts() -> None:
    check_download_host("https://Deb.Debian.org/debian/x.deb", ["deb.debian.org"])
    with pytest.raises(ValueError, match=r"host 'evil\.example' is not in the allowed"):
        check_download_host("https://evil.example/x", ["deb.debian.org"])
    with pytest.raises(ValueError, match="only http and https"):
        check_download_host("file:///etc/shadow", ["deb.debian.org"])


@pytest.mark.parametrize(
    "url", ["http://169.254.42.42/conf", "http://[fd00:42::42]/", "http://169.254.169.254/"]
)
def test_downloads_from_the_metadata_service_are_refused_even_when_listed(url: str) -> None:
    listed = ["169.254.42.42", "fd00:42::42", "169.254.169.254"]
    with pytest.raises(ValueError, match="metadata service or link-local"):
        check_download_host(url, listed)


def test_failures_are_explained_in_plain_words() -> None:
    assert _explain_failure("x", 100, ["E: Unable to locate package nosuch"]).startswith(
        "package 'nosuch' not found"
    )
    assert "cannot reach the package mirror" in _explain_failure(
        "x", 100, ["W: Failed to fetch http://127.0.0.1:9/debian", "E: Unable to locate package a"]
    )
    assert "filesystem is full" in _explain_failure("x", 1, ["write: No space left on device"])
    assert _explain_failure("command", 3, ["oops"]) == "command failed with exit code 3:\noops"


# -- real appliances ---------------------------------------------------------------------------


# apt's own words are explained without an appliance above, and the pipeline's second build
# runs the same apt commands for real: this whole run (an index download under emulation) is
# kept for make test-extra.
@pytest.mark.extra
@pytest.mark.guestfs
def test_an_unknown_package_fails_naming_the_package(work_copy: Path, tmp_path: Path) -> None:
    with pytest.raises(CustomizeError) as caught:
        run(work_copy, [step("install_packages", packages=["nosuchpkg-factory"])], tmp_path)
    message = caught.value.message
    assert caught.value.step_index == 0
    assert message.startswith("Step 1 (Install packages): package 'nosuchpkg-factory' not found")
    assert "E: Unable to locate package nosuchpkg-factory" in message


@pytest.mark.guestfs
def test_a_failing_command_reports_its_exit_code_and_output(
    work_copy: Path, tmp_path: Path
) -> None:
    steps = [
        step("write_file", path="/etc/ok", content="ok"),
        step("run_command", command="echo preparing; echo 'broken: ${secret:TOKEN}' >&2; exit 3"),
    ]
    with pytest.raises(CustomizeError) as caught:
        run(work_copy, steps, tmp_path)
    message = caught.value.message
    assert caught.value.step_index == 1
    assert message.startswith("Step 2 (Run command): command failed with exit code 3")
    assert "preparing" in message and "broken: ***" in message
    assert SECRET not in message


@pytest.mark.guestfs
@pytest.mark.timeout(600)  # a command left to run would hold the test for an hour
def test_a_hung_command_is_killed_by_its_timeout(
    work_copy: Path, tmp_path: Path, our_qemu_pids
) -> None:
    with pytest.raises(CustomizeError) as caught:
        run(work_copy, [step("run_command", command="sleep 3600", timeout=5)], tmp_path)
    assert caught.value.message == "Step 1 (Run command): timed out after 5 s"
    assert our_qemu_pids() == set()


@pytest.mark.extra  # the explanation of apt's output is tested without an appliance above
@pytest.mark.guestfs
def test_an_unreachable_package_mirror_is_reported_as_such(work_copy: Path, tmp_path: Path) -> None:
    steps = [
        step(
            "run_command",
            command="echo 'deb http://127.0.0.1:9/debian bookworm main' > /etc/apt/sources.list\n"
            "rm -rf /var/lib/apt/lists/*",
        ),
        step("install_packages", packages=["hello"]),
    ]
    with pytest.raises(CustomizeError) as caught:
        run(work_copy, steps, tmp_path)
    assert caught.value.step_index == 1
    assert "cannot reach the package mirror" in caught.value.message
    assert "127.0.0.1:9" in caught.value.message


@pytest.mark.extra  # the explanation of a full disk is tested without an appliance above
@pytest.mark.guestfs
def test_a_full_root_filesystem_is_reported_as_full(work_copy: Path, tmp_path: Path) -> None:
    # Fill the root filesystem but about 32 MiB (reserved blocks included: apt runs as root);
    # fallocate may stop short with ENOSPC after allocating most of it, hence "|| true".
    fill = (
        "set -- $(stat -f -c '%f %S' /)\n"
        "fallocate -l $(( ($1 - 8192) * $2 )) /var/tmp/filler || true\n"
        "df -k /"
    )
    steps = [step("run_command", command=fill), step("install_packages", packages=["python3"])]
    with pytest.raises(CustomizeError) as caught:
        run(work_copy, steps, tmp_path)
    assert caught.value.step_index == 1
    assert caught.value.message.startswith("Step 2 (Install packages): ")
    assert "the image's filesystem is full" in caught.value.message


@pytest.mark.guestfs
def test_an_image_without_an_operating_system_is_refused(tmp_path: Path) -> None:
    raw = tmp_path / "empty.raw"
    subprocess.run(["truncate", "-s", "256M", str(raw)], check=True)
    subprocess.run(["mke2fs", "-q", "-F", "-t", "ext4", str(raw)], check=True)
    disk = tmp_path / "empty.qcow2"
    subprocess.run(["qemu-img", "convert", "-O", "qcow2", str(raw), str(disk)], check=True)
    with pytest.raises(CustomizeError) as caught:
        run(disk, [step("write_file", path="/etc/x", content="x")], tmp_path)
    assert caught.value.step_index is None
    assert "no operating system found in the image" in caught.value.message


@pytest.mark.extra  # the inspection refusal is also proved by the image without one
@pytest.mark.guestfs
def test_an_image_with_two_operating_systems_is_refused(debian_qcow2: Path, tmp_path: Path) -> None:
    # The fixture's root filesystem (1990 MiB at 2 MiB) copied into two partitions.
    single = tmp_path / "single.raw"
    subprocess.run(["qemu-img", "convert", "-O", "raw", str(debian_qcow2), str(single)], check=True)
    double = tmp_path / "double.raw"
    subprocess.run(["truncate", "-s", "4G", str(double)], check=True)
    second_start = 4096 + 2000 * 2048
    subprocess.run(
        ["sgdisk", "--new=1:2048:4095", "--typecode=1:EF02",
         f"--new=2:4096:{second_start - 1}", f"--new=3:{second_start}:0", str(double)],
        check=True, capture_output=True,
    )  # fmt: skip
    for start in (4096, second_start):
        subprocess.run(
            ["dd", f"if={single}", f"of={double}", "bs=4M", "conv=notrunc,sparse",
             "iflag=skip_bytes,count_bytes", "oflag=seek_bytes", f"skip={4096 * 512}",
             f"seek={start * 512}", f"count={1990 * 1024 * 1024}", "status=none"],
            check=True,
        )  # fmt: skip
    single.unlink()
    with pytest.raises(CustomizeError) as caught:
        run(double, [step("write_file", path="/etc/x", content="x")], tmp_path)
    assert caught.value.step_index is None
    assert "2 operating systems found in the image" in caught.value.message
    assert "exactly one is required" in caught.value.message


@pytest.mark.extra  # the build pipeline's cancel test proves it through the stage
@pytest.mark.guestfs
@pytest.mark.timeout(600)  # a sleep left to run would hold the test for an hour
def test_cancelling_during_a_step_kills_the_appliance_within_seconds(
    work_copy: Path, tmp_path: Path, our_qemu_pids
) -> None:
    sleep_seen: list[float] = []

    def log(line: str) -> None:
        if line == "$ sleep 3600" and not sleep_seen:
            sleep_seen.append(time.monotonic())

    def cancelled() -> bool:
        return bool(sleep_seen) and time.monotonic() > sleep_seen[0] + 3

    with pytest.raises(Cancelled):
        run(work_copy, [step("run_command", command="sleep 3600")], tmp_path,
            log=log, cancelled=cancelled)  # fmt: skip
    assert sleep_seen
    assert our_qemu_pids() == set()
