"""The request log's filters and pages: which of the account's records a page shows.

Every query starts from the account and reads newest first by (created_at, id), so it
walks one of UsageRecord's indexes (see its Meta) whatever the filters; pages are
keyset pages (a cursor of the last row seen), never OFFSET, so page 1,000 costs what
page 1 costs and a request settling meanwhile neither repeats a row nor skips one.
Periods are calendar days in the active time zone (the user's, when set).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

from django import forms
from django.db.models import Q
from django.utils import timezone

from billing.models import UsageRecord
from billing.money import micro_to_usd, usd_to_micro

PERIODS = [
    ("1", "Today"),
    ("7", "Last 7 days"),
    ("30", "Last 30 days"),
    ("90", "Last 90 days"),
    ("custom", "Custom dates"),
]
DEFAULT_DAYS = 30
LONGEST_RANGE_DAYS = 366
PAGE_SIZE = 50
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
CURSOR = re.compile(r"(\d{1,18})-(\d{1,18})")
# Ids people paste from an SDK's answer: the completion id carries the request id's digits.
COMPLETION_ID = re.compile(r"chatcmpl-([0-9a-f]{24})")


class DateInput(forms.DateInput):
    input_type = "date"


@dataclass(frozen=True, slots=True)
class Period:
    """A range of whole days in the active time zone: [start, end)."""

    first: date
    last: date
    start: datetime
    end: datetime

    @property
    def days(self) -> int:
        return (self.last - self.first).days + 1


def local_midnight(day: date) -> datetime:
    """The start of `day` in the active time zone, as an aware datetime."""
    return timezone.make_aware(datetime.combine(day, time.min), timezone.get_current_timezone())


def period_of(first: date, last: date) -> Period:
    return Period(first, last, local_midnight(first), local_midnight(last + timedelta(days=1)))


class UsageFilterForm(forms.Form):
    days = forms.ChoiceField(label="Period", choices=PERIODS, initial="30", required=False)
    since = forms.DateField(label="From", required=False, widget=DateInput)
    until = forms.DateField(label="To", required=False, widget=DateInput)
    key = forms.TypedChoiceField(label="API key", coerce=int, required=False, empty_value=None)
    model = forms.ChoiceField(label="Model", required=False)
    status = forms.ChoiceField(
        label="Status",
        required=False,
        choices=[("", "Any status"), *UsageRecord.Status.choices],
    )
    source = forms.ChoiceField(
        label="Protocol",
        required=False,
        choices=[("", "Any protocol"), *UsageRecord.Source.choices],
    )
    q = forms.CharField(label="Request id", required=False, max_length=80)

    def __init__(self, *args: Any, user: Any, account_id: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["q"].widget.attrs.update(placeholder="req_…", spellcheck="false")
        model_field = self.fields["model"]
        assert isinstance(model_field, forms.ChoiceField)
        used = UsageRecord.objects.models_used(account_id)
        model_field.choices = [("", "Every model"), *((m, m) for m in used if m)]
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
            today = timezone.localdate()
            until = until or today
            since = since or until - timedelta(days=DEFAULT_DAYS - 1)
            if since > until:
                self.add_error("until", "The end date is before the start date.")
            elif (until - since).days >= LONGEST_RANGE_DAYS:
                self.add_error("since", f"Choose at most {LONGEST_RANGE_DAYS} days.")
            else:
                data.update(days="custom", since=since, until=until)
        return data

    def period(self) -> Period:
        """The chosen days (the last 30 until the form says otherwise)."""
        data = self.cleaned_data if self.is_valid() else {}
        if data.get("days") == "custom":
            return period_of(data["since"], data["until"])
        days = int(data.get("days") or DEFAULT_DAYS)
        today = timezone.localdate()
        return period_of(today - timedelta(days=days - 1), today)

    def filtered(self, records: Any) -> tuple[Any, Period]:
        """The records matching the form, and the period they are from. A search by
        request id finds that request in any period."""
        data = self.cleaned_data if self.is_valid() else {}
        period = self.period()
        if wanted := (data.get("q") or "").strip():
            if found := COMPLETION_ID.fullmatch(wanted):
                wanted = f"req_{found.group(1)}"
            return records.with_request_id(wanted), period
        records = records.filter(created_at__gte=period.start, created_at__lt=period.end)
        for name, column in (
            ("model", "model"),
            ("key", "api_key_id"),
            ("status", "status"),
            ("source", "source"),
        ):
            if data.get(name):
                records = records.filter(**{column: data[name]})
        return records, period


def cursor_of(record: UsageRecord) -> str:
    """A row's place in the log: its time (µs since the epoch) and id."""
    return f"{(record.created_at - EPOCH) // timedelta(microseconds=1)}-{record.pk}"


def parse_cursor(value: str | None) -> tuple[datetime, int] | None:
    """The (created_at, id) of a cursor; None for anything else (the first page)."""
    found = CURSOR.fullmatch(value or "")
    if found is None:
        return None
    try:
        at = EPOCH + timedelta(microseconds=int(found.group(1)))
    except OverflowError:
        return None
    return at, int(found.group(2))


@dataclass(frozen=True, slots=True)
class LogPage:
    """One keyset page of the log, newest first, with the cursors of its neighbours."""

    rows: list[UsageRecord]
    newer: str | None
    older: str | None

    def __iter__(self) -> Iterator[UsageRecord]:
        return iter(self.rows)

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def has_other_pages(self) -> bool:
        return self.newer is not None or self.older is not None


def log_page(
    records: Any,
    *,
    after: str | None = None,
    before: str | None = None,
    size: int | None = None,
) -> LogPage:
    """The page of `records` just older than cursor `after`, or just newer than `before`
    (the first page without either): `size` + 1 rows read to know if more follow."""
    size = size or PAGE_SIZE
    if (place := parse_cursor(before)) is not None:
        at, pk = place
        newer_rows = list(
            records.filter(Q(created_at__gte=at) & (Q(created_at__gt=at) | Q(id__gt=pk))).order_by(
                "created_at", "id"
            )[: size + 1]
        )
        more = len(newer_rows) > size
        rows = newer_rows[:size][::-1]
        if not more and len(rows) < size:
            # Back at the top: show a full first page rather than a short one.
            return log_page(records, size=size)
        return LogPage(
            rows,
            newer=cursor_of(rows[0]) if more else None,
            older=cursor_of(rows[-1]) if rows else None,
        )
    place = parse_cursor(after)
    if place is not None:
        at, pk = place
        records = records.filter(Q(created_at__lte=at) & (Q(created_at__lt=at) | Q(id__lt=pk)))
    found = list(records.order_by("-created_at", "-id")[: size + 1])
    rows = found[:size]
    return LogPage(
        rows,
        newer=cursor_of(rows[0]) if place is not None and rows else None,
        older=cursor_of(rows[-1]) if len(found) > size else None,
    )


def batches(records: Any, size: int = 1000) -> Iterator[list[UsageRecord]]:
    """Every record of `records`, newest first, `size` at a time (keyset batches, for
    exports that must not hold the whole result in memory)."""
    after: str | None = None
    while True:
        page = log_page(records, after=after, size=size)
        if page.rows:
            yield page.rows
        if page.older is None:
            return
        after = page.older


class UsageSettingsForm(forms.Form):
    """What the account keeps and what it is e-mailed about (billing.content, billing.alerts)."""

    store_content = forms.BooleanField(
        label="Keep the messages and answer of each request",
        required=False,
        help_text="Off by default. Erase them sooner on a request's page, or all at once below.",
    )
    alert_balance_below_usd = forms.DecimalField(
        label="E-mail me when my balance falls below (USD)",
        required=False,
        min_value=Decimal("0.01"),
        max_value=Decimal("1000000"),
        decimal_places=2,
        help_text="Leave empty for no balance alert. Sent once each time the balance crosses it.",
    )
    alert_key_expiry_days = forms.IntegerField(
        label="E-mail me this many days before a key expires",
        min_value=0,
        max_value=365,
        help_text="0 turns the expiry alert off.",
    )
    alert_spend_cap = forms.BooleanField(
        label="E-mail me when a key reaches its spend cap",
        required=False,
    )

    @classmethod
    def for_account(cls, account: Any, data: Any = None) -> UsageSettingsForm:
        threshold = account.alert_balance_below_micro_usd
        initial = {
            "store_content": account.store_content,
            "alert_balance_below_usd": None if threshold is None else micro_to_usd(threshold),
            "alert_key_expiry_days": account.alert_key_expiry_days,
            "alert_spend_cap": account.alert_spend_cap,
        }
        return cls(data, initial=initial)

    def save(self, account: Any) -> None:
        """Apply the settings; a new balance threshold is armed afresh."""
        data = self.cleaned_data
        threshold = data["alert_balance_below_usd"]
        threshold = None if threshold is None else usd_to_micro(threshold)
        if threshold != account.alert_balance_below_micro_usd:
            account.balance_alert_sent = False
        account.alert_balance_below_micro_usd = threshold
        account.store_content = data["store_content"]
        account.alert_key_expiry_days = data["alert_key_expiry_days"]
        account.alert_spend_cap = data["alert_spend_cap"]
        account.save(
            update_fields=[
                "store_content",
                "alert_balance_below_micro_usd",
                "balance_alert_sent",
                "alert_key_expiry_days",
                "alert_spend_cap",
            ]
        )
