from django.db import migrations, models


def drop_triggers(apps, schema_editor):
    """Unapplied: drop the feed's triggers before their table goes, or every write to the
    tables they watch would fail."""
    connection = schema_editor.connection
    quote = connection.ops.quote_name
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            cursor.execute(
                "SELECT name FROM sqlite_master WHERE type = 'trigger' AND name LIKE 'feed_change_%'"
            )
            for (name,) in cursor.fetchall():
                cursor.execute(f"DROP TRIGGER IF EXISTS {quote(name)}")
        elif connection.vendor == "postgresql":
            cursor.execute("DROP FUNCTION IF EXISTS lifecycle_feedchange_add() CASCADE")


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
        migrations.RunPython(migrations.RunPython.noop, drop_triggers),
    ]
