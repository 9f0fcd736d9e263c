"""The content-addressed download cache: layout, LRU eviction, locking, partial files."""

from __future__ import annotations

import hashlib
import multiprocessing
import os
from pathlib import Path

import pytest

from builds.cache import CacheError, DownloadCache


def staged(cache: DownloadCache, data: bytes, name: str = "x") -> tuple[Path, str]:
    path = cache.partial_path(name)
    path.write_bytes(data)
    return path, hashlib.sha256(data).hexdigest()


def test_it_stores_a_file_under_its_sha256_with_a_sidecar(tmp_path: Path) -> None:
    cache = DownloadCache(tmp_path / "cache")
    tmp, sha = staged(cache, b"hello image")
    final = cache.put(tmp, sha, url="https://example.org/a.qcow2", filename="a.qcow2")
    assert final == tmp_path / "cache" / "sha256" / sha
    assert final.read_bytes() == b"hello image"
    assert not tmp.exists()
    meta = cache.metadata(sha)
    assert meta["url"] == "https://example.org/a.qcow2"
    assert meta["filename"] == "a.qcow2"
    assert meta["size"] == len(b"hello image")
    assert "last_used" in meta


def test_it_finds_a_file_by_sha256_and_misses_an_unknown_one(tmp_path: Path) -> None:
    cache = DownloadCache(tmp_path)
    tmp, sha = staged(cache, b"abc")
    cache.put(tmp, sha)
    assert cache.lookup(sha) == tmp_path / "sha256" / sha
    assert cache.lookup("0" * 64) is None


def test_it_finds_a_file_by_its_upstream_digest(tmp_path: Path) -> None:
    cache = DownloadCache(tmp_path)
    tmp, sha = staged(cache, b"abc")
    sha512 = hashlib.sha512(b"abc").hexdigest()
    cache.put(tmp, sha, upstream={"sha512": sha512})
    assert cache.find_upstream("sha512", sha512) == sha
    assert cache.find_upstream("sha512", "f" * 128) is None
    assert cache.find_upstream("sha256", sha) == sha


def test_it_refuses_a_file_whose_hash_does_not_match_and_removes_it(tmp_path: Path) -> None:
    cache = DownloadCache(tmp_path)
    tmp, _ = staged(cache, b"corrupt")
    with pytest.raises(CacheError, match="checksum mismatch"):
        cache.put(tmp, hashlib.sha256(b"the real thing").hexdigest())
    assert not tmp.exists()
    assert cache.entries() == []


def test_it_keeps_the_existing_copy_when_the_same_file_is_added_again(tmp_path: Path) -> None:
    cache = DownloadCache(tmp_path)
    first, sha = staged(cache, b"same", "a")
    cache.put(first, sha)
    second, _ = staged(cache, b"same", "b")
    assert cache.put(second, sha) == tmp_path / "sha256" / sha
    assert not second.exists()
    assert len(cache.entries()) == 1


def test_it_evicts_the_least_recently_used_files_over_the_limit(tmp_path: Path) -> None:
    cache = DownloadCache(tmp_path, max_bytes=2500)
    shas = []
    for name in ("a", "b", "c"):
        tmp, sha = staged(cache, name.encode() * 1000, name)
        cache.put(tmp, sha)
        shas.append(sha)
    # a was evicted when c arrived (3000 > 2500); now use b so that c is the oldest.
    assert cache.lookup(shas[0]) is None
    cache.lookup(shas[1])
    tmp, sha_d = staged(cache, b"d" * 1000, "d")
    cache.put(tmp, sha_d)
    assert cache.lookup(shas[2]) is None
    assert cache.lookup(shas[1]) is not None
    assert cache.lookup(sha_d) is not None
    assert cache.total_size() <= 2500


def test_it_never_evicts_the_file_just_added(tmp_path: Path) -> None:
    cache = DownloadCache(tmp_path, max_bytes=100)
    old, sha_old = staged(cache, b"o" * 50, "old")
    cache.put(old, sha_old)
    big, sha_big = staged(cache, b"B" * 1000, "big")
    cache.put(big, sha_big)
    assert cache.lookup(sha_big) is not None
    assert cache.lookup(sha_old) is None


def test_it_never_shows_a_partial_file_among_the_final_ones(tmp_path: Path) -> None:
    cache = DownloadCache(tmp_path)
    data = os.urandom(3 * 1024 * 1024)
    sha = hashlib.sha256(data).hexdigest()
    partial = cache.partial_path("sha256-" + sha)
    partial.write_bytes(data[: len(data) // 2])  # a download that broke off halfway
    assert cache.lookup(sha) is None
    assert cache.entries() == []
    assert [p.name for p in (tmp_path / "sha256").iterdir()] == []
    with pytest.raises(CacheError):
        cache.put(partial, sha)  # half a file does not get in
    assert cache.lookup(sha) is None


def test_it_removes_partial_files_nobody_is_writing(tmp_path: Path) -> None:
    cache = DownloadCache(tmp_path)
    cache.partial_path("idle").write_bytes(b"x")
    with cache.partial_lock("busy") as busy:
        busy.write_bytes(b"y")
        assert cache.clean_partials() == 1
        assert busy.exists()
    assert not cache.partial_path("idle").exists()


def test_it_refuses_a_name_that_is_not_a_sha256(tmp_path: Path) -> None:
    with pytest.raises(CacheError, match="not a SHA-256"):
        DownloadCache(tmp_path).lookup("../../etc/passwd")


def _add_copy(root: str, data: bytes, name: str) -> None:
    cache = DownloadCache(root)
    tmp, sha = staged(cache, data, name)
    cache.put(tmp, sha)


def test_two_processes_adding_the_same_file_leave_one_good_copy(tmp_path: Path) -> None:
    data = os.urandom(4 * 1024 * 1024)
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_add_copy, args=(str(tmp_path), data, f"p{i}")) for i in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0, 0, 0]
    cache = DownloadCache(tmp_path)
    (entry,) = cache.entries()
    assert entry[0].read_bytes() == data
    assert list((tmp_path / "partial").glob("*.part")) == []
