from django.db import migrations, models

from billing.migration_operations import AddIndexConcurrentlyOnPostgres


class Migration(migrations.Migration):
    # CONCURRENTLY cannot run in a transaction.
    atomic = False

    dependencies = [
        ("billing", "0008_logs_request_log"),
    ]

    operations = [
        AddIndexConcurrentlyOnPostgres(
            model_name="usagerecord",
            index=models.Index(fields=["model", "created_at"], name="usage_model_created"),
        ),
    ]
