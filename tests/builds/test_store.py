"""The artefact store: a local directory by default, an S3 bucket (localcloud's moto here)
when workers run on several machines, so that a done stage's files come back on another one.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest

from builds import tasks
from builds.cache import DownloadCache
from builds.choices import BuildState, StageName, StageState
from builds.queue import request_build
from builds.stages.registry import outputs_exist
from builds.store import (
    LocalStore,
    S3Store,
    artefact_store,
    key_for_artefact,
    key_for_cache,
)
from catalog.models import RecipeStep
from cloud import objectstorage
from tests.builds.factories import demo_image, serve_demo_file
from tests.builds.upstream_server import sha256_file

pytestmark = pytest.mark.django_db(transaction=True)

BUCKET = "factory-test-store"


@pytest.fixture
def factory_dirs(settings, tmp_path):
    settings.ARTEFACT_DIR = tmp_path / "artefacts"
    settings.DOWNLOAD_CACHE_DIR = tmp_path / "cache"
    settings.DOWNLOAD_CACHE_MAX_BYTES = 0
    settings.UPSTREAM_ALLOWED_HOSTS = ["127.0.0.1"]
    return tmp_path


@pytest.fixture
def s3_store(settings, cloud, factory_dirs):
    settings.ARTEFACT_STORE = "s3"
    settings.ARTEFACT_STORE_BUCKET = BUCKET
    settings.ARTEFACT_STORE_REGION = "fr-par"
    return cloud


def _cached_file(tmp_path: Path, content: bytes) -> dict:
    """A file fetched into the download cache, as the fetch stage records it."""
    sha256 = hashlib.sha256(content).hexdigest()
    source = tmp_path / "download.part"
    source.write_bytes(content)
    cache = DownloadCache(tmp_path / "cache")
    path = cache.put(source, sha256, url="http://127.0.0.1/img.qcow2", upstream={"sha512": "ab"})
    return {
        "path": str(path),
        "url": "http://127.0.0.1/img.qcow2",
        "serial": "1",
        "sha256": sha256,
        "size": len(content),
        "checksum": "sha512:ab",
    }


def test_keys() -> None:
    assert key_for_cache("AB" * 32) == "cache/sha256/" + "ab" * 32
    assert key_for_artefact("debian-12", "x86_64", 7) == "artefacts/debian-12/x86_64/build-7.qcow2"


def test_a_fetched_file_comes_back_from_s3_after_the_cache_is_wiped(s3_store, factory_dirs) -> None:
    outputs = _cached_file(factory_dirs, b"upstream image " * 5000)
    store = artefact_store()
    assert isinstance(store, S3Store)
    store.save(Path(outputs["path"]), key_for_cache(outputs["sha256"]))
    assert key_for_cache(outputs["sha256"]) in s3_store.objects("fr-par", prefix="cache/")

    shutil.rmtree(factory_dirs / "cache")  # another machine: an empty cache folder

    assert outputs_exist(StageName.FETCH, outputs)
    path = Path(outputs["path"])
    assert path.is_file() and sha256_file(path) == outputs["sha256"]
    cache = DownloadCache(factory_dirs / "cache")
    assert cache.lookup(outputs["sha256"]) == path
    assert cache.find_upstream("sha512", "ab") == outputs["sha256"], "index lost"
    assert not list(cache.partial_dir.glob("*.part")), "a restore left a temporary file"


def test_a_restored_fetch_lands_in_this_machines_cache_folder(
    s3_store, factory_dirs, settings
) -> None:
    outputs = _cached_file(factory_dirs, b"x" * 70000)
    artefact_store().save(Path(outputs["path"]), key_for_cache(outputs["sha256"]))
    shutil.rmtree(factory_dirs / "cache")
    settings.DOWNLOAD_CACHE_DIR = factory_dirs / "other-cache"

    assert outputs_exist(StageName.FETCH, outputs)
    assert Path(outputs["path"]).parent == factory_dirs / "other-cache" / "sha256"
    assert sha256_file(Path(outputs["path"])) == outputs["sha256"]


def test_a_finalized_artefact_comes_back_and_a_corrupt_one_is_refused(
    s3_store, factory_dirs
) -> None:
    dest = factory_dirs / "artefacts" / "debian-12" / "x86_64" / "build-3.qcow2"
    dest.parent.mkdir(parents=True)
    dest.write_bytes(b"qcow2 artefact" * 1000)
    outputs = {"path": str(dest), "sha256": sha256_file(dest), "size": dest.stat().st_size}
    artefact_store().save(dest, key_for_artefact("debian-12", "x86_64", 3))
    dest.unlink()

    assert outputs_exist(StageName.FINALIZE, outputs)
    assert sha256_file(dest) == outputs["sha256"]

    dest.unlink()
    assert not outputs_exist(StageName.FINALIZE, {**outputs, "sha256": "0" * 64})
    assert not dest.exists()


def test_saving_an_object_of_the_same_size_again_is_skipped(
    s3_store, factory_dirs, monkeypatch
) -> None:
    path = factory_dirs / "file"
    path.write_bytes(b"a" * 1000)
    calls = []
    real_upload = objectstorage.upload
    monkeypatch.setattr(
        objectstorage, "upload", lambda *a, **k: calls.append(a) or real_upload(*a, **k)
    )
    artefact_store().save(path, "cache/sha256/" + "1" * 64)
    artefact_store().save(path, "cache/sha256/" + "1" * 64)
    assert len(calls) == 1


def test_restore_of_a_missing_key_answers_false(s3_store, factory_dirs) -> None:
    target = factory_dirs / "nothing"
    store = artefact_store()
    assert store.restore("cache/sha256/" + "0" * 64, target) is False  # no bucket yet
    other = factory_dirs / "other"
    other.write_bytes(b"other")
    store.save(other, "artefacts/x/y/build-1.qcow2")  # now the bucket exists
    assert store.restore("cache/sha256/" + "0" * 64, target) is False
    assert not target.exists()
    assert not outputs_exist(StageName.FETCH, {"path": str(target), "sha256": "0" * 64})


def test_the_local_store_changes_nothing(cloud, factory_dirs, settings) -> None:
    settings.ARTEFACT_STORE = "local"
    outputs = _cached_file(factory_dirs, b"local only" * 100)
    store = artefact_store()
    assert isinstance(store, LocalStore)
    store.save(Path(outputs["path"]), key_for_cache(outputs["sha256"]))
    assert not cloud.objects("fr-par", prefix="cache/")
    shutil.rmtree(factory_dirs / "cache")
    assert store.restore(key_for_cache(outputs["sha256"]), factory_dirs / "back") is False
    assert not outputs_exist(StageName.FETCH, outputs)


def test_a_build_resumed_on_another_machine_reuses_the_stored_download(
    s3_store, factory_dirs, settings, upstream, qcow2_image, monkeypatch
) -> None:
    name = serve_demo_file(upstream, qcow2_image)
    image = demo_image(upstream)
    # A secret the worker lacks stops the build at customize, before any appliance runs.
    RecipeStep.objects.create(
        image=image,
        position=1,
        type="write_file",
        params={"path": "/etc/token", "content": "${secret:DEMO_TOKEN}"},
    )
    monkeypatch.delenv("DEMO_TOKEN", raising=False)
    build = request_build(image, "x86_64").build
    assert tasks.run_build(build.pk) == BuildState.FAILED
    fetch = build.stages.get(name=StageName.FETCH)
    assert fetch.state == StageState.DONE
    key = key_for_cache(fetch.outputs["sha256"])
    assert key in s3_store.objects("fr-par", prefix="cache/")
    downloads = len(upstream.requests_for(name))

    shutil.rmtree(factory_dirs / "cache")  # the retry runs on a machine without the file
    build.refresh_from_db()
    assert build.reset_for_retry()
    assert tasks.run_build(build.pk) == BuildState.FAILED
    build.refresh_from_db()
    assert build.failure_stage == StageName.CUSTOMIZE
    assert len(upstream.requests_for(name)) == downloads, "downloaded again instead of restored"
    fetched = build.stages.get(name=StageName.FETCH).outputs
    assert sha256_file(Path(fetched["path"])) == fetch.outputs["sha256"]
