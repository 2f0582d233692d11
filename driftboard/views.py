"""Dashboard pages (server-rendered; charts get their data through json_script)."""

from django.contrib.auth.decorators import login_required
from django.http import HttpResponse


@login_required
def _placeholder(request, *args, **kwargs) -> HttpResponse:
    return HttpResponse("Driftboard")


home = family_detail = artifact_list = artifact_detail = threshold_list = threshold_detail = _placeholder
experiment_list = experiment_detail = queues = _placeholder
