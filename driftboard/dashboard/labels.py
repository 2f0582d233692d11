"""Pages of human review: the review queue (one item at a time, keyboard first) and a family's Judges
page (each judge configuration against the reviewers, with a staff action to trust one)."""

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from driftboard.roles import can_administer, can_review
from evals import label_selectors
from evals.models import Label
from evals.services import labels as label_services
from registry.models import Artifact, ModelFamily

# Newest artifacts looked at when a family's review queue picks the one to label.
FAMILY_REVIEW_CANDIDATES = 20


class ReviewForm(forms.Form):
    sample = forms.CharField(max_length=200)
    kind = forms.ChoiceField(choices=Label.Kind.choices)
    choice = forms.CharField(max_length=10)
    rating = forms.IntegerField(min_value=1, max_value=10, required=False)
    note = forms.CharField(max_length=label_services.MAX_NOTE_CHARS, required=False)


class TrustForm(forms.Form):
    configuration = forms.CharField(max_length=64)
    reason = forms.CharField(max_length=2000)


def _reviewer_only(request: HttpRequest) -> None:
    if not can_review(request.user):
        raise PermissionDenied("Only reviewers and admins label answers.")


def _kind_of(request: HttpRequest, source: label_selectors.ReviewSource | None) -> str:
    asked = request.POST.get("kind") or request.GET.get("kind")
    if asked in Label.VALUES:
        return asked
    return Label.Kind.PAIRWISE if source and source.baseline else Label.Kind.POINTWISE


def _review_url(artifact: Artifact, kind: str) -> str:
    return f"{reverse('artifact-review', args=[artifact.pk])}?kind={kind}"


@login_required
def artifact_review(request: HttpRequest, pk: int) -> HttpResponse:
    """GET: the next item, reserved for this reviewer (`?at=<sample>` for one item); POST: its label."""
    _reviewer_only(request)
    artifact = get_object_or_404(Artifact.objects.select_related("family"), pk=pk)
    source = label_selectors.review_source(artifact)
    kind = _kind_of(request, source)
    if request.method == "POST":
        _post_label(request, artifact)
        return redirect(_review_url(artifact, kind))
    turn = label_services.review_turn(artifact=artifact, reviewer=request.user, kind=kind, at=request.GET.get("at"))
    context = {
        "artifact": artifact,
        "family": artifact.family,
        "kind": kind,
        "has_answers": source is not None,
        "turn": turn,
        "done": turn.total - turn.left if turn else 0,
        "review_url": _review_url(artifact, kind),
    }
    return render(request, "dashboard/label_review.html", context)


def _post_label(request: HttpRequest, artifact: Artifact) -> None:
    form = ReviewForm(request.POST)
    if not form.is_valid():
        field, problems = next(iter(form.errors.items()))
        messages.error(request, f"{field}: {' '.join(problems)}")
        return
    data = form.cleaned_data
    try:
        label_services.review_label(
            artifact=artifact,
            reviewer=request.user,
            kind=data["kind"],
            sample=data["sample"],
            choice=data["choice"],
            rating=data["rating"],
            note=data["note"],
        )
    except label_services.LabelRefused as exc:
        messages.error(request, str(exc))


@login_required
def family_review(request: HttpRequest, slug: str) -> HttpResponse:
    """The family's review queue: the newest artifact whose answers can be labelled against a baseline
    (else the newest with answers)."""
    _reviewer_only(request)
    family = get_object_or_404(ModelFamily, slug=slug)
    sources = [
        source
        for artifact in family.artifacts.order_by("-version")[:FAMILY_REVIEW_CANDIDATES]
        if (source := label_selectors.review_source(artifact)) is not None
    ]
    chosen = next((s for s in sources if s.baseline), sources[0] if sources else None)
    if chosen is None:
        messages.info(request, f"No version of {family.slug} has generated answers to label yet.")
        return redirect(family.get_absolute_url())
    return redirect(reverse("artifact-review", args=[chosen.artifact.pk]))


@login_required
def family_judges(request: HttpRequest, slug: str) -> HttpResponse:
    """Each judge configuration of the family against the reviewers: κ with its interval, the confusion
    matrix, whether it is calibrated or trusted, and the items it disagrees on."""
    family = get_object_or_404(ModelFamily, slug=slug)
    context = {
        "family": family,
        "judges": label_selectors.judge_agreements(family),
        "settings": label_selectors.family_judge_settings(family),
        "reviewers": label_selectors.reviewer_agreements(family),
        "can_trust": can_administer(request.user),
    }
    return render(request, "dashboard/family_judges.html", context)


@login_required
@require_POST
def family_judge_trust(request: HttpRequest, slug: str) -> HttpResponse:
    if not can_administer(request.user):
        raise PermissionDenied("Only admins may trust a judge configuration.")
    family = get_object_or_404(ModelFamily, slug=slug)
    form = TrustForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Say why this judge is trusted (at most 2000 characters).")
        return redirect("family-judges", slug=family.slug)
    key = form.cleaned_data["configuration"]
    found = next((a for a in label_selectors.judge_agreements(family) if a.configuration.key == key), None)
    if found is None:
        messages.error(request, "No judge configuration of this family has that key.")
        return redirect("family-judges", slug=family.slug)
    try:
        label_services.judge_trust(
            family=family, configuration=found.configuration, actor=request.user, reason=form.cleaned_data["reason"]
        )
    except label_services.LabelRefused as exc:
        messages.error(request, str(exc))
    else:
        messages.success(
            request, f"{found.configuration.identity or 'The judge'} ({found.configuration.mode}) is trusted."
        )
    return redirect("family-judges", slug=family.slug)
