"""Notice sending throughput: our ledger-backed sender against a plain smtplib loop.

Both send the same messages (built by lifecycle.emails) over one connection to the same
local aiosmtpd server (a Sink in its own process), unthrottled (rate 0). The baseline does
nothing else; ours also claims a page of ledger rows in one statement before sending them
and marks the sent ones in one statement after, in a SQLite file. The baseline sends half
of the messages before our sender runs and half after, so that a load change on a shared
machine weighs on both alike. Prints the ratio (target >= 0.7x) and the process's peak
memory (target <= 250 MB).

    .venv/bin/python bench/notices_throughput.py [customers]   # default 100000
"""

from __future__ import annotations

import os
import resource
import smtplib
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_port(port: int) -> None:
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit("the SMTP sink did not start")


def main(count: int) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="bench-notices-"))
    port = _free_port()
    os.environ.update(
        SQLITE_PATH=str(tmp / "bench.sqlite3"),
        DJANGO_SECRET_KEY="bench-key",
        FACTORY_LOCAL="1",
        DJANGO_SETTINGS_MODULE="config.settings",
        EMAIL_HOST="127.0.0.1",
        EMAIL_PORT=str(port),
        LOG_LEVEL="WARNING",
        NOTICE_RATE_PER_SECOND="0",  # unlimited, like the baseline (send_due gets rate=0 too)
    )
    sys.path.insert(0, str(ROOT))
    sink = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "aiosmtpd",
            "-n",
            "-l",
            f"127.0.0.1:{port}",
            "-c",
            "aiosmtpd.handlers.Sink",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_port(port)
        import django

        django.setup()
        import datetime as dt

        from django.apps import apps
        from django.core.management import call_command
        from django.db import connection
        from django.utils import timezone

        from catalog.models import Category, Image
        from lifecycle import emails, notices
        from lifecycle.models import Customer, Notice, Usage

        call_command("migrate", verbosity=0)
        existing = set(connection.introspection.table_names())
        with connection.schema_editor() as editor:
            for model in apps.get_app_config("lifecycle").get_models():
                if model._meta.db_table not in existing:
                    editor.create_model(model)
        image = Image.objects.create(
            label="ubuntu_focal",
            name="Ubuntu 20.04",
            architectures=["x86_64"],
            category=Category.objects.create(name="Distributions"),
            state="deprecation_scheduled",
            deprecation_date=timezone.localdate() + dt.timedelta(days=60),
        )
        for start in range(0, count, 5000):
            batch = Customer.objects.bulk_create(
                Customer(
                    project_id=f"00000000-0000-0000-0000-{n:012d}",
                    name=f"Customer {n}",
                    email=f"c{n}@example.com",
                    language="fr" if n % 3 == 0 else "",
                )
                for n in range(start, min(count, start + 5000))
            )
            Usage.objects.bulk_create(
                Usage(customer=c, image=image, zone="fr-par-1", server_id=f"srv-{c.pk}")
                for c in batch
            )
        notices.plan_notices(image)
        due = Notice.objects.filter(kind="90").count()
        setup_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(
            f"{count} customers, {due} notices due (peak memory after planning: {setup_mb:.0f} MB)"
        )

        def plain_loop(first: int, last: int) -> tuple[int, float]:
            """The baseline over rows [first, last): the same messages, built the same way,
            plain smtplib over one connection; (messages sent, seconds)."""
            started = time.perf_counter()
            smtp = smtplib.SMTP("127.0.0.1", port)
            sent = 0
            for start in range(first, last, 500):
                rows = list(
                    Notice.objects.filter(kind="90")
                    .select_related("customer", "image", "image__replacement")
                    .order_by("id")[start : min(last, start + 500)]
                )
                usages = notices._usages_for(rows)
                for notice in rows:
                    message = emails.notice_email(notice, usages[(notice.customer_id, image.pk)])
                    smtp.sendmail(
                        message.from_email, message.to, message.message().as_bytes(linesep="\r\n")
                    )
                    sent += 1
            smtp.quit()
            return sent, time.perf_counter() - started

        half = due // 2
        sent_before, seconds_before = plain_loop(0, half)
        started = time.perf_counter()
        report = notices.send_due(rate=0)
        ours = report.sent / (time.perf_counter() - started)
        sent_after, seconds_after = plain_loop(half, due)
        sent_plain = sent_before + sent_after
        plain = sent_plain / (seconds_before + seconds_after)
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"plain smtplib loop: {sent_plain} messages, {plain:.0f} msg/s")
        print(
            f"ledger sender:      {report.sent} messages, {ours:.0f} msg/s (failed {report.failed})"
        )
        print(f"ratio: {ours / plain:.2f}x (target >= 0.70x)")
        print(f"peak memory (maxrss of the whole process): {peak_mb:.0f} MB (target <= 250 MB)")
    finally:
        sink.terminate()
        sink.wait()


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 100_000)
