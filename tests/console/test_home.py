from __future__ import annotations


def test_the_home_page_counts_the_models_that_can_be_called(client, demo_catalog):
    response = client.get("/")

    assert response.status_code == 200
    assert response.context["model_count"] == 1
    assert b"1 model is available now" in response.content


def test_a_signed_in_user_is_offered_keys_and_usage(client, customer):
    client.force_login(customer.user)

    body = client.get("/").content.decode()

    assert "/account/keys/" in body
    assert "/billing/usage/" in body
