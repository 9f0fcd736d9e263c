"""How a recurring lifecycle job goes through images: each on its own.

An error on one image (a bug, data stored before a check existed, an artefact that cannot be
removed) must never stop a job before the images after it. Each image's work runs in
`DailyRun.each`, which logs the error with the image's id, records it on the image
(`Image.lifecycle_error`, shown on its deprecation panel) and lets the job go on with the
next image. `DailyRun.finish` then clears this job's error from every image it did not fail
on this time, so an image shows the latest run's error and only while it lasts.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from django.utils import timezone

from catalog.models import Image

log = logging.getLogger(__name__)

# Enough to read the error on the panel; a traceback goes to the log, not to the row.
MAX_ERROR_CHARS = 2000


@dataclass
class DailyRun:
    """One run of a daily job over images, with the error of each image it failed on."""

    job: str
    failed: dict[int, str] = field(default_factory=dict)  # image id -> the error recorded
    failed_labels: list[str] = field(default_factory=list)

    @property
    def prefix(self) -> str:
        """How this job's errors start, so that another job's error is left alone."""
        return f"{self.job}: "

    @contextmanager
    def each(self, image: Image, step: str) -> Iterator[None]:
        """Run one image's `step`; an exception is logged and recorded on the image, not raised."""
        try:
            yield
        except Exception as exc:  # one image's failure, whatever it is, is that image's alone
            log.exception("%s: %s failed on image %s (%s)", self.job, step, image.pk, image.label)
            self.record(image, step, exc)

    def record(self, image: Image, step: str, exc: Exception) -> None:
        message = f"{self.prefix}{step} failed: {type(exc).__name__}: {exc}"[:MAX_ERROR_CHARS]
        self.failed[image.pk] = message
        if image.label not in self.failed_labels:
            self.failed_labels.append(image.label)
        try:
            Image.objects.filter(pk=image.pk).update(
                lifecycle_error=message, lifecycle_error_at=timezone.now()
            )
        except Exception:  # the database itself failing: the log above is all we can do
            log.exception("%s: could not record the error on image %s", self.job, image.pk)

    def finish(self) -> None:
        """Clear this job's error from the images it did not fail on in this run."""
        Image.objects.filter(lifecycle_error__startswith=self.prefix).exclude(
            pk__in=list(self.failed)
        ).update(lifecycle_error="", lifecycle_error_at=None)
