"""The usage page's filters: which of the user's records and rollups a page shows.

Periods are whole days in the active time zone (the user's: accounts.middleware).
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

from django import forms
from django.utils import timezone

from billing.models import UsageDay, UsageRecord

PERIODS = [
    ("1", "Today"),
    ("7", "Last 7 days"),
    ("30", "Last 30 days"),
    ("90", "Last 90 days"),
    ("custom", "Custom dates"),
]
DEFAULT_DAYS = 30
LONGEST_RANGE_DAYS = 366


class DateInput(forms.DateInput):
    input_type = "date"


class UsageFilterForm(forms.Form):
    days = forms.ChoiceField(label="Period", choices=PERIODS, initial="30", required=False)
    since = forms.DateField(label="From", required=False, widget=DateInput)
    until = forms.DateField(label="To", required=False, widget=DateInput)
    model = forms.ChoiceField(label="Model", required=False)
    key = forms.TypedChoiceField(label="API key", coerce=int, required=False, empty_value=None)
    source = forms.ChoiceField(
        label="Protocol",
        required=False,
        choices=[("", "Any protocol"), *UsageRecord.Source.choices],
    )
    status = forms.ChoiceField(
        label="Status",
        required=False,
        choices=[("", "Any status"), *UsageRecord.Status.choices],
    )

    def __init__(self, *args: Any, user: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # From the daily rollups: a few rows per day, where the raw records are millions.
        used = UsageDay.objects.filter(account__user=user).order_by()
        models = used.values_list("model", flat=True).distinct()
        model_field = self.fields["model"]
        assert isinstance(model_field, forms.ChoiceField)
        model_field.choices = [("", "Every model"), *((m, m) for m in sorted(models))]
        keys = user.api_keys.order_by("name").values_list("pk", "name", "kind")
        key_field = self.fields["key"]
        assert isinstance(key_field, forms.ChoiceField)
        key_field.choices = [
            ("", "Every key"),
            *((pk, "Web chat" if kind == "web" else name) for pk, name, kind in keys),
        ]

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        since, until = data.get("since"), data.get("until")
        if data.get("days") == "custom" or (not data.get("days") and (since or until)):
            until = until or timezone.localdate()
            since = since or until - timedelta(days=DEFAULT_DAYS - 1)
            if since > until:
                self.add_error("until", "The end date is before the start date.")
            elif (until - since).days >= LONGEST_RANGE_DAYS:
                self.add_error("since", f"Choose at most {LONGEST_RANGE_DAYS} days.")
            else:
                data.update(days="custom", since=since, until=until)
        return data

    def dates(self) -> tuple[date, date]:
        """The first and last local day chosen (the last 30 until the form says otherwise)."""
        data = self.cleaned_data if self.is_valid() else {}
        if data.get("days") == "custom":
            return data["since"], data["until"]
        today = timezone.localdate()
        return today - timedelta(days=int(data.get("days") or DEFAULT_DAYS) - 1), today

    def narrowed(self, rows: Any) -> Any:
        """Rows (records or rollups) of the chosen model, key and protocol."""
        data = self.cleaned_data if self.is_valid() else {}
        for name, column in (("model", "model"), ("key", "api_key_id"), ("source", "source")):
            if data.get(name):
                rows = rows.filter(**{column: data[name]})
        return rows

    def filtered(self, records: Any) -> tuple[Any, int]:
        """The records matching the form, and the period in days."""
        first, last = self.dates()
        zone = timezone.get_current_timezone()
        records = self.narrowed(records).filter(
            created_at__gte=datetime.combine(first, datetime.min.time(), zone),
            created_at__lt=datetime.combine(last + timedelta(days=1), datetime.min.time(), zone),
        )
        data = self.cleaned_data if self.is_valid() else {}
        if data.get("status"):
            records = records.filter(status=data["status"])
        return records, (last - first).days + 1
