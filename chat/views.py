from __future__ import annotations

from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBadRequest
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_htmx.middleware import HtmxDetails

from accounts.models import User
from chat.context import meter_for
from chat.forms import (
    ConversationSettingsForm,
    NewConversationForm,
    QuestionForm,
    RenameForm,
    SearchForm,
    price_label,
)
from chat.models import MAX_MESSAGE_CHARS, Conversation, Message
from gateway.catalog import get_catalog

PAGE_SIZE = 30


class AuthenticatedRequest(HttpRequest):
    user: User
    htmx: HtmxDetails


def cursor_of(conversation: Conversation) -> str:
    """The keyset cursor after `conversation`: its last activity and id."""
    return f"{conversation.updated_at.isoformat()}~{conversation.pk}"


def parse_cursor(cursor: str) -> tuple[datetime, int]:
    """ValueError unless `cursor` is one that cursor_of made."""
    moment, _, pk = cursor.rpartition("~")
    updated_at, row = datetime.fromisoformat(moment), int(pk)
    if updated_at.tzinfo is None or not 0 < row < 2**63:
        raise ValueError("not a cursor this page made")
    return updated_at, row


def _sidebar(
    request: AuthenticatedRequest, *, query: str = "", before: str = "", current: int | None = None
) -> dict[str, Any]:
    """One page of the user's conversations, latest activity first, as template context;
    `current` is the conversation open on the page."""
    rows = Conversation.objects.for_user(request.user).by_activity()
    if query:
        rows = rows.matching(query)
    if before:
        rows = rows.before(*parse_cursor(before))
    page = list(rows[: PAGE_SIZE + 1])
    more = len(page) > PAGE_SIZE
    page = page[:PAGE_SIZE]
    more_query = {"before": cursor_of(page[-1])} if more else {}
    if more_query and query:
        more_query["q"] = query
    if more_query and current:
        more_query["current"] = str(current)
    return {
        "conversations": page,
        "next_cursor": more_query.get("before", ""),
        "more_query": urlencode(more_query),
        "query": query,
        "cursor_given": bool(before),
        "current_id": current,
    }


def _search(request: AuthenticatedRequest) -> dict[str, Any]:
    """The sidebar's query string: ValueError unless it is one the page makes."""
    form = SearchForm(request.GET)
    if not form.is_valid():
        raise ValueError("bad search")
    before = form.cleaned_data["before"]
    if before:
        parse_cursor(before)
    return {
        "query": form.cleaned_data["q"].strip(),
        "before": before,
        "current": form.cleaned_data["current"],
    }


def _owned(request: AuthenticatedRequest, conversation_id: int) -> Conversation:
    return get_object_or_404(Conversation.objects.for_user(request.user), pk=conversation_id)


@require_GET
@login_required
def index(request: AuthenticatedRequest) -> HttpResponse:
    try:
        search = _search(request)
    except ValueError:
        return HttpResponseBadRequest("That search or page link is not valid.")
    context = {
        **_sidebar(request, **search),
        "form": NewConversationForm(user=request.user),
        "sidebar_open": True,
    }
    return TemplateResponse(request, "chat/index.html", context)


@require_GET
@login_required
def conversation_list(request: AuthenticatedRequest) -> HttpResponse:
    """The sidebar's list items: a search's results, or the page after a cursor (htmx)."""
    try:
        search = _search(request)
    except ValueError:
        return HttpResponseBadRequest("That search or page link is not valid.")
    if not request.htmx:
        return redirect(f"{reverse('chat:index')}?{request.GET.urlencode()}")
    context = _sidebar(request, **search)
    return TemplateResponse(request, "chat/_conversation_items.html", context)


@require_POST
@login_required
def create(request: AuthenticatedRequest) -> HttpResponse:
    form = NewConversationForm(request.POST, user=request.user)
    if not form.is_valid():
        context = {**_sidebar(request), "form": form, "sidebar_open": True}
        return TemplateResponse(request, "chat/index.html", context, status=400)
    conversation = Conversation.objects.create(user=request.user, model=form.conversation_model())
    return redirect(conversation)


def _model_price(chat: Conversation) -> str:
    model = get_catalog().resolve(chat.model)
    return price_label(model) if model is not None else ""


def _page_context(request: AuthenticatedRequest, chat: Conversation) -> dict[str, Any]:
    return {
        **_sidebar(request, current=chat.pk),
        "conversation": chat,
        "chat_messages": chat.shown_messages(),
        "form": QuestionForm(),
        "max_chars": MAX_MESSAGE_CHARS,
        "new_form": NewConversationForm(initial={"model": chat.model}, user=request.user),
        "settings_form": ConversationSettingsForm(instance=chat),
        "rename_form": RenameForm(instance=chat),
        "meter": meter_for(chat),
        "model_price": _model_price(chat),
    }


@require_GET
@login_required
def conversation(request: AuthenticatedRequest, conversation_id: int) -> TemplateResponse:
    chat = _owned(request, conversation_id)
    return TemplateResponse(request, "chat/conversation.html", _page_context(request, chat))


@require_POST
@login_required
def update_settings(request: AuthenticatedRequest, conversation_id: int) -> HttpResponse:
    """Save the model, system prompt, temperature and max tokens the next turns use."""
    chat = _owned(request, conversation_id)
    form = ConversationSettingsForm(request.POST, instance=chat)
    if form.is_valid():
        form.save()
        if not request.htmx:
            return redirect(chat)
    elif not request.htmx:
        context = {**_page_context(request, chat), "settings_form": form}
        return TemplateResponse(request, "chat/conversation.html", context, status=400)
    context = {
        "conversation": chat,
        "settings_form": form if form.errors else ConversationSettingsForm(instance=chat),
        "settings_saved": not form.errors,
        "settings_open": True,
        "meter": meter_for(chat),
        "model_price": _model_price(chat),
    }
    status = 400 if form.errors else 200
    return TemplateResponse(request, "chat/_settings_saved.html", context, status=status)


@require_POST
@login_required
def rename(request: AuthenticatedRequest, conversation_id: int) -> HttpResponse:
    chat = _owned(request, conversation_id)
    form = RenameForm(request.POST, instance=chat)
    if form.is_valid():
        form.save()
        if not request.htmx:
            return redirect(chat)
    elif not request.htmx:
        context = {**_page_context(request, chat), "rename_form": form}
        return TemplateResponse(request, "chat/conversation.html", context, status=400)
    if not form.errors:
        chat.refresh_from_db()
    context = {
        "conversation": chat,
        "rename_form": form if form.errors else RenameForm(instance=chat),
    }
    status = 400 if form.errors else 200
    return TemplateResponse(request, "chat/_renamed.html", context, status=status)


@require_http_methods(["GET", "POST"])
@login_required
def delete(request: AuthenticatedRequest, conversation_id: int) -> HttpResponse:
    chat = _owned(request, conversation_id)
    if request.method == "POST":
        title = chat.display_title
        chat.delete()
        messages.success(request, f"Deleted “{title}”.")
        return redirect("chat:index")
    context = {"conversation": chat, "message_count": chat.messages.count()}
    return TemplateResponse(request, "chat/delete.html", context)


@require_GET
@login_required
def for_request(request: AuthenticatedRequest, request_id: str) -> HttpResponse:
    """The conversation a web-chat request answered in (linked from the request's page)."""
    answer = (
        Message.objects.filter(
            conversation__user=request.user, role=Message.Role.ASSISTANT, request_id=request_id
        )
        .exclude(request_id="")
        .only("pk", "conversation_id")
        .first()
    )
    if answer is None:
        raise Http404("No such chat answer")
    url = reverse("chat:conversation", args=[answer.conversation_id])
    return redirect(f"{url}#message-{answer.pk}")
