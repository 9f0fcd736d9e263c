"""`make demo-check`: a new user's first hour, replayed headless.

1. `make run` in a fresh clone of this repository (its own ports, its own var/ and .venv);
2. a browser (Playwright and Debian's Chromium) logs in with the administrator login that
   `make run` prints, opens "Debian 12 (local demo)" and clicks Rebuild;
3. it follows the build page until the build ends, then the version page until the version
   is tested with every check passed in every enabled zone;
4. it releases the version with the Release button;
5. it prints the time of each stage (and writes them as Markdown to var/demo-check.md).

Exit status 0 when every step worked. It takes about 30 minutes on a 2-core machine without
usable KVM. Run it before resolving any change to the pipeline, localcloud or the test runs.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from playwright.sync_api import Page, expect, sync_playwright

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
IMAGE_NAME = "Debian 12 (local demo)"
LOGIN = re.compile(r"Administrator login: (\S+) / (\S+)")


def free_port(count: int = 1) -> int:
    """A port with `count - 1` free ports after it."""
    for _ in range(100):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        try:
            for extra in range(1, count):
                with socket.socket() as other:
                    other.bind(("127.0.0.1", port + extra))
        except OSError:
            continue
        if port + count < 65535:
            return port
    raise RuntimeError("no free port range")


class Stack:
    """`make run` of a fresh clone, in its own process group."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.clone = root / "factory"
        self.log_path = root / "make-run.log"
        self.port = free_port()
        self.env = {
            **os.environ,
            "PORT": str(self.port),
            "DEMO_UPSTREAM_PORT": str(free_port()),
            "LOCALCLOUD_PORT": str(free_port(4)),
            "EMAIL_PORT": str(free_port()),
        }
        # What the calling make exported for this checkout, and real-cloud settings, stay out:
        # the clone is set up as a new user's would be.
        for name in (
            "SCW_ACCESS_KEY",
            "SCW_SECRET_KEY",
            "SCW_API_URL",
            "DATABASE_URL",
            "DEMO_UPSTREAM_URL",
            "DJANGO_SECRET_KEY_FILE",
            "MAKEFLAGS",
            "MAKELEVEL",
            "MFLAGS",
        ):
            self.env.pop(name, None)
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        subprocess.run(["git", "clone", "-q", str(REPO), str(self.clone)], check=True)
        log = open(self.log_path, "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            ["make", "run"],
            cwd=self.clone,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_ready(self, timeout: float) -> tuple[str, str]:
        """The administrator login, once the dashboard answers."""
        import requests

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"make run exited with {self.proc.returncode}")
            found = LOGIN.search(self.output())
            if found and "Dashboard: " in self.output():
                try:
                    if requests.get(f"{self.url}/accounts/login/", timeout=5).ok:
                        return found.group(1), found.group(2)
                except requests.RequestException:
                    pass
            time.sleep(2)
        raise RuntimeError(f"the dashboard did not answer within {timeout:.0f} s")

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGINT)  # bin/run-all's Ctrl-C: everything stops
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


def say(text: str) -> None:
    print(f"[demo-check {time.strftime('%H:%M:%S')}] {text}", flush=True)


def stage_rows(page: Page) -> list[tuple[str, str, str]]:
    """(stage, state, duration) of the build page's stage table."""
    rows = []
    for row in page.locator("tr[data-stage]").all():
        cells = [c.inner_text().strip() for c in row.locator("td").all()]
        rows.append((cells[0], cells[1].splitlines()[0] if cells[1] else "", cells[4]))
    return rows


def follow_build(page: Page, timeout: float) -> str:
    """Wait on the build page (it updates itself) until the build ends; its state."""
    live = page.locator("#build-live")
    deadline = time.monotonic() + timeout
    seen: dict[str, str] = {}
    while time.monotonic() < deadline:
        state = live.get_attribute("data-state") or ""
        for name, stage_state, _ in stage_rows(page):
            if seen.get(name) != stage_state:
                seen[name] = stage_state
                say(f"stage {name}: {stage_state}")
        if state in ("done", "failed", "cancelled"):
            return state
        page.wait_for_timeout(5000)
    raise RuntimeError(f"the build did not end within {timeout:.0f} s")


def journey(stack: Stack, user: str, password: str, timeout: float) -> list[str]:
    """The browser part; returns the report's lines."""
    report: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"], headless=True
        )
        page = browser.new_page()
        page.set_default_timeout(60_000)
        page.goto(f"{stack.url}/accounts/login/")
        page.get_by_label("User name").fill(user)
        page.get_by_label("Password").fill(password)
        page.get_by_role("button", name=re.compile("log in|sign in", re.I)).click()
        # The home page lists only what needs a person: the images are under "Catalogue".
        page.get_by_role("link", name="Catalogue", exact=True).first.click()
        page.get_by_role("link", name=IMAGE_NAME).first.click()
        say(f"on {page.url}; clicking Rebuild")
        started = time.monotonic()
        page.get_by_test_id("rebuild").click()
        page.get_by_test_id("queued").get_by_role("link").first.click()
        say(f"following {page.url}")
        state = follow_build(page, timeout)
        took = time.monotonic() - started
        rows = stage_rows(page)
        report += ["| stage | state | duration |", "|---|---|---|"]
        report += [f"| {name} | {st} | {duration} |" for name, st, duration in rows]
        report.append(f"| whole build | {state} | {took / 60:.1f} min |")
        if state != "done":
            failure = page.get_by_test_id("failure")
            why = failure.inner_text() if failure.count() else "no reason shown"
            raise RuntimeError(f"the build ended {state}: {why}\n" + "\n".join(report))
        page.get_by_test_id("version").get_by_role("link").click()
        verdict = page.get_by_test_id("test-verdict")
        verdict.wait_for()
        text = verdict.inner_text()
        say(f"version page: {text}")
        report.append(f"\nTest verdict: {text}")
        if "passed in every enabled zone" not in text:
            raise RuntimeError("the version is not tested green:\n" + "\n".join(report))
        page.get_by_test_id("release").click()
        readiness = page.get_by_test_id("readiness")
        expect(readiness).to_contain_text("Current release", timeout=60_000)
        say(f"released: {readiness.inner_text()}")
        report.append(f"Release (one click): {readiness.inner_text()}")
        browser.close()
    return report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--setup-timeout", type=float, default=1800)
    parser.add_argument("--build-timeout", type=float, default=5400)
    parser.add_argument("--keep", action="store_true", help="keep the clone (and its logs)")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="demo-check-"))
    stack = Stack(root)
    say(f"make run in a fresh clone: {stack.clone} (log: {stack.log_path})")
    began = time.monotonic()
    ok = False
    try:
        stack.start()
        user, password = stack.wait_ready(args.setup_timeout)
        setup = time.monotonic() - began
        say(f"dashboard up on {stack.url} after {setup:.0f} s")
        lines = [f"`make run` in a fresh clone until the dashboard answered: {setup:.0f} s", ""]
        lines += journey(stack, user, password, args.build_timeout)
        lines.append(f"Total: {(time.monotonic() - began) / 60:.1f} min.")
        ok = True
    except Exception as exc:
        say(f"FAILED: {exc}")
        lines = [f"FAILED: {exc}"]
        tail = stack.output()[-4000:] if stack.log_path.exists() else ""
        print(tail, file=sys.stderr)
    finally:
        stack.stop()
    report = "\n".join(lines)
    print(report)
    (REPO / "var").mkdir(exist_ok=True)
    (REPO / "var" / "demo-check.md").write_text(
        f"demo-check on {time.strftime('%Y-%m-%d %H:%M')}: {'passed' if ok else 'FAILED'}\n\n"
        + report
        + "\n"
    )
    if ok and not args.keep:
        subprocess.run(["rm", "-rf", str(root)], check=False)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
