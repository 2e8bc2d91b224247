"""The usage dashboard's filters: which of the user's records a page shows."""

from __future__ import annotations

from typing import Any

from django import forms

from billing.models import UsageRecord

PERIODS = [(1, "Today"), (7, "Last 7 days"), (30, "Last 30 days"), (90, "Last 90 days")]


class UsageFilterForm(forms.Form):
    days = forms.TypedChoiceField(
        label="Period", choices=PERIODS, coerce=int, initial=30, required=False
    )
    model = forms.ChoiceField(label="Model", required=False)
    key = forms.TypedChoiceField(label="API key", coerce=int, required=False, empty_value=None)

    status = forms.ChoiceField(
        label="Status",
        required=False,
        choices=[("", "Any status"), *UsageRecord.Status.choices],
    )

    def __init__(self, *args: Any, user: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        mine = UsageRecord.objects.for_user(user)
        models = mine.order_by().values_list("model", flat=True).distinct()
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

    def filtered(self, records: Any) -> tuple[Any, int]:
        """The records matching the form, and the period in days."""
        data = self.cleaned_data if self.is_valid() else {}
        days = data.get("days") or 30
        records = records.since_days(days)
        if data.get("model"):
            records = records.filter(model=data["model"])
        if data.get("key"):
            records = records.filter(api_key_id=data["key"])
        if data.get("status"):
            records = records.filter(status=data["status"])
        return records, days
