from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.db import transaction
from django.http import HttpRequest, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.crypto import get_random_string

from billing.ledger import credit_account
from billing.models import (
    Account,
    CreditPackage,
    Hold,
    LedgerEntry,
    Purchase,
    Redemption,
    RedemptionCode,
    StripeEvent,
    UsageRecord,
)
from billing.money import format_money, format_usd, usd_to_micro


class AdjustCreditForm(forms.Form):
    amount_usd = forms.DecimalField(
        max_digits=12, decimal_places=6, help_text="Positive grants credit, negative removes it."
    )
    kind = forms.ChoiceField(
        choices=[(LedgerEntry.Kind.GRANT, "Grant"), (LedgerEntry.Kind.ADJUSTMENT, "Adjustment")]
    )
    reason = forms.CharField(max_length=300)


class ReadOnlyAdminMixin:
    """The books: rows only the billing workflows write, so the admin shows, never edits.

    No add, change or delete for anyone, superusers included; without the delete
    permission Django also drops the bulk "delete selected" action. Mixed into model
    admins and inlines alike (their `has_add_permission` differ only in `obj`).
    """

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


class LedgerInline(ReadOnlyAdminMixin, admin.TabularInline):
    model = LedgerEntry
    extra = 0
    fields = ("created_at", "kind", "amount_micro_usd", "memo", "flagged", "idempotency_key")
    ordering = ["-created_at"]


@admin.register(Account)
class AccountAdmin(admin.ModelAdmin):
    list_display = ["user", "balance", "held", "unlimited", "created_at"]
    search_fields = ["user__email"]
    readonly_fields = ["user", "balance_micro_usd", "held_micro_usd", "created_at"]
    fields = ["user", "balance_micro_usd", "held_micro_usd", "unlimited", "created_at"]
    inlines = [LedgerInline]

    @admin.display(description="Balance")
    def balance(self, obj: Account) -> str:
        return format_money(obj.balance_micro_usd)

    @admin.display(description="Held")
    def held(self, obj: Account) -> str:
        return format_money(obj.held_micro_usd)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def get_urls(self):  # type: ignore[no-untyped-def]
        return [
            path(
                "<id:pk>/adjust/",
                self.admin_site.admin_view(self.adjust_view),
                name="billing_account_adjust",
            ),
            *super().get_urls(),
        ]

    def adjust_view(self, request: HttpRequest, pk: int) -> HttpResponseRedirect | TemplateResponse:
        """Grant or adjust credit with a reason that lands in the ledger."""
        account = get_object_or_404(Account, pk=pk)
        form = AdjustCreditForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            amount = usd_to_micro(form.cleaned_data["amount_usd"])
            with transaction.atomic():
                credit_account(
                    account=account,
                    amount=amount,
                    kind=form.cleaned_data["kind"],
                    idempotency_key=f"admin:{request.user.pk}:{get_random_string(16)}",
                    memo=f"{form.cleaned_data['reason']} (by {request.user})",
                )
            messages.success(request, f"Applied {format_money(amount)} to {account.user}.")
            return HttpResponseRedirect(reverse("admin:billing_account_change", args=[pk]))
        context = {
            **self.admin_site.each_context(request),
            "title": f"Adjust credit for {account.user}",
            "form": form,
            "account": account,
            "opts": self.model._meta,
        }
        return TemplateResponse(request, "admin/billing/account/adjust.html", context)


@admin.register(LedgerEntry)
class LedgerEntryAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["created_at", "account", "kind", "amount_micro_usd", "flagged", "memo"]
    list_filter = ["kind", "flagged"]
    search_fields = ["account__user__email", "idempotency_key", "memo"]


@admin.register(Hold)
class HoldAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["request_id", "account", "amount_micro_usd", "created_at", "expires_at"]


@admin.register(UsageRecord)
class UsageRecordAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = [
        "created_at",
        "request_id",
        "account",
        "model",
        "provider",
        "prompt_tokens",
        "completion_tokens",
        "cost_micro_usd",
        "status",
    ]
    list_filter = ["status", "source", "provider", "stream"]
    search_fields = ["request_id", "account__user__email", "model"]
    date_hierarchy = "created_at"


@admin.register(CreditPackage)
class CreditPackageAdmin(admin.ModelAdmin):
    list_display = ["name", "slug", "price", "credit", "bonus", "active", "order"]
    list_editable = ["active", "order"]
    prepopulated_fields = {"slug": ["name"]}
    ordering = ["order", "price_micro_usd"]

    @admin.display(description="Price", ordering="price_micro_usd")
    def price(self, obj: CreditPackage) -> str:
        return format_usd(obj.price_micro_usd)

    @admin.display(description="Credit", ordering="credit_micro_usd")
    def credit(self, obj: CreditPackage) -> str:
        return format_money(obj.credit_micro_usd)

    @admin.display(description="Bonus", ordering="bonus_micro_usd")
    def bonus(self, obj: CreditPackage) -> str:
        return format_money(obj.bonus_micro_usd)


class RedemptionInline(ReadOnlyAdminMixin, admin.TabularInline):
    model = Redemption
    extra = 0
    fields = ["account", "created_at"]


@admin.register(RedemptionCode)
class RedemptionCodeAdmin(admin.ModelAdmin):
    list_display = ["code", "amount", "uses", "max_uses", "expires_at", "active", "memo"]
    list_filter = ["active"]
    search_fields = ["code", "memo"]
    readonly_fields = ["uses", "created_at"]
    fields = ["code", "amount_micro_usd", "max_uses", "uses", "expires_at", "active", "memo"]
    inlines = [RedemptionInline]

    @admin.display(description="Amount", ordering="amount_micro_usd")
    def amount(self, obj: RedemptionCode) -> str:
        return format_money(obj.amount_micro_usd)


@admin.register(Purchase)
class PurchaseAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["created_at", "account", "package", "price", "status", "paid_at"]
    list_filter = ["status"]
    search_fields = ["stripe_session_id", "payment_intent_id", "account__user__email"]
    date_hierarchy = "created_at"

    @admin.display(description="Price", ordering="price_micro_usd")
    def price(self, obj: Purchase) -> str:
        return format_usd(obj.price_micro_usd)


@admin.register(StripeEvent)
class StripeEventAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["received_at", "event_id", "type", "outcome"]
    list_filter = ["type"]
    search_fields = ["event_id"]
