"""Streaming downloads against a real local server that misbehaves on demand."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from builds.download import DownloadError, download, fetch_bytes
from cloud.cancel import Cancelled
from tests.builds.upstream_server import UpstreamServer

# Fixtures from the shared test server module (tests/builds/conftest.py is not ours).

SIZE = 3 * 1024 * 1024 + 12345  # a few chunks and a ragged end


@pytest.fixture
def payload(upstream: UpstreamServer) -> bytes:
    data = os.urandom(SIZE)
    (upstream.root / "image.qcow2").write_bytes(data)
    return data


def get(server: UpstreamServer, dest: Path, **kwargs: object) -> object:
    return download(
        server.url("image.qcow2"),
        dest,
        allowed_hosts=["127.0.0.1"],
        **kwargs,  # type: ignore[arg-type]
    )


def test_it_streams_the_file_and_hashes_it(
    upstream: UpstreamServer,
    payload: bytes,
    tmp_path: Path,
) -> None:
    seen: list[tuple[int, int | None]] = []
    result = get(
        upstream,
        tmp_path / "partial" / "x.part",
        algorithms=["sha512"],
        progress=lambda done, total: seen.append((done, total)),
    )
    assert result.path.read_bytes() == payload
    assert result.sha256 == hashlib.sha256(payload).hexdigest()
    assert result.digests["sha512"] == hashlib.sha512(payload).hexdigest()
    assert seen[-1] == (SIZE, SIZE)
    assert len(seen) >= 4  # at least once per 1 MiB chunk


def test_it_resumes_with_a_range_request_after_a_reset(
    upstream: UpstreamServer,
    payload: bytes,
    tmp_path: Path,
) -> None:
    upstream.fail("reset", after_bytes=1_500_000, times=1)
    result = get(upstream, tmp_path / "x.part")
    first, second = upstream.requests_for("image.qcow2")
    assert first.range is None
    assert second.range == "bytes=1500000-"
    assert second.status == 206
    assert result.resumed_from == 0 and result.attempts == 2
    assert result.sha256 == hashlib.sha256(payload).hexdigest()


def test_it_keeps_the_partial_file_and_resumes_it_in_a_later_call(
    upstream: UpstreamServer,
    payload: bytes,
    tmp_path: Path,
) -> None:
    partial = tmp_path / "x.part"
    upstream.fail("reset", after_bytes=2_000_000, times=1)
    with pytest.raises(DownloadError, match=r"reset after 2000000 of"):
        get(upstream, partial, retries=0)
    assert partial.stat().st_size == 2_000_000
    result = get(upstream, partial)
    assert upstream.requests_for("image.qcow2")[-1].range == "bytes=2000000-"
    assert result.resumed_from == 2_000_000
    assert result.sha256 == hashlib.sha256(payload).hexdigest()


def test_it_starts_over_when_the_server_ignores_range(
    upstream: UpstreamServer,
    payload: bytes,
    tmp_path: Path,
) -> None:
    partial = tmp_path / "x.part"
    partial.write_bytes(b"stale bytes that are not the file")
    upstream.fail("ignore-range")
    result = get(upstream, partial)
    (request,) = upstream.requests_for("image.qcow2")
    assert request.range is not None and request.status == 200
    assert partial.read_bytes() == payload
    assert result.sha256 == hashlib.sha256(payload).hexdigest()


def test_it_says_not_found_for_a_404(upstream: UpstreamServer, tmp_path: Path) -> None:
    url = upstream.url("missing.qcow2")
    with pytest.raises(DownloadError) as err:
        download(url, tmp_path / "x.part", allowed_hosts=["127.0.0.1"])
    assert str(err.value) == f"not found (HTTP 404) at {url}"
    assert not (tmp_path / "x.part").exists()


@pytest.mark.parametrize("status", ["500", "503"])
def test_it_reports_a_server_error_after_retrying(
    upstream: UpstreamServer,
    payload: bytes,
    tmp_path: Path,
    status: str,
) -> None:
    upstream.fail(status)
    with pytest.raises(DownloadError, match=f"the server failed \\(HTTP {status}"):
        get(upstream, tmp_path / "x.part", retries=1)
    assert len(upstream.requests_for("image.qcow2")) == 2


def test_it_recovers_from_one_server_error(
    upstream: UpstreamServer,
    payload: bytes,
    tmp_path: Path,
) -> None:
    upstream.fail("503", times=1)
    result = get(upstream, tmp_path / "x.part")
    assert result.sha256 == hashlib.sha256(payload).hexdigest()


def test_it_reports_a_connection_reset(
    upstream: UpstreamServer,
    payload: bytes,
    tmp_path: Path,
) -> None:
    upstream.fail("reset", after_bytes=100_000)
    # Each of the three attempts resumes and gets 100000 more bytes before the reset.
    with pytest.raises(DownloadError, match=f"was reset after 300000 of {SIZE} bytes"):
        get(upstream, tmp_path / "x.part", retries=2)
    ranges = [r.range for r in upstream.requests_for("image.qcow2")]
    assert ranges == [None, "bytes=100000-", "bytes=200000-"]


def test_it_gives_up_on_a_stalled_server(
    upstream: UpstreamServer,
    payload: bytes,
    tmp_path: Path,
) -> None:
    upstream.fail("stall", after_bytes=10_000)
    with pytest.raises(DownloadError, match=r"stopped sending data"):
        get(upstream, tmp_path / "x.part", timeout=0.5, retries=0)


def test_it_refuses_an_untrusted_tls_certificate(
    upstream_tls: UpstreamServer,
    tmp_path: Path,
) -> None:
    (upstream_tls.root / "image.qcow2").write_bytes(b"x" * 1000)
    with pytest.raises(DownloadError, match=r"TLS certificate check failed"):
        get(upstream_tls, tmp_path / "x.part")


def test_it_trusts_a_tls_certificate_it_is_given(
    upstream_tls: UpstreamServer,
    tmp_path: Path,
) -> None:
    (upstream_tls.root / "image.qcow2").write_bytes(b"x" * 1000)
    result = get(upstream_tls, tmp_path / "x.part", verify=str(upstream_tls.cert))
    assert result.size == 1000


def test_it_refuses_a_host_not_allowed(upstream: UpstreamServer, tmp_path: Path) -> None:
    with pytest.raises(DownloadError, match=r"host not allowed: 127.0.0.1"):
        download(upstream.url("image.qcow2"), tmp_path / "x.part", allowed_hosts=["example.org"])
    assert upstream.requests == []


@pytest.mark.parametrize("url", ["http://127.0.0.1:99999/x.qcow2", "http://127.0.0.1:8o/x.qcow2"])
def test_a_malformed_url_is_a_download_error_that_names_it(url: str, tmp_path: Path) -> None:
    with pytest.raises(DownloadError, match="not a URL that can be downloaded") as caught:
        download(url, tmp_path / "x.part", allowed_hosts=["127.0.0.1"])
    assert url in str(caught.value)
    assert not (tmp_path / "x.part").exists()


def test_it_refuses_a_redirect_to_a_host_not_allowed(
    upstream: UpstreamServer,
    payload: bytes,
    tmp_path: Path,
) -> None:
    target = upstream.url("image.qcow2").replace("127.0.0.1", "localhost")
    upstream.redirect("/moved.qcow2", target)
    with pytest.raises(DownloadError, match=r"host not allowed: localhost"):
        download(upstream.url("moved.qcow2"), tmp_path / "x.part", allowed_hosts=["127.0.0.1"])
    assert [r.path for r in upstream.requests] == ["/moved.qcow2"]


def test_it_follows_a_redirect_to_an_allowed_host(
    upstream: UpstreamServer,
    payload: bytes,
    tmp_path: Path,
) -> None:
    upstream.redirect("/moved.qcow2", "/image.qcow2")
    result = download(upstream.url("moved.qcow2"), tmp_path / "x.part", allowed_hosts=["127.0.0.1"])
    assert result.sha256 == hashlib.sha256(payload).hexdigest()


def test_it_stops_after_five_redirects(upstream: UpstreamServer, tmp_path: Path) -> None:
    upstream.redirect("/loop", "/loop")
    with pytest.raises(DownloadError, match=r"more than 5 redirects"):
        fetch_bytes(upstream.url("loop"), allowed_hosts=["127.0.0.1"])
    assert len(upstream.requests) == 6


def test_it_removes_the_partial_file_when_cancelled(
    upstream: UpstreamServer,
    payload: bytes,
    tmp_path: Path,
) -> None:
    partial = tmp_path / "x.part"
    progress: list[int] = []
    with pytest.raises(Cancelled):
        get(
            upstream,
            partial,
            progress=lambda done, total: progress.append(done),
            cancelled=lambda: len(progress) >= 2,
        )
    assert 0 < progress[-1] < SIZE
    assert not partial.exists()


@pytest.fixture
def small_disk(tmp_path: Path) -> object:
    mount = tmp_path / "small-disk"
    mount.mkdir()
    done = os.system(f"mount -t tmpfs -o size=2m tmpfs {mount} 2>/dev/null")
    if done != 0:
        pytest.skip("cannot mount a 2 MiB tmpfs here (needs root and mount rights)")
    yield mount
    os.system(f"umount {mount}")


def test_it_reports_a_full_disk_and_removes_the_partial_file(
    upstream: UpstreamServer,
    payload: bytes,
    small_disk: Path,
) -> None:
    partial = small_disk / "partial" / "x.part"
    with pytest.raises(DownloadError, match=f"disk full while writing {partial}"):
        get(upstream, partial)
    assert not partial.exists()
