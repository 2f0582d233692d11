"""`/client.py`: the CI client this server ships (standard library only), for runners that have no copy
of the repository (the GitLab template fetches it). Public: it is the project's own source, no secret."""

from pathlib import Path

from django.http import FileResponse, HttpRequest
from django.views.decorators.http import require_GET

CLIENT = Path(__file__).with_name("client.py")


@require_GET
def client_script(request: HttpRequest) -> FileResponse:
    return FileResponse(CLIENT.open("rb"), content_type="text/x-python; charset=utf-8")
