"""The Personas pages: a customer's own personas (list, create, edit, delete), the public
ones, and what each persona remembers about them (read, edit, erase).

Every query starts from the signed-in user: another user's persona is a 404, and a
public persona can be talked to and forgotten but not edited.
"""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db.models import Prefetch
from django.http import HttpResponse, QueryDict
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from console.account_views import AuthenticatedRequest
from gateway.models import Persona, PersonaMemory
from gateway.persona_forms import MemoryForm, PersonaForm


def _posted(request: AuthenticatedRequest) -> QueryDict | None:
    """The form data on every POST (an empty one is a form left blank), else None."""
    return request.POST if request.method == "POST" else None


def _visible(request: AuthenticatedRequest) -> list[Persona]:
    mine = PersonaMemory.objects.filter(user=request.user)
    return list(
        Persona.objects.visible_to(request.user).prefetch_related(
            Prefetch("memories", queryset=mine, to_attr="my_memory")
        )
    )


@require_GET
@login_required
def personas(request: AuthenticatedRequest) -> TemplateResponse:
    visible = _visible(request)
    for persona in visible:
        memory = persona.my_memory[0] if persona.my_memory else None  # type: ignore[attr-defined]
        persona.fact_count = len(memory.fact_list) if memory else 0  # type: ignore[attr-defined]
    context = {
        "own": [p for p in visible if p.owner_id == request.user.pk],
        "public": [p for p in visible if p.is_public],
    }
    return TemplateResponse(request, "accounts/personas.html", context)


@require_http_methods(["GET", "POST"])
@login_required
def persona_create(request: AuthenticatedRequest) -> HttpResponse:
    form = PersonaForm(_posted(request), owner=request.user)
    if request.method == "POST" and form.is_valid():
        persona = form.save()
        messages.success(
            request, f"Created {persona.name}: call it as model “{persona.model_name}”."
        )
        return redirect("accounts:personas")
    status = 400 if form.is_bound else 200
    context = {"form": form, "persona": None}
    return TemplateResponse(request, "accounts/persona_form.html", context, status=status)


@require_http_methods(["GET", "POST"])
@login_required
def persona_edit(request: AuthenticatedRequest, persona_id: int) -> HttpResponse:
    persona = get_object_or_404(Persona.objects.owned_by(request.user), pk=persona_id)
    form = PersonaForm(_posted(request), instance=persona, owner=request.user)
    if request.method == "POST" and form.is_valid():
        form.save()
        messages.success(request, f"Saved {persona.name}.")
        return redirect("accounts:personas")
    status = 400 if form.is_bound else 200
    context = {"form": form, "persona": persona}
    return TemplateResponse(request, "accounts/persona_form.html", context, status=status)


@require_http_methods(["GET", "POST"])
@login_required
def persona_delete(request: AuthenticatedRequest, persona_id: int) -> HttpResponse:
    persona = get_object_or_404(Persona.objects.owned_by(request.user), pk=persona_id)
    if request.method == "POST":
        persona.delete()
        messages.success(request, f"Deleted {persona.name} and what it remembered.")
        return redirect("accounts:personas")
    return TemplateResponse(request, "accounts/persona_delete.html", {"persona": persona})


@require_http_methods(["GET", "POST"])
@login_required
def persona_memory(request: AuthenticatedRequest, persona_id: int) -> HttpResponse:
    persona = get_object_or_404(Persona.objects.visible_to(request.user), pk=persona_id)
    memory = PersonaMemory.objects.filter(user=request.user, persona=persona).first()
    form = MemoryForm(_posted(request), initial={"facts": memory.facts if memory else ""})
    if request.method == "POST" and form.is_valid():
        PersonaMemory.objects.update_or_create(
            user=request.user, persona=persona, defaults={"facts": form.cleaned_data["facts"]}
        )
        messages.success(request, f"Saved what {persona.name} remembers about you.")
        return redirect("accounts:persona_memory", persona_id=persona.pk)
    context = {"persona": persona, "memory": memory, "form": form}
    status = 400 if form.is_bound else 200
    return TemplateResponse(request, "accounts/persona_memory.html", context, status=status)


@require_POST
@login_required
def persona_memory_erase(request: AuthenticatedRequest, persona_id: int) -> HttpResponse:
    persona = get_object_or_404(Persona.objects.visible_to(request.user), pk=persona_id)
    PersonaMemory.objects.filter(user=request.user, persona=persona).delete()
    messages.success(request, f"{persona.name} has forgotten everything about you.")
    return redirect("accounts:persona_memory", persona_id=persona.pk)
