"""Experiment pages: the list, one loop's review, run comparison, results.tsv upload, weight registration."""

from django import forms
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render

from driftboard.formatting import percent
from driftboard.roles import can_review
from evals import selectors
from evals.models import Experiment, ExperimentRun
from evals.services import experiments as services
from registry.models import ModelFamily
from registry.registration import RegistrationError

RUNS_PER_PAGE = 100


class ExperimentForm(forms.ModelForm):
    class Meta:
        model = Experiment
        fields = ["slug", "objective", "direction", "time_budget_s", "hardware", "owner", "branch_tag", "description"]
        widgets = {"description": forms.Textarea(attrs={"rows": 2})}


class ResultsUploadForm(forms.Form):
    file = forms.FileField(
        label="results.tsv", help_text="Tab-separated: commit, objective, memory_gb, status, description."
    )

    def clean_file(self):
        upload = self.cleaned_data["file"]
        if upload.size > services.RESULTS_MAX_BYTES:
            raise forms.ValidationError(f"A results file may hold at most {services.RESULTS_MAX_BYTES // 1024**2} MiB.")
        return upload


class RegisterWeightsForm(forms.Form):
    family = forms.ModelChoiceField(queryset=ModelFamily.objects.order_by("slug"), to_field_name="slug")
    path = forms.CharField(required=False, max_length=1000, help_text="A file or folder under the import roots.")
    weights = forms.FileField(required=False, help_text="Or upload .safetensors, .bin, .tar or .zip.")

    def clean_weights(self):
        upload = self.cleaned_data["weights"]
        if upload and upload.size > settings.DRIFTBOARD_MAX_UPLOAD_BYTES:
            raise forms.ValidationError("The file is larger than DRIFTBOARD_MAX_UPLOAD_BYTES allows.")
        return upload

    def clean(self) -> dict:
        data = super().clean()
        if bool(data.get("path")) == bool(data.get("weights")):
            raise forms.ValidationError("Give either a server-side path or a weights file.")
        return data


def _experiment(slug: str) -> Experiment:
    return get_object_or_404(selectors.experiment_list(), slug=slug)


def _list_row(experiment: Experiment) -> dict:
    summary = selectors.experiment_summary(experiment)
    return {
        "experiment": experiment,
        "summary": summary,
        "keep_rate": percent(signed=False, digits=0, fraction=summary["keep_rate"]),
    }


@login_required
def experiment_list(request: HttpRequest) -> HttpResponse:
    form = ExperimentForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        experiment = services.experiment_create(**form.cleaned_data)
        messages.success(request, f"Experiment {experiment.slug} created; import its results.tsv or post runs.")
        return redirect("experiment-import", slug=experiment.slug)
    rows = [_list_row(experiment) for experiment in selectors.experiment_list()]
    return render(request, "evals/experiment_list.html", {"rows": rows, "form": form})


@login_required
def experiment_detail(request: HttpRequest, slug: str) -> HttpResponse:
    experiment = _experiment(slug)
    runs = list(selectors.experiment_runs(experiment))
    review = services.experiment_review(experiment=experiment, runs=runs)
    # The chart shows every run; the table pages through them newest first, without another query.
    table = Paginator(runs[::-1], RUNS_PER_PAGE).get_page(request.GET.get("page"))
    context = {
        "experiment": experiment,
        "table": table,
        "summary": selectors.experiment_summary(experiment),
        "review": review,
        "keep_rate": percent(signed=False, digits=0, fraction=review.keep_rate),
        "improvement_pct": percent(review.relative_improvement),
        "over_budget_sequences": {item.run.sequence for item in review.over_budget},
    }
    return render(request, "evals/experiment_detail.html", context)


def _sequence(raw: str | None) -> int | None:
    return int(raw) if raw and raw.isascii() and raw.isdigit() and len(raw) <= 9 else None


@login_required
def experiment_compare(request: HttpRequest, slug: str) -> HttpResponse:
    """Two runs side by side; without a choice, the first run with a value against the best kept run."""
    experiment = _experiment(slug)
    a_sequence = _sequence(request.GET.get("a")) or selectors.experiment_first_valued_sequence(experiment)
    b_sequence = _sequence(request.GET.get("b")) or experiment.best_sequence
    chosen = {
        run.sequence: run for run in selectors.experiment_runs(experiment).filter(sequence__in=[a_sequence, b_sequence])
    }
    a, b = chosen.get(a_sequence), chosen.get(b_sequence)
    fields = services.experiment_runs_compare(experiment=experiment, a=a, b=b) if a and b else []
    context = {
        "experiment": experiment,
        "a": a,
        "b": b,
        "a_sequence": a_sequence,
        "b_sequence": b_sequence,
        "fields": fields,
    }
    return render(request, "evals/experiment_compare.html", context)


@login_required
def experiment_import(request: HttpRequest, slug: str) -> HttpResponse:
    experiment = get_object_or_404(Experiment, slug=slug)
    form = ResultsUploadForm(request.POST or None, request.FILES or None)
    report = None
    if request.method == "POST" and form.is_valid():
        try:
            report = services.results_import(experiment=experiment, data=form.cleaned_data["file"].read())
        except services.ResultsFileError as exc:
            form.add_error("file", str(exc))
    context = {"experiment": experiment, "form": form, "report": report}
    return render(request, "evals/experiment_import.html", context)


@login_required
def experiment_run_register(request: HttpRequest, slug: str, sequence: int) -> HttpResponse:
    """Reviewers and admins: register a kept run's weights as an artifact and link the run to it."""
    if not can_review(request.user):
        raise PermissionDenied("Only reviewers and admins may register weights from this page.")
    run = get_object_or_404(
        ExperimentRun.objects.select_related("experiment", "artifact"), experiment__slug=slug, sequence=sequence
    )
    form = RegisterWeightsForm(request.POST or None, request.FILES or None)
    kept = run.status == ExperimentRun.Status.KEEP
    if kept and request.method == "POST" and form.is_valid():
        try:
            registration = services.experiment_run_register_weights(
                run=run,
                family=form.cleaned_data["family"],
                upload=form.cleaned_data["weights"],
                path=form.cleaned_data["path"] or None,
                user=request.user,
            )
        except RegistrationError as exc:
            form.add_error(None, str(exc))
        else:
            messages.success(request, f"Run #{run.sequence} registered as {registration.artifact}.")
            return redirect(registration.artifact.get_absolute_url())
    context = {"experiment": run.experiment, "run": run, "form": form, "kept": kept}
    return render(request, "evals/experiment_run_register.html", context)
