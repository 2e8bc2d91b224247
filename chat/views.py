from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db.models import Count
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from accounts.models import User
from chat.forms import NewConversationForm, QuestionForm
from chat.models import Conversation

RECENT_CONVERSATIONS = 50


class AuthenticatedRequest(HttpRequest):
    user: User


def _conversations(request: AuthenticatedRequest) -> list[Conversation]:
    return list(
        Conversation.objects.for_user(request.user).annotate(message_count=Count("messages"))[
            :RECENT_CONVERSATIONS
        ]
    )


def _owned(request: AuthenticatedRequest, conversation_id: int) -> Conversation:
    return get_object_or_404(Conversation.objects.for_user(request.user), pk=conversation_id)


@require_GET
@login_required
def index(request: AuthenticatedRequest) -> TemplateResponse:
    context = {
        "conversations": _conversations(request),
        "form": NewConversationForm(user=request.user),
    }
    return TemplateResponse(request, "chat/index.html", context)


@require_POST
@login_required
def create(request: AuthenticatedRequest) -> HttpResponse:
    form = NewConversationForm(request.POST, user=request.user)
    if not form.is_valid():
        context = {"conversations": _conversations(request), "form": form}
        return TemplateResponse(request, "chat/index.html", context, status=400)
    conversation = Conversation.objects.create(user=request.user, model=form.conversation_model())
    return redirect(conversation)


@require_GET
@login_required
def conversation(request: AuthenticatedRequest, conversation_id: int) -> TemplateResponse:
    chat = _owned(request, conversation_id)
    context = {
        "conversation": chat,
        "chat_messages": chat.messages.all(),
        "conversations": _conversations(request),
        "form": QuestionForm(),
        "new_form": NewConversationForm(initial={"model": chat.model}, user=request.user),
    }
    return TemplateResponse(request, "chat/conversation.html", context)


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
