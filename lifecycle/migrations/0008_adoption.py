import django.db.models.deletion
import django.utils.timezone
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("catalog", "0007_adoption"),
        ("lifecycle", "0007_feedchange"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name="MarketplaceLabel",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("label", models.CharField(max_length=64, unique=True)),
                ("marketplace_image_id", models.CharField(max_length=64)),
                ("name", models.CharField(blank=True, max_length=255)),
                ("version_count", models.PositiveIntegerField(default=0)),
                ("valid_until", models.DateTimeField(blank=True, null=True)),
                (
                    "decision",
                    models.CharField(
                        choices=[
                            ("pending", "Waiting for a manager"),
                            ("mapped", "Mapped to an image"),
                            ("ignored", "Ignored"),
                        ],
                        default="pending",
                        max_length=16,
                    ),
                ),
                ("decided_at", models.DateTimeField(blank=True, null=True)),
                ("found_at", models.DateTimeField(default=django.utils.timezone.now)),
                (
                    "decided_by",
                    models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="+",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
                (
                    "image",
                    models.ForeignKey(
                        blank=True,
                        help_text="The catalogue image this label's versions are adopted into.",
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="marketplace_labels",
                        to="catalog.image",
                    ),
                ),
            ],
            options={
                "ordering": ["decision", "label"],
                "permissions": [
                    ("adopt_marketplace", "Can adopt the images of the cloud's Marketplace")
                ],
            },
        ),
    ]
