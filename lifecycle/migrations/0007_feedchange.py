from django.db import migrations, models


class Migration(migrations.Migration):
    """The feed's change log. Its triggers are installed after every migrate
    (lifecycle.feed_stamp.install, on post_migrate), not here: SQLite drops a table's triggers
    when a later migration rebuilds the table."""

    dependencies = [
        ("lifecycle", "0006_zone_parity"),
    ]

    operations = [
        migrations.CreateModel(
            name="FeedChange",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("changes", models.PositiveBigIntegerField(default=1)),
                ("token", models.CharField(max_length=32)),
            ],
        ),
    ]
