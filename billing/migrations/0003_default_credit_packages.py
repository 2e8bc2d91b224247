from django.db import migrations

# (slug, name, price, credit, bonus) in micro-USD.
DEFAULT_PACKAGES = [
    ("starter", "Starter", 5_000_000, 5_000_000, 0),
    ("plus", "Plus", 20_000_000, 20_000_000, 1_000_000),
    ("pro", "Pro", 50_000_000, 50_000_000, 5_000_000),
    ("ultra", "Ultra", 100_000_000, 100_000_000, 15_000_000),
]


def seed_packages(apps, schema_editor):
    CreditPackage = apps.get_model("billing", "CreditPackage")
    for order, (slug, name, price, credit, bonus) in enumerate(DEFAULT_PACKAGES):
        CreditPackage.objects.get_or_create(
            slug=slug,
            defaults={
                "name": name,
                "price_micro_usd": price,
                "credit_micro_usd": credit,
                "bonus_micro_usd": bonus,
                "order": order,
            },
        )


def remove_packages(apps, schema_editor):
    CreditPackage = apps.get_model("billing", "CreditPackage")
    CreditPackage.objects.filter(slug__in=[p[0] for p in DEFAULT_PACKAGES]).delete()


class Migration(migrations.Migration):
    dependencies = [("billing", "0002_packages_purchases_redemption_codes")]

    operations = [migrations.RunPython(seed_packages, remove_packages)]
