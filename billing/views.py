from __future__ import annotations

import csv
import logging
from collections.abc import AsyncIterator
from typing import Any

import orjson
import stripe
from asgiref.sync import sync_to_async
from django import forms
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseBadRequest,
    HttpResponseRedirect,
    JsonResponse,
    QueryDict,
    StreamingHttpResponse,
)
from django.template.defaultfilters import pluralize
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_htmx.http import HttpResponseClientRedirect, push_url, trigger_client_event

from billing.charts import spend_chart
from billing.checkout import handle_event, malformed, purchases_enabled, start_checkout
from billing.content import transcript
from billing.ledger import account_for
from billing.models import (
    Account,
    CreditPackage,
    LedgerEntry,
    Purchase,
    RequestContent,
    UsageRecord,
)
from billing.redemption import RedemptionError, redeem_code
from billing.usage import Period, UsageFilterForm, UsageSettingsForm, log_page

log = logging.getLogger(__name__)

HISTORY_PAGE_SIZE = 20
CHART_DAYS = 30


class RedeemForm(forms.Form):
    code = forms.CharField(max_length=40, label="Redemption code")


class BuyForm(forms.Form):
    package = forms.ModelChoiceField(queryset=CreditPackage.objects.active())


def _balance_context(account: Account) -> dict[str, object]:
    return {
        "account": account,
        "floor": settings.UNLIMITED_MODE_FLOOR_MICRO_USD,
        "low_balance": settings.LOW_BALANCE_WARNING_MICRO_USD,
    }


@require_GET
@login_required
def index(request: HttpRequest) -> TemplateResponse:
    account = account_for(request.user)
    entries = LedgerEntry.objects.filter(account=account)
    tiers = list(CreditPackage.objects.bonus_tiers())
    context = {
        **_balance_context(account),
        "history": Paginator(entries.history(), HISTORY_PAGE_SIZE).get_page(
            request.GET.get("page")
        ),
        "packages": CreditPackage.objects.active(),
        "bonus_tiers": tiers,
        "top_bonus_percent": max((tier.bonus_percent for tier in tiers), default=0),
        "purchases_enabled": purchases_enabled(),
        "redeem_form": RedeemForm(),
        "chart": spend_chart(entries.daily_spend(days=CHART_DAYS)),
        "cancelled": request.GET.get("checkout") == "cancelled",
    }
    template = "billing/index.html"
    if request.htmx and request.htmx.target == "history":  # type: ignore[attr-defined]
        template = "billing/_history.html"
    return TemplateResponse(request, template, context)


@require_GET
@login_required
def balance(request: HttpRequest) -> TemplateResponse:
    return TemplateResponse(
        request, "billing/_balance.html", _balance_context(account_for(request.user))
    )


@require_POST
@login_required
def checkout(request: HttpRequest) -> HttpResponse:
    """Start a Stripe Checkout Session for a package and send the browser to it."""
    form = BuyForm(request.POST)
    if not form.is_valid():
        raise Http404("No such package on sale")
    package = form.cleaned_data["package"]
    if not purchases_enabled():
        messages.error(request, "Card purchases are turned off on this server.")
        return _redirect(request, reverse("billing:index"))
    success = request.build_absolute_uri(reverse("billing:checkout_success"))
    cancel = request.build_absolute_uri(reverse("billing:index")) + "?checkout=cancelled"
    try:
        _, url = start_checkout(
            account=account_for(request.user),
            package=package,
            success_url=f"{success}?session_id={{CHECKOUT_SESSION_ID}}",
            cancel_url=cancel,
        )
    except stripe.StripeError:
        log.exception("Stripe refused to create a Checkout Session")
        messages.error(request, "We could not reach the payment provider. Please try again.")
        return _redirect(request, reverse("billing:index"))
    return _redirect(request, url)


def _redirect(request: HttpRequest, url: str) -> HttpResponse:
    if request.htmx:  # type: ignore[attr-defined]
        return HttpResponseClientRedirect(url)
    return HttpResponseRedirect(url, status=303)


def _purchase(request: HttpRequest) -> Purchase:
    purchase = (
        Purchase.objects.for_user(request.user)
        .select_related("package", "account")
        .with_session_id(request.GET.get("session_id", ""))
        .first()
    )
    if purchase is None:
        raise Http404("No such purchase")
    return purchase


@require_GET
@login_required
def checkout_success(request: HttpRequest) -> TemplateResponse:
    """Back from Stripe: wait (polling) until the webhook has credited the purchase."""
    return TemplateResponse(request, "billing/success.html", {"purchase": _purchase(request)})


@require_GET
@login_required
def purchase_status(request: HttpRequest) -> TemplateResponse:
    return TemplateResponse(
        request, "billing/_purchase_status.html", {"purchase": _purchase(request)}
    )


@require_POST
@login_required
def redeem(request: HttpRequest) -> HttpResponse:
    form = RedeemForm(request.POST)
    redeemed = None
    if form.is_valid():
        try:
            redeemed = redeem_code(
                account=account_for(request.user), code=form.cleaned_data["code"]
            )
        except RedemptionError as exc:
            form.add_error("code", str(exc))
    if not request.htmx:  # type: ignore[attr-defined]
        if redeemed is not None:
            messages.success(request, f"Code redeemed: {redeemed.memo}.")
        else:
            messages.error(request, " ".join(map(str, form["code"].errors)) or "Enter a code.")
        return HttpResponseRedirect(reverse("billing:index"), status=303)
    response = TemplateResponse(
        request,
        "billing/_redeem.html",
        {"redeem_form": RedeemForm() if redeemed else form, "redeemed": redeemed},
    )
    if redeemed is not None:
        trigger_client_event(response, "balance-changed")
    return response


@require_POST
@login_required
def unlimited(request: HttpRequest) -> HttpResponse:
    """Switch unlimited mode (no rate limits, credits still apply) on or off."""
    account = account_for(request.user)
    wanted = request.POST.get("enabled") == "on"
    changed = account.set_unlimited(wanted)
    if not request.htmx:  # type: ignore[attr-defined]
        if wanted and not changed:
            messages.error(request, "Unlimited mode needs a higher balance.")
        return HttpResponseRedirect(reverse("billing:index"), status=303)
    return TemplateResponse(
        request,
        "billing/_unlimited.html",
        {**_balance_context(account), "refused": wanted and not changed},
    )


@csrf_exempt
@require_POST
def stripe_webhook(request: HttpRequest) -> HttpResponse:
    """Stripe's events, signature verified; each event id is acted on once."""
    if not settings.STRIPE_WEBHOOK_SECRET:
        return HttpResponseBadRequest("Stripe webhooks are not configured.")
    try:
        payload = request.body.decode()
        # Verified here and parsed below (not stripe.Webhook.construct_event): Stripe's
        # parser recurses without bound and builds objects from any JSON value.
        stripe.WebhookSignature.verify_header(
            payload,
            request.headers.get("Stripe-Signature", ""),
            settings.STRIPE_WEBHOOK_SECRET,
            tolerance=stripe.Webhook.DEFAULT_TOLERANCE,
        )
    except (ValueError, stripe.SignatureVerificationError):
        return HttpResponseBadRequest("Invalid payload or signature.")
    try:
        event = orjson.loads(payload)
    except orjson.JSONDecodeError:
        event = None
    problem = "the body is not JSON" if event is None else malformed(event)
    if problem is not None:
        # Signed, so Stripe (or someone holding the secret) sent it: worth a look.
        log.warning("Stripe event refused: %s", problem)
        return HttpResponseBadRequest(f"Malformed event: {problem}.")
    outcome = handle_event(event)
    log.info("Stripe event %s (%s): %s", event["id"], event["type"], outcome)
    return JsonResponse({"received": True, "outcome": outcome})


CSV_BATCH_SIZE = 1000
CSV_COLUMNS = [
    "time",
    "request_id",
    "key",
    "protocol",
    "model",
    "requested_model",
    "provider",
    "upstream_model",
    "status",
    "http_status",
    "error_code",
    "finish_reason",
    "stream",
    "prompt_tokens",
    "completion_tokens",
    "cached_tokens",
    "cache_write_tokens",
    "cost_micro_usd",
    "latency_ms",
    "ttft_ms",
    "attempts",
]


def _usage_records(request: HttpRequest) -> tuple[UsageFilterForm, Any, Period]:
    account = account_for(request.user)
    form = UsageFilterForm(request.GET or None, user=request.user, account_id=account.pk)
    records, period = form.filtered(UsageRecord.objects.for_account(account.pk))
    return form, records, period


def _log_rows(records: Any) -> Any:
    """The log's rows: the key's name joined, the wide JSON columns left behind."""
    return records.select_related("api_key").defer("route_log", "unit_prices")


@require_GET
@login_required
def usage(request: HttpRequest) -> TemplateResponse:
    """Usage dashboard: totals, daily spend, spend per model and the request log."""
    form, records, period = _usage_records(request)
    page = log_page(
        _log_rows(records), after=request.GET.get("after"), before=request.GET.get("before")
    )
    context = {
        "form": form,
        "page": page,
        "query": _query_without_page(request),
        "summary": records.summary(),
        "models": records.by_model()[:20],
        "chart": spend_chart(records.daily_spend(days=max(period.days, 7))),
        "days": period.days,
        "period": period,
    }
    template = "billing/usage.html"
    if request.htmx and request.htmx.target == "usage-log":  # type: ignore[attr-defined]
        template = "billing/_usage_log.html"
    response = TemplateResponse(request, template, context)
    if request.htmx:  # type: ignore[attr-defined]
        # The address bar shows the view as a short link to share: the filters that are
        # set, and the page's cursor.
        query = QueryDict(context["query"], mutable=True)
        for name in ("after", "before"):
            if request.GET.get(name):
                query[name] = request.GET[name]
        push_url(response, f"{request.path}?{query.urlencode()}" if query else request.path)
    return response


def _query_without_page(request: HttpRequest) -> str:
    """The filters that are set (the custom dates only with a custom period), for links."""
    custom = request.GET.get("days") in ("custom", "", None)
    query = QueryDict(mutable=True)
    for name in request.GET:
        value = request.GET.get(name, "")
        if not value or name in ("page", "after", "before"):
            continue
        if name in ("since", "until") and not custom:
            continue
        query[name] = value
    return query.urlencode()


@require_GET
@login_required
def usage_detail(request: HttpRequest, request_id: str) -> TemplateResponse:
    """One request's record: tokens, cost line items, route attempts, timings, its stored
    messages when the account keeps them (the owner's only: anyone else's is a 404)."""
    record = (
        UsageRecord.objects.for_user(request.user)
        .select_related("api_key", "account")
        .with_request_id(request_id)
        .first()
    )
    if record is None:
        raise Http404("No such request")
    content = RequestContent.objects.filter(usage=record).first()
    context = {
        "record": record,
        "content": content,
        "turns": transcript(content) if content else [],
    }
    return TemplateResponse(request, "billing/usage_detail.html", context)


class _Echo:
    """A file-like object whose write() returns the line, for csv.writer to stream."""

    def write(self, value: str) -> str:
        return value


def _csv_row(record: UsageRecord) -> list[Any]:
    key = "Web chat" if record.source == UsageRecord.Source.WEB else ""
    if not key and record.api_key is not None:
        key = record.api_key.name
    return [
        timezone.localtime(record.created_at).isoformat(),
        record.request_id,
        key,
        record.source,
        record.model,
        getattr(record, "requested_model", ""),
        record.provider,
        record.upstream_model,
        record.status,
        record.http_status or "",
        record.error_code,
        record.finish_reason,
        record.stream,
        record.prompt_tokens,
        record.completion_tokens,
        record.cached_tokens,
        record.cache_write_tokens,
        record.cost_micro_usd,
        record.latency_ms,
        "" if record.ttft_ms is None else record.ttft_ms,
        record.attempts,
    ]


async def _csv_lines(records: Any) -> AsyncIterator[str]:
    """The CSV, one keyset batch of CSV_BATCH_SIZE rows in memory at a time. Async, so
    the ASGI server streams it (Django would collect a sync iterator into a list)."""
    writer = csv.writer(_Echo())
    yield writer.writerow(CSV_COLUMNS)
    after: str | None = None
    while True:
        page = await sync_to_async(log_page)(records, after=after, size=CSV_BATCH_SIZE)
        for record in page:
            yield writer.writerow(_csv_row(record))
        if page.older is None:
            return
        after = page.older


@require_GET
@login_required
def usage_csv(request: HttpRequest) -> StreamingHttpResponse:
    """The filtered request log as CSV, newest first, every row of the period, streamed."""
    _, records, period = _usage_records(request)
    response = StreamingHttpResponse(_csv_lines(_log_rows(records)), content_type="text/csv")
    name = f"usage-{period.first.isoformat()}-to-{period.last.isoformat()}.csv"
    response["Content-Disposition"] = f'attachment; filename="{name}"'
    return response


@require_http_methods(["GET", "POST"])
@login_required
def usage_settings(request: HttpRequest) -> HttpResponse:
    """Prompt storage and e-mail alerts for the account."""
    account = account_for(request.user)
    form = UsageSettingsForm.for_account(
        account, request.POST if request.method == "POST" else None
    )
    if request.method == "POST" and form.is_valid():
        form.save(account)
        messages.success(request, "Usage settings saved.")
        return HttpResponseRedirect(reverse("billing:usage_settings"), status=303)
    stored = RequestContent.objects.filter(account=account).count()
    return TemplateResponse(
        request,
        "billing/usage_settings.html",
        {
            "form": form,
            "stored": stored,
            "retention_days": settings.PROMPT_RETENTION_DAYS,
        },
        status=400 if form.is_bound else 200,
    )


@require_POST
@login_required
def content_erase(request: HttpRequest, request_id: str) -> HttpResponse:
    """Erase the stored messages and answer of one of the user's requests."""
    record = UsageRecord.objects.for_user(request.user).with_request_id(request_id).first()
    if record is None:
        raise Http404("No such request")
    RequestContent.objects.filter(usage=record).delete()
    messages.success(request, "The messages of this request are erased.")
    return HttpResponseRedirect(
        reverse("billing:usage_detail", args=[record.request_id]), status=303
    )


@require_POST
@login_required
def content_erase_all(request: HttpRequest) -> HttpResponse:
    """Erase every stored message and answer of the account."""
    erased, _ = RequestContent.objects.filter(account=account_for(request.user)).delete()
    messages.success(request, f"Erased the stored messages of {erased} request{pluralize(erased)}.")
    return HttpResponseRedirect(reverse("billing:usage_settings"), status=303)
