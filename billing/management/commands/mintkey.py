from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction
from django.utils.crypto import get_random_string

from accounts.models import ApiKey, User
from billing.ledger import account_for, credit_account
from billing.models import LedgerEntry
from billing.money import usd_to_micro


class Command(BaseCommand):
    help = "Create a user if needed, grant credit, and print a new API key on the last line."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("email")
        parser.add_argument("--credit-usd", default="0")
        parser.add_argument("--name", default="cli")
        parser.add_argument("--rpm", type=int)
        parser.add_argument("--tpm", type=int)
        parser.add_argument("--models", default="", help="Comma-separated allowlist")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            credit = usd_to_micro(Decimal(options["credit_usd"]))
        except (InvalidOperation, ValueError) as exc:
            raise CommandError("--credit-usd must be a number") from exc
        if credit < 0:
            raise CommandError("--credit-usd must not be negative")
        email = options["email"].strip().lower()
        with transaction.atomic():
            user = User.objects.filter(email=email).first()
            if user is None:
                user = User.objects.create_user(email)
                self.stdout.write(f"Created user {email}.")
            account = account_for(user)
            if credit:
                credit_account(
                    account=account,
                    amount=credit,
                    kind=LedgerEntry.Kind.GRANT,
                    idempotency_key=f"mintkey:{get_random_string(20)}",
                    memo="Granted by mintkey",
                )
            _, secret = ApiKey.objects.mint(
                user=user,
                name=options["name"],
                rpm_limit=options["rpm"],
                tpm_limit=options["tpm"],
                allowed_models=[m.strip() for m in options["models"].split(",") if m.strip()],
            )
        account.refresh_from_db()
        self.stdout.write(f"Balance: {account.balance_micro_usd} micro-USD.")
        self.stdout.write(secret)
