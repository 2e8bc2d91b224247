from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

from django import forms
from django.conf import settings
from django.utils import timezone

from accounts.models import ApiKey, SpendPeriod

MICRO = 1_000_000
CENT = Decimal("0.01")
# The RPM/TPM columns are PositiveIntegerFields: 32-bit signed on PostgreSQL.
MAX_LIMIT = 2**31 - 1


class ApiKeyForm(forms.Form):
    """The settings of a new key, from the Keys page or the account API (JSON)."""

    name = forms.CharField(max_length=100, help_text="Something to recognise it by, e.g. “laptop”.")
    expires_on = forms.DateField(
        required=False,
        widget=forms.DateInput(attrs={"type": "date"}),
        help_text="The key stops working at the end of this day (UTC). Leave empty for never.",
    )
    allowed_models = forms.MultipleChoiceField(
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="Tick none to allow every model.",
    )
    rpm_limit = forms.IntegerField(
        label="Requests per minute",
        required=False,
        min_value=1,
        max_value=MAX_LIMIT,
        help_text="Empty: no limit.",
    )
    tpm_limit = forms.IntegerField(
        label="Tokens per minute",
        required=False,
        min_value=1,
        max_value=MAX_LIMIT,
        help_text="Empty: no limit.",
    )
    spend_cap_usd = forms.DecimalField(
        label="Spend cap (USD)",
        required=False,
        min_value=Decimal("0"),
        max_digits=12,
        decimal_places=2,
        help_text="Empty: limited only by your balance.",
    )
    spend_cap_period = forms.ChoiceField(
        label="Cap period", choices=SpendPeriod.choices, initial=SpendPeriod.MONTH, required=False
    )
    can_manage = forms.BooleanField(
        label="May manage keys through the account API",
        required=False,
        help_text="Lets programs holding this key create and revoke your keys.",
    )

    def __init__(self, *args: Any, models: list[tuple[str, str]], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        allowed = self.fields["allowed_models"]
        assert isinstance(allowed, forms.MultipleChoiceField)
        allowed.choices = models
        for name, default in (
            ("rpm_limit", settings.DEFAULT_KEY_RPM),
            ("tpm_limit", settings.DEFAULT_KEY_TPM),
        ):
            self.fields[name].help_text = (
                f"Empty: the default of {default:,} per minute." if default else "Empty: no limit."
            )

    @staticmethod
    def initial_for(key: ApiKey) -> dict[str, Any]:
        """The form's values for an existing key (the key's page to edit it)."""
        expires_on = None
        if key.expires_at is not None:
            # Stored as the midnight after the chosen day (the key works through it).
            expires_on = (key.expires_at - timedelta(days=1)).date()
        cap = key.spend_cap_micro_usd
        return {
            "name": key.name,
            "expires_on": expires_on,
            "allowed_models": list(key.allowed_models),
            "rpm_limit": key.rpm_limit,
            "tpm_limit": key.tpm_limit,
            "spend_cap_usd": None if cap is None else (Decimal(cap) / MICRO).quantize(CENT),
            "spend_cap_period": key.spend_cap_period,
            "can_manage": key.can_manage,
        }

    def clean_expires_on(self) -> Any:
        expires_on = self.cleaned_data["expires_on"]
        if expires_on is not None and expires_on < timezone.now().date():
            raise forms.ValidationError("Pick today or a later date.")
        if expires_on is not None and expires_on >= date.max:
            # The key stops at the end of the day: the next midnight must be a date.
            raise forms.ValidationError(f"Pick a date before {date.max.isoformat()}.")
        return expires_on

    def key_fields(self) -> dict[str, Any]:
        """Keyword arguments for `ApiKey.objects.mint`."""
        data = self.cleaned_data
        expires_at = None
        if data["expires_on"] is not None:
            midnight = datetime.combine(data["expires_on"] + timedelta(days=1), time.min)
            expires_at = midnight.replace(tzinfo=UTC)
        cap = data["spend_cap_usd"]
        return {
            "name": data["name"],
            "expires_at": expires_at,
            "allowed_models": list(data["allowed_models"]),
            "rpm_limit": data["rpm_limit"],
            "tpm_limit": data["tpm_limit"],
            "spend_cap_micro_usd": None if cap is None else int(cap * MICRO),
            "spend_cap_period": data["spend_cap_period"] or SpendPeriod.MONTH,
            "can_manage": data["can_manage"],
        }


class CloseAccountForm(forms.Form):
    confirm = forms.CharField(
        label="Type your email address to confirm",
        widget=forms.EmailInput(attrs={"autocomplete": "off"}),
    )

    def __init__(self, *args: Any, email: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.email = email

    def clean_confirm(self) -> str:
        confirm = self.cleaned_data["confirm"].strip()
        if confirm.lower() != self.email.lower():
            raise forms.ValidationError("That is not the email address of this account.")
        return confirm
