"""TOTP and recovery codes as second factors after the password."""

from __future__ import annotations

import time

from allauth.core import context
from allauth.mfa.adapter import get_adapter
from allauth.mfa.recovery_codes.internal.auth import RecoveryCodes
from allauth.mfa.totp.internal.auth import TOTP, format_hotp_value, generate_totp_secret, hotp_value

from accounts.models import SignIn

from .conftest import PASSWORD


def sign_in_with_password(client) -> None:
    response = client.post("/accounts/login/", {"login": "owner@example.com", "password": PASSWORD})
    assert response["Location"] == "/accounts/2fa/authenticate/"
    assert client.get("/account/").status_code == 302


def test_a_totp_code_completes_the_sign_in(client, owner, settings):
    settings.MFA_TOTP_TOLERANCE = 1  # the 30-second window may turn during the test
    secret = generate_totp_secret()
    TOTP.activate(owner, secret)
    sign_in_with_password(client)
    code = format_hotp_value(hotp_value(secret, int(time.time()) // 30))
    response = client.post("/accounts/2fa/authenticate/", {"code": code})
    assert response.status_code == 302
    assert client.get("/account/").status_code == 200
    assert SignIn.objects.get(user=owner).method == "Password + authenticator app"


def test_a_recovery_code_completes_the_sign_in(client, owner):
    TOTP.activate(owner, generate_totp_secret())
    codes = RecoveryCodes.activate(owner).get_unused_codes()
    sign_in_with_password(client)
    response = client.post("/accounts/2fa/authenticate/", {"code": codes[0]})
    assert response.status_code == 302
    assert client.get("/account/").status_code == 200
    assert SignIn.objects.get(user=owner).method == "Password + recovery code"


def test_a_wrong_code_is_refused(client, owner):
    TOTP.activate(owner, generate_totp_secret())
    sign_in_with_password(client)
    response = client.post("/accounts/2fa/authenticate/", {"code": "000000"})
    assert response.status_code == 200
    assert 'role="alert"' in response.content.decode()
    assert not SignIn.objects.exists()


def test_passkey_prompts_and_authenticator_apps_name_this_site(rf, db):
    request = rf.get("/", HTTP_HOST="localhost:8000")
    with context.request_context(request):
        adapter = get_adapter()
        assert adapter.get_public_key_credential_rp_entity() == {
            "id": "localhost",
            "name": "Switchboard",
        }
        assert adapter.get_totp_issuer() == "Switchboard"
