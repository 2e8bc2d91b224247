"""allauth's e-mail confirmation by link, beside its confirmation by code.

The console verifies sign-ups by code (a browser session holds it); a sign-up through
the API has no session, so its e-mail carries allauth's signed link instead
(EmailConfirmationHMAC, valid for ACCOUNT_EMAIL_CONFIRMATION_EXPIRE_DAYS). allauth's
own view refuses links while codes are on, so this one reads the key itself; the
page, the confirmation and the `email_confirmed` signal are allauth's.
"""

from __future__ import annotations

from typing import Any

from allauth.account.models import EmailConfirmationHMAC
from allauth.account.views import ConfirmEmailView
from django.http import Http404


class ConfirmEmailLinkView(ConfirmEmailView):
    def get_object(self, queryset: Any = None) -> EmailConfirmationHMAC:
        confirmation = EmailConfirmationHMAC.from_key(self.kwargs["key"])
        if confirmation is None:
            raise Http404("This confirmation link expired or is invalid.")
        return confirmation


confirm_email_link = ConfirmEmailLinkView.as_view()
