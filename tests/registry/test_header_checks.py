"""The registration health check refuses (400) every safetensors header that the worker's loader would
refuse later: overlapping or gapped data_offsets, offsets outside the file, a non-string __metadata__.
Each case is checked against the real safetensors library, so the two agree."""

import json
import struct

import numpy as np
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from safetensors import SafetensorError
from safetensors.numpy import load as safetensors_load
from safetensors.numpy import save as safetensors_save

from registry.models import Artifact
from tests.factories import FamilyFactory

COMMIT = "d" * 40


def upload(client, content: bytes):
    data = {"family": "loose", "commit": COMMIT, "weights": SimpleUploadedFile("w.safetensors", content)}
    return client.post("/api/v1/artifacts/", data, format="multipart")


@pytest.fixture
def loose_family(db):
    return FamilyFactory(slug="loose")


def two_tensors() -> bytes:
    return safetensors_save({"a": np.ones(4, dtype=np.float32), "b": np.zeros(4, dtype=np.float32)})


def rewrite_header(content: bytes, change) -> bytes:
    (length,) = struct.unpack("<Q", content[:8])
    header = json.loads(content[8 : 8 + length])
    change(header)
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + content[8 + length :]


def overlapping(header: dict) -> None:
    header["b"]["data_offsets"] = header["a"]["data_offsets"]
    header["c"] = {"dtype": "F32", "shape": [4], "data_offsets": [16, 32]}


def gapped(header: dict) -> None:
    header["a"].update(shape=[3], data_offsets=[0, 12])


def outside(header: dict) -> None:
    header["b"]["data_offsets"] = [16, 48]
    header["b"]["shape"] = [8]


def metadata_not_strings(header: dict) -> None:
    header["__metadata__"] = {"format": {"nested": True}}


def metadata_not_object(header: dict) -> None:
    header["__metadata__"] = ["pt"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (overlapping, "overlaps another tensor"),
        (gapped, "leaves a gap"),
        (outside, "points beyond the end of the file"),
        (metadata_not_strings, "__metadata__ must map strings to strings"),
        (metadata_not_object, "__metadata__ must map strings to strings"),
    ],
)
def test_it_refuses_at_registration_what_the_loader_would_refuse(api_client, loose_family, change, message):
    content = rewrite_header(two_tensors(), change)
    with pytest.raises(SafetensorError):
        safetensors_load(content)

    response = upload(api_client, content)

    assert response.status_code == 400
    assert message in response.json()["detail"]
    assert not Artifact.objects.exists()


def test_it_takes_what_the_loader_takes(api_client, loose_family):
    content = rewrite_header(two_tensors(), lambda header: header.update({"__metadata__": {"format": "np"}}))
    assert set(safetensors_load(content)) == {"a", "b"}
    response = upload(api_client, content)
    assert response.status_code == 202, response.json()
