"""localcloud against real Scaleway traffic: the replay corpus.

The corpus (tests/localcloud/replay/specs/*.json) is condensed from the go-vcr recordings of
the public Terraform provider (scaleway/terraform-provider-scaleway, `internal/services/
{instance,block,marketplace}/testdata/*.cassette.yaml`): every recorded step, with the facts a
client relies on (method, path, query, body, status, the answer's keys, lifecycle states, the
values flows depend on) and none of the recording's text or ids. Each spec names its source.

Each spec is replayed on a fresh localcloud (timer backend) by replay/replayer.py: ids come
from earlier answers, GETs are polled until the recorded state, writes refused in a transient
state are tried again. Catalogue data the recordings assume is seeded first: Marketplace
labels through the operator API (an l_ssd and a Block image per label, published as
`instance_local` and `instance_sbs`), and objects the recordings upload get a real QCOW2.

Adding a spec: mirror the provider (the `fetch` of a GitHub repository, or a clone) and run
    .venv/bin/python -m tests.localcloud.replay.condense <git dir> \\
        internal/services/instance/testdata/<name>.cassette.yaml instance-<name>
then run this module. A spec that does not fully match yet goes into KNOWN_GAPS with the
reason; the test of that spec is then an expected failure, and fails once it matches (so the
entry is removed). The summary printed at the end is the share of steps answered as
Scaleway answered, over the whole corpus.
"""

from __future__ import annotations

import contextlib
import functools
import json
import subprocess
from collections.abc import Iterator

import pytest
import requests

from tests.localcloud.conftest import PROJECT, SECRET, LocalCloudProcess, make_bucket
from tests.localcloud.replay import replayer

# Spec -> why it does not match fully yet.
KNOWN_GAPS: dict[str, str] = {
    "instance-action-instance-export-snapshot-local": (
        "2 of 127 steps: Scaleway keeps the snapshot `exporting` for minutes after the object "
        "is written and the recording reads it meanwhile; localcloud's export is one timer "
        "step (0.2 s here), so those reads see `available`"
    ),
}

TOTALS: dict[str, tuple[int, int]] = {}


@pytest.fixture(scope="module")
def qcow2_bytes(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """A small valid QCOW2 (1 GB virtual), what every seeded or uploaded object holds."""
    root = tmp_path_factory.mktemp("replay-qcow2")
    try:
        subprocess.run(
            ["qemu-img", "create", "-q", "-f", "qcow2", "disk.qcow2", "1G"], cwd=root, check=True
        )
    except FileNotFoundError:
        pytest.skip("qemu-img is not installed")
    return (root / "disk.qcow2").read_bytes()


def _api(cloud: LocalCloudProcess, method: str, path: str, body: dict | None = None) -> dict:
    answer = requests.request(
        method, f"{cloud.url}{path}", json=body, headers={"X-Auth-Token": SECRET}, timeout=30
    )
    assert answer.ok, f"seeding {method} {path}: {answer.status_code} {answer.text}"
    return answer.json() if answer.content else {}


def _wait(cloud: LocalCloudProcess, path: str, key: str | None, field: str) -> None:
    for _ in range(200):
        body = _api(cloud, "GET", path)
        if (body[key] if key else body)[field] == "available":
            return
        replayer.time.sleep(0.05)
    raise AssertionError(f"{path} never became available")


def seed_label(cloud: LocalCloudProcess, s3, label: str, zone: str) -> None:
    """A Marketplace image `label` with one version and, in `zone`, an l_ssd image
    (`instance_local`, the types with local storage) and Block images (`instance_sbs`, one
    per architecture), as the Marketplace lists Ubuntu."""
    bucket = f"replay-seed-{zone}"
    key = f"{label}.qcow2"
    s3.head_bucket(Bucket=bucket)  # made by the caller
    local = _api(
        cloud,
        "POST",
        f"/instance/v1/zones/{zone}/snapshots",
        {"name": label, "bucket": bucket, "key": key, "project": PROJECT, "volume_type": "l_ssd"},
    )["snapshot"]
    _wait(cloud, f"/instance/v1/zones/{zone}/snapshots/{local['id']}", "snapshot", "state")
    block = _api(
        cloud,
        "POST",
        f"/block/v1/zones/{zone}/snapshots/import-from-object-storage",
        {"name": label, "bucket": bucket, "key": key, "project_id": PROJECT},
    )
    _wait(cloud, f"/block/v1/zones/{zone}/snapshots/{block['id']}", None, "status")
    images = {}
    for kind, root, arch in (
        ("local", local["id"], "x86_64"),
        ("sbs", block["id"], "x86_64"),
        ("sbs-arm", block["id"], "arm64"),
    ):
        images[kind] = _api(
            cloud,
            "POST",
            f"/instance/v1/zones/{zone}/images",
            {"name": f"{label}-{kind}", "root_volume": root, "arch": arch, "project": PROJECT},
        )["image"]["id"]
    types = _api(cloud, "GET", f"/instance/v1/zones/{zone}/products/servers")["servers"]
    with_local = [
        name
        for name, t in types.items()
        if t["arch"] == "x86_64" and t["volumes_constraint"]["max_size"] > 0
    ]
    every = [name for name, t in types.items() if t["arch"] == "x86_64"]
    arm = [name for name, t in types.items() if t["arch"] == "arm64"]
    operator = f"{cloud.url}/localcloud/v1/marketplace"
    requests.put(f"{operator}/images/{label}", json={"name": label}, timeout=10).raise_for_status()
    version = requests.post(
        f"{operator}/images/{label}/versions", json={"name": "replay"}, timeout=10
    ).json()
    requests.post(
        f"{operator}/versions/{version['id']}/local-images",
        json={
            "local_images": [
                {
                    "instance_image_id": images["local"],
                    "zone": zone,
                    "arch": "x86_64",
                    "compatible_commercial_types": with_local,
                    "type": "instance_local",
                },
                {
                    "instance_image_id": images["sbs"],
                    "zone": zone,
                    "arch": "x86_64",
                    "compatible_commercial_types": every,
                    "type": "instance_sbs",
                },
                {
                    "instance_image_id": images["sbs-arm"],
                    "zone": zone,
                    "arch": "arm64",
                    "compatible_commercial_types": arm,
                    "type": "instance_sbs",
                },
            ]
        },
        timeout=10,
    ).raise_for_status()


def _labels_and_zones(spec: dict) -> set[tuple[str, str]]:
    found = set()
    for step in spec["steps"]:
        query = dict(step["query"])
        if "image_label" in query:
            found.add((query["image_label"], query.get("zone", "fr-par-1")))
    return found


@functools.cache
def _spec(name: str) -> dict:
    return replayer.load(name)


@pytest.mark.parametrize(
    "name",
    [
        pytest.param(
            n, marks=pytest.mark.xfail(reason=KNOWN_GAPS[n], strict=True) if n in KNOWN_GAPS else ()
        )
        for n in replayer.names()
    ],
)
def test_localcloud_answers_as_scaleway_did(
    name: str, localcloud: LocalCloudProcess, s3, qcow2_bytes: bytes
) -> None:
    spec = _spec(name)
    for label, zone in _labels_and_zones(spec):
        bucket = f"replay-seed-{zone}"
        with contextlib.suppress(s3.exceptions.BucketAlreadyOwnedByYou):
            make_bucket(s3, bucket)
        s3.put_object(Bucket=bucket, Key=f"{label}.qcow2", Body=qcow2_bytes)
        seed_label(localcloud, s3, label, zone)
    run = replayer.Replayer(
        api_url=localcloud.url,
        s3_url=localcloud.s3["fr-par"],
        project=PROJECT,
        token=SECRET,
        object_data=lambda key: qcow2_bytes,
    )
    outcomes = run.run(spec)
    matched = sum(o.ok for o in outcomes)
    TOTALS[name] = (matched, len(outcomes))
    report = "\n".join(str(o) for o in outcomes if not o.ok)
    print(f"{name}: {matched}/{len(outcomes)} steps as Scaleway answered\n{report}")
    assert matched == len(outcomes), f"{spec['source']}\n{report}"


def test_the_corpus_covers_the_recorded_flows() -> None:
    """At least 25 recordings, and each area of the issue's list appears in some step."""
    specs = {n: _spec(n) for n in replayer.names()}
    assert len(specs) >= 25
    text = json.dumps(specs)
    for needed in (
        '"action": "poweron"',
        '"action": "backup"',
        '"action": "reboot"',
        "/images",
        "import-from-object-storage",
        '"bucket"',
        "/instance/v1/zones/fr-par-1/volumes",
        "/block/v1",
        "/security_groups",
        "/ips",
        "private-network-interfaces",
        "/marketplace/v2/local-images",
    ):
        assert needed in text, f"no spec covers {needed}"


@pytest.fixture(scope="module", autouse=True)
def _summary() -> Iterator[None]:
    """After the module: the share of the whole corpus answered as Scaleway answered."""
    yield
    if TOTALS:
        matched = sum(m for m, _ in TOTALS.values())
        total = sum(t for _, t in TOTALS.values())
        share = 100 * matched / total
        print(f"\nreplay corpus: {matched}/{total} steps ({share:.1f}%) as Scaleway answered")
