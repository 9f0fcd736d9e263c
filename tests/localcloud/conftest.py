"""localcloud as a real subprocess, the real SDK and boto3 pointed at it, a reset between
tests, and QCOW2 files made with qemu-img; and, for the tests marked `vm`, localcloud with
the QEMU machine backend and the product's way of importing an image into it."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import boto3
import pytest
import requests
from scaleway import Client
from scaleway.instance.v1.custom_api import InstanceUtilsV1API

REPO = Path(__file__).resolve().parents[2]
PROJECT = "11111111-1111-1111-1111-111111111111"
SECRET = "11111111-1111-1111-1111-111111111111"
STEP = 0.2  # LOCALCLOUD_TRANSITION_SECONDS of the test process


def _free_port(count: int = 1) -> int:
    """A port with `count` free consecutive ports after it (the API plus 3 S3 regions)."""
    for _ in range(50):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        if port + count >= 65535:
            continue
        try:
            for extra in range(1, count + 1):
                with socket.socket() as other:
                    other.bind(("127.0.0.1", port + extra))
        except OSError:
            continue
        return port
    raise RuntimeError("no free port range")


@dataclass
class LocalCloudProcess:
    """A running `python -m localcloud`, restartable on the same state directory."""

    state_dir: Path
    port: int
    proc: subprocess.Popen | None = None
    s3: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    start_timeout = 30.0  # seconds localcloud gets to answer after it is started

    def environment(self) -> dict[str, str]:
        """What the process gets on top of this one's environment: states on a timer."""
        return {"LOCALCLOUD_MACHINES": "timer", "LOCALCLOUD_TRANSITION_SECONDS": str(STEP)}

    def start(self) -> None:
        """Start it the way `make run` does (bin/service), its state directory given
        relative to the project's folder as `make run` gives it."""
        env = {
            **os.environ,
            "LOCALCLOUD_PORT": str(self.port),
            "LOCALCLOUD_STATE_DIR": os.path.relpath(self.state_dir, REPO),
            **self.environment(),
        }
        log = open(self.state_dir.parent / "localcloud.log", "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [str(REPO / "bin" / "service"), "localcloud"],
            cwd=REPO,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"localcloud exited with {self.proc.returncode}")
            try:
                answer = requests.get(f"{self.url}/localcloud/v1/endpoints", timeout=2)
                if answer.ok:
                    self.s3 = answer.json()["s3"]
                    return
            except requests.RequestException:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"localcloud did not answer within {self.start_timeout:.0f} s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def operator(self, method: str, path: str, **json: object) -> dict:
        answer = requests.request(method, f"{self.url}/localcloud/v1/{path}", json=json or None)
        answer.raise_for_status()
        return answer.json()


def sdk_client(cloud: LocalCloudProcess) -> Client:
    """The real Scaleway SDK pointed at a localcloud."""
    return Client(
        access_key="SCWXXXXXXXXXXXXXXXXX",
        secret_key=SECRET,
        api_url=cloud.url,
        default_project_id=PROJECT,
        default_zone="fr-par-1",
        default_region="fr-par",
    )


@pytest.fixture(scope="session")
def localcloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCloudProcess]:
    root = tmp_path_factory.mktemp("localcloud")
    cloud = LocalCloudProcess(state_dir=root / "state", port=_free_port(3))
    cloud.start()
    yield cloud
    cloud.stop()


@pytest.fixture(autouse=True)
def _reset(request: pytest.FixtureRequest) -> None:
    """An operator reset before each test that uses localcloud (a clean, unshifted cloud),
    and moto's own reset of every S3 endpoint (buckets are not localcloud's state)."""
    if "localcloud" in request.fixturenames:
        cloud = request.getfixturevalue("localcloud")
        cloud.operator("POST", "reset")
        for endpoint in cloud.s3.values():
            requests.post(f"{endpoint}/moto-api/reset", timeout=5).raise_for_status()


@pytest.fixture
def contract_checked(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Every Instance response the SDK receives in the test is validated against the
    OpenAPI spec (tests/localcloud/contract.py); the test fails on any disagreement."""
    from tests.localcloud import contract

    if not contract.available():
        yield []
        return
    import scaleway_core.api

    found: list[str] = []
    real_request = scaleway_core.api.requests.request

    def checked(method: str, url: str, **kwargs: object) -> requests.Response:
        response = real_request(method, url, **kwargs)
        if "/instance/v1/" in url and response.headers.get("content-type", "").startswith(
            "application/json"
        ):
            found.extend(contract.problems(method, url, response.status_code, response.json()))
        return response

    monkeypatch.setattr(scaleway_core.api.requests, "request", checked)
    yield found
    assert not found, "responses disagree with the Instance OpenAPI spec:\n" + "\n".join(found)


@pytest.fixture
def client(localcloud: LocalCloudProcess, contract_checked: list[str]) -> Client:
    return sdk_client(localcloud)


@pytest.fixture
def api(client: Client) -> InstanceUtilsV1API:
    """InstanceUtilsV1API: every InstanceV1API call plus create_server and user data."""
    return InstanceUtilsV1API(client)


@pytest.fixture
def s3(localcloud: LocalCloudProcess):
    """boto3 S3 on fr-par's moto endpoint."""
    return boto3.client(
        "s3",
        endpoint_url=localcloud.s3["fr-par"],
        region_name="fr-par",
        aws_access_key_id="SCWXXXXXXXXXXXXXXXXX",
        aws_secret_access_key=SECRET,
    )


class Qcow2Files:
    """QCOW2 files made with qemu-img. The LUKS-encrypted one takes seconds of CPU (key
    derivation), so it is made in the background and waited for only when asked.

    qemu-img times its key derivation with the thread's CPU clock, whose ticks are coarse on
    a busy virtual machine: it may measure nothing and refuse ("Unable to get accurate CPU
    usage"). That is the fixture's tool failing, not localcloud, so a background file is made
    again (at most three times) and the last error is shown."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.paths: dict[str, Path] = {}
        self.pending: dict[str, subprocess.Popen] = {}
        self.commands: dict[str, list[str]] = {}

    def make(self, name: str, *args: str, background: bool = False) -> None:
        command = ["qemu-img", "create", "-q", "-f", "qcow2", *args]
        if background:
            self.commands[name] = command
            self.pending[name] = self._start(command)
        else:
            subprocess.run(command, check=True, cwd=self.root)
        self.paths[name] = self.root / f"{name}.qcow2"

    def _start(self, command: list[str]) -> subprocess.Popen:
        return subprocess.Popen(command, cwd=self.root, stderr=subprocess.PIPE, text=True)

    def __getitem__(self, name: str) -> Path:
        proc = self.pending.pop(name, None)
        for attempt in range(3):
            if proc is None:
                break
            _, stderr = proc.communicate(timeout=120)
            if proc.returncode == 0:
                break
            assert attempt < 2, f"qemu-img failed for {name}: {stderr.strip()}"
            proc = self._start(self.commands[name])
        return self.paths[name]


@pytest.fixture(scope="session")
def qcow2_files(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Qcow2Files]:
    """Small QCOW2 files: valid, zstd, backing chain, encrypted, too small, not QCOW2."""
    if shutil.which("qemu-img") is None:
        pytest.skip("qemu-img is not installed")
    files = Qcow2Files(tmp_path_factory.mktemp("qcow2"))
    files.make(
        "encrypted",
        "--object",
        "secret,id=s0,data=pw",
        "-o",
        "encrypt.format=luks,encrypt.key-secret=s0,encrypt.iter-time=10",
        "encrypted.qcow2",
        "1G",
        background=True,
    )
    files.make("valid", "valid.qcow2", "1G")
    files.make("zstd", "-o", "compression_type=zstd", "zstd.qcow2", "1G")
    files.make("backing", "-b", "valid.qcow2", "-F", "qcow2", "backing.qcow2")
    files.make("small", "small.qcow2", "64M")
    raw = files.root / "raw.qcow2"
    raw.write_bytes(b"\0" * 4096)
    files.paths["raw"] = raw
    yield files
    for proc in files.pending.values():
        proc.communicate()


def make_bucket(s3, name: str) -> str:
    """Create a bucket in the S3 client's region."""
    s3.create_bucket(
        Bucket=name, CreateBucketConfiguration={"LocationConstraint": s3.meta.region_name}
    )
    return name


def wait_for(fetch: Callable[[], object], done: Callable[[object], bool], timeout: float = 10):
    """Poll `fetch` until `done(result)`; the last result (fails the test on timeout)."""
    deadline = time.monotonic() + timeout
    while True:
        result = fetch()
        if done(result) or time.monotonic() > deadline:
            assert done(result), f"timed out waiting; last: {result!r}"
            return result
        time.sleep(0.05)


# --- localcloud with the QEMU machine backend (tests marked `vm`) -----------------------------

STATE_TIMEOUT = 300.0  # seconds a VM-backed resource gets to reach a state


@dataclass
class QemuCloud(LocalCloudProcess):
    """localcloud with the QEMU backend, small VMs, TCG (KVM hangs on the test hosts)."""

    def environment(self) -> dict[str, str]:
        return {
            **super().environment(),
            "LOCALCLOUD_MACHINES": "qemu",
            "LOCALCLOUD_ACCEL": os.environ.get("LOCALCLOUD_ACCEL", "tcg"),
            "LOCALCLOUD_VM_MEMORY_MB": os.environ.get("LOCALCLOUD_VM_MEMORY_MB", "768"),
            "LOCALCLOUD_VM_CPUS": "1",
            "LOCALCLOUD_POWEROFF_TIMEOUT": "90",
        }

    def kill(self) -> None:
        """SIGKILL, as a crash would: nothing runs the shutdown path."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)
        self.proc = None


def qemus_of(state_dir: Path) -> list[int]:
    """QEMU processes whose command line names this state directory."""
    marker = str(state_dir.resolve()).encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
            status = (entry / "status").read_text()
        except OSError:
            continue
        if b"qemu-system" in cmdline and marker in cmdline and "\nState:\tZ" not in status:
            found.append(int(entry.name))
    return found


def wait_until(fetch, done, timeout: float = STATE_TIMEOUT, what: str = "a state"):
    """Poll `fetch` every second until `done(value)`; the value (fails the test on timeout)."""
    deadline = time.monotonic() + timeout
    while True:
        value = fetch()
        if done(value):
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}; last: {value!r}"
        time.sleep(1)


def import_image(cloud: LocalCloudProcess, api: InstanceUtilsV1API, disk: Path, name: str):
    """The product's way in: upload the QCOW2 to Object Storage, import it as a snapshot,
    make an image of it."""
    s3 = boto3.client(
        "s3",
        endpoint_url=cloud.s3["fr-par"],
        region_name="fr-par",
        aws_access_key_id="SCWXXXXXXXXXXXXXXXXX",
        aws_secret_access_key=SECRET,
    )
    bucket = f"images-{name}"
    s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": "fr-par"})
    s3.upload_file(str(disk), bucket, f"{name}.qcow2")
    snapshot = api.create_snapshot(
        bucket=bucket, key=f"{name}.qcow2", volume_type="l_ssd", name=name
    ).snapshot
    wait_until(
        lambda: api.get_snapshot(snapshot_id=snapshot.id).snapshot.state,
        lambda state: state == "available",
        what="the imported snapshot",
    )
    return api.create_image(root_volume=snapshot.id, arch="x86_64", name=name).image


@pytest.fixture(scope="module")
def qemu_cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[QemuCloud]:
    root = tmp_path_factory.mktemp("qemu-cloud")
    cloud = QemuCloud(state_dir=root / "state", port=_free_port(3))
    cloud.start()
    yield cloud
    cloud.stop()
    assert not qemus_of(cloud.state_dir), "a VM outlived localcloud's shutdown"
