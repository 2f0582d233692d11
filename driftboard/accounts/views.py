"""/account/tokens/: a signed-in user's own API tokens — make one (its key shown once), see them, revoke one."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST

from driftboard.accounts import selectors, services
from driftboard.accounts.forms import ApiTokenForm


@never_cache  # the answer to a creation carries the key
@login_required
def api_tokens(request: HttpRequest) -> HttpResponse:
    form = ApiTokenForm(request.POST or None)
    created, key = None, ""
    if request.method == "POST" and form.is_valid():
        created, key = services.api_token_create(user=request.user, **form.cleaned_data)
        form = ApiTokenForm()
    context = {"form": form, "tokens": selectors.api_tokens_of(request.user), "created": created, "key": key}
    return render(request, "accounts/api_tokens.html", context)


@login_required
@require_POST
def api_token_revoke(request: HttpRequest, pk: int) -> HttpResponse:
    if not services.api_token_revoke(user=request.user, pk=pk):
        raise Http404("No such token.")
    messages.success(request, "Token revoked: requests that send it now get 401.")
    return redirect("api-tokens")
