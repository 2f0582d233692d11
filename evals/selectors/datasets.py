"""Golden datasets: the newest version of a name, one version, all of them."""

from django.db.models import QuerySet

from evals.models import GoldenDataset


def dataset_latest(name: str) -> GoldenDataset | None:
    return GoldenDataset.objects.filter(name=name, purpose=GoldenDataset.Purpose.GOLDEN).order_by("-version").first()


def dataset_version(name: str, version: int) -> GoldenDataset | None:
    return GoldenDataset.objects.filter(name=name, version=version, purpose=GoldenDataset.Purpose.GOLDEN).first()


def dataset_list() -> QuerySet[GoldenDataset]:
    return GoldenDataset.objects.all()
