"""The fetch stage end to end: resolve a channel, download, verify, cache.

Each distribution's channel is played by the local server with a checksum file in that
distribution's format and a small generated QCOW2 under that distribution's file name.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from builds.cache import DownloadCache
from builds.fetch import ChecksumMismatch, FetchError, NotQcow2, fetch
from builds.upstream import ResolveError, SourceSpec, resolve
from cloud.cancel import Cancelled
from tests.builds.upstream_server import GpgKey, UpstreamServer, make_qcow2

# Fixtures from the shared test server module (tests/builds/conftest.py is not ours).

HOSTS = ["127.0.0.1"]

UBUNTU_NAME = "ubuntu-24.04-server-cloudimg-amd64.img"
DEBIAN_NAME = "debian-12-genericcloud-amd64.qcow2"
ROCKY_NAME = "Rocky-9-GenericCloud-Base-9.7-20251123.2.x86_64.qcow2"
FEDORA_NAME = "Fedora-Cloud-Base-Generic-44-1.7.x86_64.qcow2"


def publish(server: UpstreamServer, image: Path, name: str) -> bytes:
    """Put `image` on the mirror under `name`; return its bytes."""
    shutil.copyfile(image, server.root / name)
    return (server.root / name).read_bytes()


def gnu_line(data: bytes, name: str, algorithm: str = "sha256", star: bool = False) -> str:
    return f"{hashlib.new(algorithm, data).hexdigest()} {'*' if star else ' '}{name}\n"


def bsd_lines(data: bytes, name: str) -> str:
    return f"# {name}: {len(data)} bytes\nSHA256 ({name}) = {hashlib.sha256(data).hexdigest()}\n"


def spec_for(server: UpstreamServer, **fields: str) -> SourceSpec:
    return SourceSpec(channel_url=server.url(), **fields)  # type: ignore[arg-type]


@pytest.fixture
def cache(tmp_path: Path) -> DownloadCache:
    return DownloadCache(tmp_path / "cache", max_bytes=1024**3)


@pytest.fixture
def ubuntu(upstream: UpstreamServer, qcow2_image: Path) -> SourceSpec:
    data = publish(upstream, qcow2_image, UBUNTU_NAME)
    other = b"manifest"
    (upstream.root / "SHA256SUMS").write_text(
        gnu_line(other, "ubuntu-24.04-server-cloudimg-amd64.manifest", star=True)
        + gnu_line(data, UBUNTU_NAME, star=True)
        + gnu_line(other, "ubuntu-24.04-server-cloudimg-arm64.img", star=True)
    )
    return spec_for(
        upstream,
        file_pattern=r"ubuntu-24\.04-server-cloudimg-amd64\.img",
        checksum_file="SHA256SUMS",
        checksum_format="gnu",
    )


def all_files(root: Path) -> list[str]:
    return sorted(
        str(p.relative_to(root))
        for p in root.rglob("*")
        if p.is_file() and not p.name.endswith(".lock")
    )


def fetch_it(spec: SourceSpec, cache: DownloadCache, **kwargs: object) -> object:
    return fetch(
        spec,
        cache=cache,
        allowed_hosts=kwargs.pop("allowed_hosts", HOSTS),  # type: ignore[arg-type]
        log=kwargs.pop("log", None),  # type: ignore[arg-type]
        progress=kwargs.pop("progress", None),  # type: ignore[arg-type]
        cancelled=kwargs.pop("cancelled", None),  # type: ignore[arg-type]
        **kwargs,  # type: ignore[arg-type]
    )


# -- resolving each distribution's channel ------------------------------------------------------


def test_it_resolves_an_ubuntu_channel_and_falls_back_to_the_hash_for_the_serial(
    ubuntu: SourceSpec,
    upstream: UpstreamServer,
) -> None:
    resolved = resolve(ubuntu, allowed_hosts=HOSTS)
    digest = hashlib.sha256((upstream.root / UBUNTU_NAME).read_bytes()).hexdigest()
    assert resolved.filename == UBUNTU_NAME
    assert resolved.url == upstream.url(UBUNTU_NAME)
    assert (resolved.algorithm, resolved.expected_digest) == ("sha256", digest)
    assert resolved.serial == digest[:12]


def test_it_takes_an_ubuntu_serial_from_the_release_directory_name(
    upstream: UpstreamServer,
) -> None:
    folder = upstream.root / "release-20260705"
    folder.mkdir()
    (folder / "SHA256SUMS").write_text(gnu_line(b"x", UBUNTU_NAME, star=True))
    spec = SourceSpec(
        channel_url=upstream.url("release-20260705/"),
        file_pattern=r"ubuntu-24\.04-server-cloudimg-amd64\.img",
        checksum_file="SHA256SUMS",
        checksum_format="gnu",
        serial_pattern=r"release-(?P<serial>\d{8}(\.\d+)?)/",
    )
    # The pattern is searched in the checksum file, which has no serial: hash prefix again.
    assert resolve(spec, allowed_hosts=HOSTS).serial == hashlib.sha256(b"x").hexdigest()[:12]


def test_it_finds_debians_serial_in_the_checksum_file_of_latest(
    upstream: UpstreamServer,
) -> None:
    (upstream.root / "SHA512SUMS").write_text(
        gnu_line(b"json", "debian-12-genericcloud-amd64-20260712-2537.json", "sha512")
        + gnu_line(b"img", DEBIAN_NAME, "sha512")
        + gnu_line(b"raw", "debian-12-genericcloud-amd64.raw", "sha512")
    )
    spec = spec_for(
        upstream,
        file_pattern=r"debian-12-genericcloud-amd64\.qcow2",
        checksum_file="SHA512SUMS",
        checksum_format="gnu",
        serial_pattern=r"debian-12-genericcloud-amd64-(?P<serial>\d{8}-\d{4})\.",
    )
    resolved = resolve(spec, allowed_hosts=HOSTS)
    assert resolved.serial == "20260712-2537"
    assert resolved.algorithm == "sha512"
    assert resolved.expected_digest == hashlib.sha512(b"img").hexdigest()


def test_it_takes_rockys_serial_from_the_file_name(upstream: UpstreamServer) -> None:
    (upstream.root / "CHECKSUM").write_text(
        bsd_lines(b"lvm", ROCKY_NAME.replace("Base", "LVM"))
        + bsd_lines(b"base", ROCKY_NAME)
        + bsd_lines(b"latest", "Rocky-9-GenericCloud-Base.latest.x86_64.qcow2")
    )
    spec = spec_for(
        upstream,
        file_pattern=r"Rocky-9-GenericCloud-Base-(?P<serial>9\.\d+-\d{8}\.\d+)\.x86_64\.qcow2",
        checksum_file="CHECKSUM",
        checksum_format="bsd",
    )
    resolved = resolve(spec, allowed_hosts=HOSTS)
    assert resolved.filename == ROCKY_NAME
    assert resolved.serial == "9.7-20251123.2"


def test_it_verifies_fedoras_clearsigned_checksum_and_takes_the_compose_id(
    upstream: UpstreamServer,
    gpg_key: GpgKey,
) -> None:
    body = bsd_lines(b"fedora", FEDORA_NAME) + bsd_lines(
        b"uki", FEDORA_NAME.replace("Generic", "UEFI-UKI")
    )
    (upstream.root / "Fedora-Cloud-44-1.7-x86_64-CHECKSUM").write_bytes(
        gpg_key.clearsign(body.encode())
    )
    spec = spec_for(
        upstream,
        file_pattern=r"Fedora-Cloud-Base-Generic-(?P<serial>\d+-\d+\.\d+)\.x86_64\.qcow2",
        checksum_file="Fedora-Cloud-44-1.7-x86_64-CHECKSUM",
        checksum_format="clearsigned-bsd",
        signing_key=gpg_key.armoured,
    )
    resolved = resolve(spec, allowed_hosts=HOSTS)
    assert resolved.serial == "44-1.7"
    assert resolved.expected_digest == hashlib.sha256(b"fedora").hexdigest()
    assert resolved.signed_by == gpg_key.fingerprint


def test_it_refuses_a_clearsigned_checksum_signed_by_another_key(
    upstream: UpstreamServer,
    gpg_key: GpgKey,
    other_gpg_key: GpgKey,
) -> None:
    (upstream.root / "CHECKSUM").write_bytes(
        other_gpg_key.clearsign(bsd_lines(b"fedora", FEDORA_NAME).encode())
    )
    spec = spec_for(
        upstream,
        file_pattern=r"Fedora-Cloud-Base-Generic-(?P<serial>\d+-\d+\.\d+)\.x86_64\.qcow2",
        checksum_file="CHECKSUM",
        checksum_format="clearsigned-bsd",
        signing_key=gpg_key.armoured,
    )
    with pytest.raises(ResolveError, match=r"failed verification: the signature was made with"):
        resolve(spec, allowed_hosts=HOSTS)


def test_it_lists_the_candidates_when_several_files_match(upstream: UpstreamServer) -> None:
    (upstream.root / "CHECKSUM").write_text(
        bsd_lines(b"a", "CentOS-Stream-GenericCloud-9-20260615.0.x86_64.qcow2")
        + bsd_lines(b"b", "CentOS-Stream-GenericCloud-x86_64-9-20260615.0.x86_64.qcow2")
    )
    spec = spec_for(
        upstream,
        file_pattern=r"CentOS-Stream-GenericCloud-.*\.qcow2",
        checksum_file="CHECKSUM",
        checksum_format="bsd",
    )
    with pytest.raises(
        ResolveError, match=r"2 files in CHECKSUM match .*GenericCloud-9-.*x86_64-9-"
    ):
        resolve(spec, allowed_hosts=HOSTS)


def test_it_lists_what_the_checksum_file_has_when_nothing_matches(
    ubuntu: SourceSpec,
) -> None:
    spec = SourceSpec(**{**ubuntu.__dict__, "file_pattern": r"ubuntu-26\.04-.*\.img"})
    with pytest.raises(ResolveError, match=r"no file in SHA256SUMS matches .*; it lists: .*arm64"):
        resolve(spec, allowed_hosts=HOSTS)


# -- fetching ----------------------------------------------------------------------------------


def test_it_fetches_verifies_and_caches_an_image(
    ubuntu: SourceSpec,
    cache: DownloadCache,
    upstream: UpstreamServer,
) -> None:
    lines: list[str] = []
    result = fetch_it(ubuntu, cache, log=lines.append)
    data = (upstream.root / UBUNTU_NAME).read_bytes()
    sha = hashlib.sha256(data).hexdigest()
    assert result.path == cache.root / "sha256" / sha
    assert result.path.read_bytes() == data
    assert (result.sha256, result.size, result.from_cache) == (sha, len(data), False)
    assert (result.checksum_algorithm, result.checksum) == ("sha256", sha)
    assert result.filename == UBUNTU_NAME and result.url == upstream.url(UBUNTU_NAME)
    assert any("verified" in line for line in lines)
    assert all_files(cache.root) == [f"sha256/{sha}", f"sha256/{sha}.json"]


def test_it_reuses_the_cached_file_for_the_same_upstream_checksum(
    upstream: UpstreamServer,
    qcow2_image: Path,
    cache: DownloadCache,
) -> None:
    data = publish(upstream, qcow2_image, DEBIAN_NAME)
    (upstream.root / "SHA512SUMS").write_text(gnu_line(data, DEBIAN_NAME, "sha512"))
    spec = spec_for(
        upstream,
        file_pattern=r"debian-12-genericcloud-amd64\.qcow2",
        checksum_file="SHA512SUMS",
        checksum_format="gnu",
    )
    first = fetch_it(spec, cache)
    second = fetch_it(spec, cache)
    assert (first.from_cache, second.from_cache) == (False, True)
    assert second.path == first.path and second.sha256 == first.sha256
    assert second.checksum == hashlib.sha512(data).hexdigest()
    assert len(upstream.requests_for(DEBIAN_NAME)) == 1


def test_it_verifies_a_detached_signature_on_the_checksum_file(
    ubuntu: SourceSpec,
    upstream: UpstreamServer,
    gpg_key: GpgKey,
    cache: DownloadCache,
) -> None:
    sums = (upstream.root / "SHA256SUMS").read_bytes()
    (upstream.root / "SHA256SUMS.gpg").write_bytes(gpg_key.detach_sign(sums))
    spec = SourceSpec(
        **{**ubuntu.__dict__, "signature_file": "SHA256SUMS.gpg", "signing_key": gpg_key.armoured}
    )
    assert fetch_it(spec, cache).from_cache is False


def test_it_refuses_a_bad_signature_and_downloads_nothing(
    ubuntu: SourceSpec,
    upstream: UpstreamServer,
    gpg_key: GpgKey,
    cache: DownloadCache,
) -> None:
    sums = (upstream.root / "SHA256SUMS").read_bytes()
    (upstream.root / "SHA256SUMS.gpg").write_bytes(gpg_key.detach_sign(sums))
    # Someone swaps the image and its checksum line, but cannot re-sign.
    digest = hashlib.sha256((upstream.root / UBUNTU_NAME).read_bytes()).hexdigest().encode()
    (upstream.root / "SHA256SUMS").write_bytes(sums.replace(digest, b"0" * 64))
    spec = SourceSpec(
        **{**ubuntu.__dict__, "signature_file": "SHA256SUMS.gpg", "signing_key": gpg_key.armoured}
    )
    with pytest.raises(FetchError, match=r"failed verification: bad signature"):
        fetch_it(spec, cache)
    assert upstream.requests_for(UBUNTU_NAME) == []
    assert all_files(cache.root) == []


def test_it_refuses_a_checksum_mismatch_and_leaves_nothing(
    ubuntu: SourceSpec,
    upstream: UpstreamServer,
    cache: DownloadCache,
    tmp_path: Path,
) -> None:
    make_qcow2(tmp_path / "tampered.qcow2", data_mib=1)
    shutil.copyfile(tmp_path / "tampered.qcow2", upstream.root / UBUNTU_NAME)
    with pytest.raises(ChecksumMismatch, match=r"checksum mismatch: expected sha256 .* got "):
        fetch_it(ubuntu, cache)
    assert all_files(cache.root) == []


def test_it_refuses_a_file_that_is_not_a_qcow2(
    upstream: UpstreamServer,
    raw_image: Path,
    cache: DownloadCache,
) -> None:
    data = publish(upstream, raw_image, UBUNTU_NAME)
    (upstream.root / "SHA256SUMS").write_text(gnu_line(data, UBUNTU_NAME, star=True))
    spec = spec_for(
        upstream, file_pattern=r".*\.img", checksum_file="SHA256SUMS", checksum_format="gnu"
    )
    with pytest.raises(NotQcow2, match=r"^not a QCOW2 image \(qemu-img says format 'raw'\)$"):
        fetch_it(spec, cache)
    assert all_files(cache.root) == []


def test_it_refuses_a_qcow2_with_a_backing_file(
    upstream: UpstreamServer,
    qcow2_image: Path,
    cache: DownloadCache,
    tmp_path: Path,
) -> None:
    overlay = tmp_path / "overlay.qcow2"
    os.system(f"qemu-img create -q -f qcow2 -F qcow2 -b {qcow2_image} {overlay} >/dev/null 2>&1")
    data = publish(upstream, overlay, UBUNTU_NAME)
    (upstream.root / "SHA256SUMS").write_text(gnu_line(data, UBUNTU_NAME, star=True))
    spec = spec_for(
        upstream, file_pattern=r".*\.img", checksum_file="SHA256SUMS", checksum_format="gnu"
    )
    with pytest.raises(NotQcow2, match=r"backing file"):
        fetch_it(spec, cache)
    assert all_files(cache.root) == []


def test_it_refuses_a_channel_on_a_host_not_allowed(
    ubuntu: SourceSpec,
    upstream: UpstreamServer,
    cache: DownloadCache,
) -> None:
    with pytest.raises(FetchError, match=r"host not allowed: 127.0.0.1"):
        fetch_it(ubuntu, cache, allowed_hosts=["cloud-images.ubuntu.com"])
    assert upstream.requests == []


def test_it_refuses_an_image_redirected_to_a_host_not_allowed(
    ubuntu: SourceSpec,
    upstream: UpstreamServer,
    cache: DownloadCache,
) -> None:
    upstream.redirect(UBUNTU_NAME, upstream.url(UBUNTU_NAME).replace("127.0.0.1", "localhost"))
    with pytest.raises(FetchError, match=r"host not allowed: localhost"):
        fetch_it(ubuntu, cache)
    assert all_files(cache.root) == []


def test_it_reports_a_missing_checksum_file(
    upstream: UpstreamServer,
    cache: DownloadCache,
) -> None:
    spec = spec_for(upstream, file_pattern=r".*", checksum_file="SHA256SUMS", checksum_format="gnu")
    with pytest.raises(
        FetchError, match=r"not found \(HTTP 404\) at http://127\.0\.0\.1:\d+/SHA256SUMS"
    ):
        fetch_it(spec, cache)


def test_it_reports_a_server_error_on_the_image(
    ubuntu: SourceSpec,
    upstream: UpstreamServer,
    cache: DownloadCache,
) -> None:
    upstream.fail("500", path="/" + UBUNTU_NAME)
    with pytest.raises(FetchError, match=r"the server failed \(HTTP 500"):
        fetch_it(ubuntu, cache)
    assert all_files(cache.root) == []


def test_it_resumes_an_image_download_after_a_reset(
    ubuntu: SourceSpec,
    upstream: UpstreamServer,
    cache: DownloadCache,
) -> None:
    upstream.fail("reset", after_bytes=300_000, times=1, path="/" + UBUNTU_NAME)
    result = fetch_it(ubuntu, cache)
    first, second = upstream.requests_for(UBUNTU_NAME)
    assert (first.range, second.range) == (None, "bytes=300000-")
    assert result.sha256 == hashlib.sha256((upstream.root / UBUNTU_NAME).read_bytes()).hexdigest()


def test_it_refuses_an_untrusted_tls_certificate(
    upstream_tls: UpstreamServer,
    cache: DownloadCache,
) -> None:
    (upstream_tls.root / "SHA256SUMS").write_text(gnu_line(b"x", UBUNTU_NAME, star=True))
    spec = spec_for(
        upstream_tls, file_pattern=r".*\.img", checksum_file="SHA256SUMS", checksum_format="gnu"
    )
    with pytest.raises(FetchError, match=r"TLS certificate check failed"):
        fetch_it(spec, cache)


def test_it_removes_the_partial_file_when_cancelled(
    upstream: UpstreamServer,
    cache: DownloadCache,
    tmp_path: Path,
) -> None:
    big = make_qcow2(tmp_path / "big.qcow2", data_mib=6)
    data = publish(upstream, big, UBUNTU_NAME)
    (upstream.root / "SHA256SUMS").write_text(gnu_line(data, UBUNTU_NAME, star=True))
    spec = spec_for(
        upstream, file_pattern=r".*\.img", checksum_file="SHA256SUMS", checksum_format="gnu"
    )
    seen: list[int] = []
    with pytest.raises(Cancelled):
        fetch_it(
            spec,
            cache,
            progress=lambda done, total: seen.append(done),
            cancelled=lambda: len(seen) >= 3,
        )
    assert 0 < seen[-1] < len(data)
    assert all_files(cache.root) == []


@pytest.fixture
def tiny_cache(tmp_path: Path) -> Iterator[DownloadCache]:
    mount = tmp_path / "tiny"
    mount.mkdir()
    if os.system(f"mount -t tmpfs -o size=2m tmpfs {mount} 2>/dev/null") != 0:
        pytest.skip("cannot mount a 2 MiB tmpfs for the cache (needs root and mount rights)")
    yield DownloadCache(mount)
    os.system(f"umount {mount}")


def test_it_reports_a_full_disk_and_leaves_no_partial_file(
    upstream: UpstreamServer,
    tiny_cache: DownloadCache,
    tmp_path: Path,
) -> None:
    big = make_qcow2(tmp_path / "big.qcow2", data_mib=4)
    data = publish(upstream, big, UBUNTU_NAME)
    (upstream.root / "SHA256SUMS").write_text(gnu_line(data, UBUNTU_NAME, star=True))
    spec = spec_for(
        upstream, file_pattern=r".*\.img", checksum_file="SHA256SUMS", checksum_format="gnu"
    )
    with pytest.raises(FetchError, match=r"disk full while writing .*/partial/"):
        fetch_it(spec, tiny_cache)
    assert all_files(tiny_cache.root) == []


def test_spec_reads_an_upstream_source_model() -> None:
    from catalog.models import UpstreamSource

    source = UpstreamSource(
        channel_url="https://cloud.debian.org/images/cloud/bookworm/latest/",
        file_pattern=r"debian-12-genericcloud-amd64\.qcow2",
        checksum_file="SHA512SUMS",
        checksum_format="gnu",
        serial_pattern=r"amd64-(?P<serial>\d{8}-\d{4})\.",
    )
    spec = SourceSpec.from_model(source)
    assert spec.checksum_file == "SHA512SUMS"
    assert spec.signature_file == "" and spec.signing_key == ""
    assert spec.url_of("x.qcow2") == "https://cloud.debian.org/images/cloud/bookworm/latest/x.qcow2"
