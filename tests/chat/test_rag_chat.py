"""The web chat's "Use my documents" box: the answer is grounded in the user's own
documents, shows them as citations, and never sees another account's."""

from __future__ import annotations

import orjson
import pytest

from billing.models import UsageRecord
from chat.models import Message
from gateway.documents.extract import extract
from gateway.documents.library import add_document
from gateway.models import Model, Provider, Route
from tests.chat.conftest import TIMEOUT, open_socket

pytestmark = pytest.mark.django_db(transaction=True)

FACT = "The Quokka project's launch code is ZEBRA-4417."
QUESTION = "What is the launch code of the Quokka project?"


def route_gpt_test(fake_upstream):
    """The model gpt-test, served by the fake upstream (which records what it is sent)."""
    provider = Provider.objects.create(
        name="primary", kind="openai", base_url=fake_upstream.url + "/v1", api_key="k"
    )
    model = Model.objects.create(
        id="gpt-test",
        context_length=8_000,
        max_output_tokens=200,
        input_price=2_000_000,
        output_price=8_000_000,
    )
    Route.objects.create(model=model, provider=provider, upstream_model="primary-model")
    return fake_upstream


@pytest.fixture
def upstream(fake_upstream):
    return route_gpt_test(fake_upstream)


def add_handbook(account) -> int:
    text = f"# Handbook\n\n## Launch\n\n{FACT}\n".encode()
    document = add_document(
        account_id=account.pk, extracted=extract("handbook.md", text), size_bytes=len(text)
    )
    return document.pk


async def turn(communicator, **fields) -> str:
    await communicator.send_to(text_data=orjson.dumps({"message": QUESTION, **fields}).decode())
    for _ in range(1_000):
        frame = await communicator.receive_from(timeout=TIMEOUT)
        if "Answer complete" in frame or "failed" in frame:
            return frame
    raise AssertionError("the answer never finished")


async def test_the_answer_is_grounded_in_the_users_document_and_cites_it(
    connect_as, make_customer, make_conversation, upstream
):
    customer = make_customer()
    document_id = add_handbook(customer.account)
    conversation = make_conversation(customer.user, model="gpt-test")
    async with open_socket(connect_as(customer.user, conversation.pk)) as communicator:
        finished = await turn(communicator, use_documents="on")

    (request,) = upstream.requests
    context, question = request.json["messages"][-2:]
    assert context["role"] == "system" and FACT in context["content"]
    assert question == {"role": "user", "content": QUESTION}
    record = UsageRecord.objects.get()
    assert record.source == UsageRecord.Source.WEB
    assert [s["document_id"] for s in record.rag_sources] == [document_id]
    answer = Message.objects.get(role=Message.Role.ASSISTANT)
    assert answer.sources == record.rag_sources
    assert "Sources from your documents" in finished and "handbook.md" in finished
    assert f"#document-{document_id}" in finished


async def test_another_account_never_retrieves_the_document_in_the_chat(
    connect_as, make_customer, make_conversation, upstream
):
    owner, stranger = make_customer(), make_customer()
    add_handbook(owner.account)
    conversation = make_conversation(stranger.user, model="gpt-test")
    async with open_socket(connect_as(stranger.user, conversation.pk)) as communicator:
        finished = await turn(communicator, use_documents="on")

    (request,) = upstream.requests
    assert request.json["messages"] == [{"role": "user", "content": QUESTION}]
    assert UsageRecord.objects.get().rag_sources == []
    assert "Sources from your documents" not in finished


async def test_without_the_box_nothing_is_retrieved(
    connect_as, make_customer, make_conversation, upstream
):
    customer = make_customer()
    add_handbook(customer.account)
    conversation = make_conversation(customer.user, model="gpt-test")
    async with open_socket(connect_as(customer.user, conversation.pk)) as communicator:
        finished = await turn(communicator)

    assert upstream.requests[0].json["messages"] == [{"role": "user", "content": QUESTION}]
    assert "Sources" not in finished


def test_the_chat_page_has_the_box_and_the_documents_page_is_in_the_navigation(
    client, customer, make_conversation
):
    client.force_login(customer.user)
    conversation = make_conversation(customer.user)

    page = client.get(f"/chat/{conversation.pk}/").content.decode()

    assert 'name="use_documents"' in page and "Use my documents" in page
    assert 'href="/documents/"' in page
