"""The document library: documents, passages and their full-text index.

The index is each database's own: PostgreSQL gets a GIN index on the maintained
`search_vector` column, SQLite an FTS5 table over the passages kept in step by
triggers. Each statement runs only on its vendor.
"""

import django.contrib.postgres.search
import django.db.models.deletion
import django.utils.timezone
from django.db import migrations, models


class VendorRunSQL(migrations.RunSQL):
    """RunSQL on one database vendor only (a no-op on the others)."""

    def __init__(self, vendor, sql, reverse_sql):
        super().__init__(sql, reverse_sql)
        self.vendor = vendor

    def deconstruct(self):
        name, args, kwargs = super().deconstruct()
        return name, [self.vendor, kwargs.pop("sql"), kwargs.pop("reverse_sql")], kwargs

    def database_forwards(self, app_label, schema_editor, from_state, to_state):
        if schema_editor.connection.vendor == self.vendor:
            super().database_forwards(app_label, schema_editor, from_state, to_state)

    def database_backwards(self, app_label, schema_editor, from_state, to_state):
        if schema_editor.connection.vendor == self.vendor:
            super().database_backwards(app_label, schema_editor, from_state, to_state)


POSTGRESQL_INDEX = (
    "CREATE INDEX gateway_passage_search ON gateway_passage USING gin (search_vector)",
    "DROP INDEX IF EXISTS gateway_passage_search",
)
SQLITE_FTS = (
    [
        "CREATE VIRTUAL TABLE gateway_passage_fts USING fts5(heading, text, "
        "content='gateway_passage', content_rowid='id', tokenize='porter unicode61 remove_diacritics 2')",
        "CREATE TRIGGER gateway_passage_fts_insert AFTER INSERT ON gateway_passage BEGIN "
        "INSERT INTO gateway_passage_fts(rowid, heading, text) VALUES (new.id, new.heading, new.text); END",
        "CREATE TRIGGER gateway_passage_fts_delete AFTER DELETE ON gateway_passage BEGIN "
        "INSERT INTO gateway_passage_fts(gateway_passage_fts, rowid, heading, text) "
        "VALUES ('delete', old.id, old.heading, old.text); END",
        "CREATE TRIGGER gateway_passage_fts_update AFTER UPDATE ON gateway_passage BEGIN "
        "INSERT INTO gateway_passage_fts(gateway_passage_fts, rowid, heading, text) "
        "VALUES ('delete', old.id, old.heading, old.text); "
        "INSERT INTO gateway_passage_fts(rowid, heading, text) VALUES (new.id, new.heading, new.text); END",
    ],
    [
        "DROP TRIGGER IF EXISTS gateway_passage_fts_update",
        "DROP TRIGGER IF EXISTS gateway_passage_fts_delete",
        "DROP TRIGGER IF EXISTS gateway_passage_fts_insert",
        "DROP TABLE IF EXISTS gateway_passage_fts",
    ],
)


class Migration(migrations.Migration):
    dependencies = [
        ("billing", "0007_usage_cache_writes_and_unit_prices"),
        ("gateway", "0005_console_catalog_stamp"),
    ]

    operations = [
        migrations.CreateModel(
            name="Document",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("name", models.CharField(max_length=255)),
                (
                    "kind",
                    models.CharField(
                        choices=[
                            ("txt", "Plain text"),
                            ("md", "Markdown"),
                            ("html", "HTML"),
                            ("pdf", "PDF"),
                            ("docx", "Word (docx)"),
                        ],
                        max_length=8,
                    ),
                ),
                ("size_bytes", models.PositiveIntegerField()),
                ("characters", models.PositiveIntegerField()),
                ("passage_count", models.PositiveIntegerField(default=0)),
                ("created_at", models.DateTimeField(default=django.utils.timezone.now)),
                (
                    "account",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="documents",
                        to="billing.account",
                    ),
                ),
            ],
            options={
                "ordering": ["-created_at", "-id"],
            },
        ),
        migrations.CreateModel(
            name="Passage",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("position", models.PositiveIntegerField()),
                ("heading", models.CharField(blank=True, max_length=300)),
                ("text", models.TextField()),
                (
                    "search_vector",
                    django.contrib.postgres.search.SearchVectorField(editable=False, null=True),
                ),
                (
                    "account",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="+",
                        to="billing.account",
                    ),
                ),
                (
                    "document",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="passages",
                        to="gateway.document",
                    ),
                ),
            ],
            options={
                "ordering": ["document", "position"],
            },
        ),
        migrations.AddIndex(
            model_name="document",
            index=models.Index(
                fields=["account", "-created_at"], name="gateway_doc_account_333ec2_idx"
            ),
        ),
        migrations.AddIndex(
            model_name="passage",
            index=models.Index(fields=["account"], name="gateway_pas_account_ba2e7f_idx"),
        ),
        migrations.AddConstraint(
            model_name="passage",
            constraint=models.UniqueConstraint(
                fields=("document", "position"), name="passage_position"
            ),
        ),
        VendorRunSQL("postgresql", *POSTGRESQL_INDEX),
        VendorRunSQL("sqlite", *SQLITE_FTS),
    ]
