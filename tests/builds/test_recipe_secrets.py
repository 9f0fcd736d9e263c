"""Recipe secrets at build time: only names on RECIPE_SECRETS are read, short values are
refused, and a step printing a secret in a common encoding finds it masked in the build log.

The builds run the real pipeline up to the customize stage, which refuses before any
appliance is launched; the fetched file is put in place instead of downloaded.
"""

from __future__ import annotations

import base64
import hashlib
import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote

import pytest

from builds import tasks
from builds.choices import BuildState, StageName, StageState
from builds.models import Build, StageLogLine
from builds.queue import request_build
from builds.stages.context import StageContext
from catalog.models import RecipeStep
from tests.catalog.factories import os_image

pytestmark = pytest.mark.django_db(transaction=True)

VALUE = "Zq8-w!x/Kp3+yT~v"  # needs URL-encoding; its base64 has '+' and '/'


@pytest.fixture
def build_of(settings, tmp_path):
    """A build of an image whose recipe runs `command`, its fetch stage already done."""
    settings.ARTEFACT_DIR = tmp_path / "artefacts"
    settings.DOWNLOAD_CACHE_DIR = tmp_path / "cache"

    def make(command: str) -> Build:
        image = os_image("debian_secrets")
        RecipeStep.objects.create(
            image=image, position=1, type="run_command", params={"command": command}
        )
        build = request_build(image, "x86_64").build
        fetched = tmp_path / "upstream.qcow2"
        fetched.write_bytes(b"not used: the customize stage stops before reading it")
        build.stages.filter(name=StageName.FETCH).update(
            state=StageState.DONE,
            outputs={
                "path": str(fetched),
                "sha256": hashlib.sha256(fetched.read_bytes()).hexdigest(),
            },
        )
        return build

    return make


def _log_of(build: Build) -> str:
    return "\n".join(
        StageLogLine.objects.filter(stage__build=build)
        .order_by("id")
        .values_list("text", flat=True)
    )


def test_a_build_refuses_a_secret_not_on_recipe_secrets_and_never_reads_it(
    settings, monkeypatch, build_of
) -> None:
    settings.RECIPE_SECRETS = ["DEMO_TOKEN"]
    monkeypatch.setenv("SCW_SECRET_KEY", VALUE)
    # Saved before the allow-list existed (the editor refuses it now): the build refuses too.
    build = build_of("echo ${secret:SCW_SECRET_KEY} | base64")

    assert tasks.run_build(build.pk) == BuildState.FAILED
    build.refresh_from_db()
    assert build.failure_stage == StageName.CUSTOMIZE
    assert build.failure_reason == (
        "Secret SCW_SECRET_KEY is not on RECIPE_SECRETS; allowed: DEMO_TOKEN."
    )
    assert VALUE not in _log_of(build)


def test_a_build_refuses_a_secret_shorter_than_eight_characters_without_printing_it(
    settings, monkeypatch, build_of
) -> None:
    settings.RECIPE_SECRETS = ["DEMO_TOKEN"]
    monkeypatch.setenv("DEMO_TOKEN", "x7Q!a2z")  # seven characters
    build = build_of("echo ${secret:DEMO_TOKEN}")

    assert tasks.run_build(build.pk) == BuildState.FAILED
    build.refresh_from_db()
    assert build.failure_stage == StageName.CUSTOMIZE
    assert "shorter than 8 characters" in build.failure_reason
    assert "DEMO_TOKEN" in build.failure_reason
    assert "x7Q!a2z" not in build.failure_reason
    assert "x7Q!a2z" not in _log_of(build)


def test_a_build_still_names_a_secret_missing_from_the_worker(
    settings, monkeypatch, build_of
) -> None:
    settings.RECIPE_SECRETS = ["DEMO_TOKEN"]
    monkeypatch.delenv("DEMO_TOKEN", raising=False)
    build = build_of("echo ${secret:DEMO_TOKEN}")

    assert tasks.run_build(build.pk) == BuildState.FAILED
    build.refresh_from_db()
    assert build.failure_reason == (
        "The recipe needs secret(s) not set in the worker's environment: DEMO_TOKEN"
    )


def _stream_forms(value: str) -> list[tuple[str, int]]:
    """The value inside longer base64 streams, at every alignment: (line, bytes around it)."""
    forms = []
    for before in range(6):
        stream = os.urandom(before) + value.encode() + os.urandom(5)
        forms.append((base64.b64encode(stream).decode(), before + 5))
    return forms


def test_a_secret_is_masked_in_the_build_log_in_its_common_encodings(build_of) -> None:
    build = build_of("true")
    stage = build.stages.get(name=StageName.CUSTOMIZE)
    ctx = StageContext(build, stage, "test-worker", {"DEMO_TOKEN": VALUE})
    data = VALUE.encode()
    printed = {
        "as it is": VALUE,
        "echo | base64": base64.b64encode(data + b"\n").decode(),
        "printf | base64": base64.b64encode(data).decode(),
        "base64 without padding": base64.b64encode(data).decode().rstrip("="),
        "URL-safe base64": base64.urlsafe_b64encode(data + b"\n").decode(),
        "hex": data.hex(),
        "HEX": data.hex().upper(),
        "URL-encoded": quote(VALUE, safe=""),
        "reversed": VALUE[::-1],
    }
    for how, text in printed.items():
        ctx.log(f"{how}: [{text}]")
    streams = _stream_forms(VALUE)
    for line, _ in streams:
        ctx.log(line)

    lines = list(stage.log_lines.order_by("id").values_list("text", flat=True))
    for (how, _), line in zip(printed.items(), lines[: len(printed)], strict=True):
        assert line == f"{how}: [****]"
    for (_, around), line in zip(streams, lines[len(printed) :], strict=True):
        # Only the characters that carry the bytes around the secret are left, at most.
        assert "****" in line
        assert len(line.replace("****", "")) <= (around * 8 + 5) // 6 + 4


def test_masking_leaves_the_rest_of_the_line_alone_and_joins_overlapping_secrets(
    build_of,
) -> None:
    build = build_of("true")
    stage = build.stages.get(name=StageName.CUSTOMIZE)
    ctx = StageContext(build, stage, "test-worker", {"A": "abcdefgh-1", "B": "h-1234567"})

    assert ctx.mask("x abcdefgh-1234567 y") == "x **** y"
    assert ctx.mask("plain text, nothing secret") == "plain text, nothing secret"


def test_recipe_secrets_may_not_name_the_factorys_own_credentials(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "RECIPE_SECRETS": "DEMO_TOKEN,SCW_SECRET_KEY",
        "DJANGO_SECRET_KEY": "test-only",
        "FACTORY_VAR_DIR": str(tmp_path),
    }
    env.pop("PYTEST_VERSION", None)
    done = subprocess.run(
        [sys.executable, "-c", "import config.settings"],
        env=env,
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert done.returncode != 0
    assert "RECIPE_SECRETS must not name the factory's own credentials: SCW_SECRET_KEY" in (
        done.stderr
    )
