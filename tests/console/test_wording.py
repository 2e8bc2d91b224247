"""One style on every page: sentence case and "email", allauth's pages included."""

from __future__ import annotations

import re

import pytest

pytestmark = pytest.mark.django_db

PUBLIC = [
    "/",
    "/pricing/",
    "/docs/",
    "/accounts/login/",
    "/accounts/signup/",
    "/accounts/password/reset/",
    "/accounts/login/code/",
]
SIGNED_IN = [
    "/account/",
    "/account/keys/",
    "/account/delete/",
    "/accounts/email/",
    "/accounts/password/change/",
    "/accounts/2fa/",
    "/billing/",
]
TITLE_CASE = re.compile(
    r"Sign In|Sign Up|Sign Out|Email Address|Add Email|Change Password|Remember Me|New Password"
    r"|Current Password"
)


def visible_text(body: str) -> str:
    return re.sub(r"<[^>]+>", " ", body)


@pytest.mark.parametrize("path", PUBLIC)
def test_a_public_page_uses_sentence_case_and_email(client, path):
    text = visible_text(client.get(path).content.decode())

    assert not re.search(r"e-mail", text, re.I)
    assert not TITLE_CASE.search(text), TITLE_CASE.findall(text)


@pytest.mark.parametrize("path", SIGNED_IN)
def test_a_signed_in_page_uses_sentence_case_and_email(client, customer, path):
    from allauth.account.models import EmailAddress

    EmailAddress.objects.create(
        user=customer.user, email=customer.user.email, primary=True, verified=True
    )
    client.force_login(customer.user)

    text = visible_text(client.get(path).content.decode())

    assert not re.search(r"e-mail", text, re.I)
    assert not TITLE_CASE.search(text), TITLE_CASE.findall(text)


def test_the_sign_in_button_is_in_sentence_case(client):
    assert ">Sign in</button>" in re.sub(
        r"\s+", " ", client.get("/accounts/login/").content.decode()
    ).replace("> ", ">").replace(" <", "<")
