from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("catalog", "0006_storage_types"),
    ]

    operations = [
        migrations.AddField(
            model_name="imageversion",
            name="origin",
            field=models.CharField(
                choices=[("built", "Built here"), ("adopted", "Adopted (not built here)")],
                default="built",
                max_length=16,
            ),
        ),
        migrations.AddField(
            model_name="localimage",
            name="origin",
            field=models.CharField(
                choices=[("built", "Built here"), ("adopted", "Adopted (not built here)")],
                default="built",
                max_length=16,
            ),
        ),
    ]
