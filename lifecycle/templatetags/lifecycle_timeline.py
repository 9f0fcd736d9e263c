"""The image page's timeline, drawn by lifecycle.timeline (the catalogue's renderer)."""

from __future__ import annotations

from django import template
from django.utils import timezone

from catalog.models import Image
from lifecycle import timeline

register = template.Library()


@register.inclusion_tag("lifecycle/timeline/image.html")
def image_timeline(image: Image) -> dict:
    today = timezone.localdate()
    row = timeline.row_for_image(image, today)
    return {
        "row": row,
        "svg": timeline.image_svg(row, today) if row.dates() else None,
        "table": timeline.dates_table([row], names=False),
        "today": today,
    }
