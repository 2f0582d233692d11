"""factory_boy factories over the real models. Arrays are real float64/int32 bytes."""

import hashlib

import factory
import numpy as np
from django.contrib.auth import get_user_model

from evals.models import (
    DriftVerdict,
    EvalRun,
    Experiment,
    ExperimentRun,
    GoldenDataset,
    GoldenSample,
    MetricSnapshot,
    Threshold,
)
from evals.services.profiles import PROFILE_SETTINGS, evaluation_profile_update
from registry.models import Artifact, ModelFamily, PullRequestLink


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda u: f"{u.username}@example.com")
    password = factory.django.Password("correct horse battery staple")


class FamilyFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = ModelFamily

    slug = factory.Sequence(lambda n: f"family-{n}")
    kind = ModelFamily.Kind.CAUSAL_LM
    datasets = factory.LazyFunction(list)

    @classmethod
    def _create(cls, model_class, *args, **kwargs) -> ModelFamily:
        """Evaluation settings (`scorers=`, `sampling=` ...) go to the family's profile, as `family_create` does."""
        profile_settings = {name: kwargs.pop(name) for name in PROFILE_SETTINGS if name in kwargs}
        family = super()._create(model_class, *args, **kwargs)
        evaluation_profile_update(family=family, **profile_settings)
        return family


class DatasetFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = GoldenDataset

    name = factory.Sequence(lambda n: f"golden-{n}")
    version = 1
    sha256 = factory.Sequence(lambda n: hashlib.sha256(f"dataset{n}".encode()).hexdigest())
    sample_count = 0

    @factory.post_generation
    def samples(self, create, extracted, **kwargs):
        count = extracted or 0
        categories = ["prose", "code"]
        GoldenSample.objects.bulk_create(
            GoldenSample(
                dataset=self,
                position=i,
                sample_id=f"s{i}",
                text=f"Sample text number {i}.",
                category=categories[i % 2],
                sha256=hashlib.sha256(f"{self.pk}:{i}".encode()).hexdigest(),
            )
            for i in range(count)
        )
        if count:
            self.sample_count = count
            self.categories = {c: sum(1 for i in range(count) if categories[i % 2] == c) for c in categories}
            self.save()


class ArtifactFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Artifact

    family = factory.SubFactory(FamilyFactory)
    version = factory.Sequence(lambda n: n + 1)
    sha256 = factory.Sequence(lambda n: hashlib.sha256(f"weights{n}".encode()).hexdigest())
    size_bytes = 1024
    format = Artifact.Format.SAFETENSORS
    storage_path = factory.LazyAttribute(lambda a: f"objects/{a.sha256[:2]}/{a.sha256}.safetensors")
    commit_sha = factory.Sequence(lambda n: hashlib.sha1(f"commit{n}".encode()).hexdigest())
    branch = "main"


class PullRequestFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = PullRequestLink

    provider = PullRequestLink.Provider.GITHUB
    repository = "acme/weights"
    number = factory.Sequence(lambda n: n + 1)
    title = "Fine-tune on support tickets"
    url = factory.LazyAttribute(lambda p: f"https://github.com/{p.repository}/pull/{p.number}")
    state = "open"


def float_bytes(values) -> bytes:
    return np.asarray(values, dtype=np.float64).tobytes()


class SnapshotFactory(factory.django.DjangoModelFactory):
    """A bits-per-byte snapshot over `n` samples drawn around `level`."""

    class Meta:
        model = MetricSnapshot

    class Params:
        level = 2.0
        seed = 0

    artifact = factory.SubFactory(ArtifactFactory)
    dataset = factory.SubFactory(DatasetFactory)
    metric = "bits_per_byte"
    scorer_version = "causal-rolling/1"
    commit_sha = factory.LazyAttribute(lambda s: s.artifact.commit_sha)
    n = 20
    value = factory.LazyAttribute(lambda s: s.level)
    std = 0.1
    ci_low = factory.LazyAttribute(lambda s: s.level - 0.05)
    ci_high = factory.LazyAttribute(lambda s: s.level + 0.05)
    positions = factory.LazyAttribute(lambda s: np.arange(s.n, dtype=np.int32).tobytes())
    denominators = factory.LazyAttribute(lambda s: float_bytes(np.full(s.n, 100.0)))
    numerators = factory.LazyAttribute(
        lambda s: float_bytes(100.0 * (s.level + np.random.default_rng(s.seed).normal(0, 0.1, s.n)))
    )
    fingerprint = factory.LazyFunction(
        lambda: {"dataset_sha256": "d", "tokenizer_hash": "t", "scorer_version": "causal-rolling/1", "max_length": 256}
    )


class ThresholdFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Threshold

    metric = "bits_per_byte"
    rule = Threshold.Rule.RELATIVE
    limit = 0.02
    severity = Threshold.Severity.BLOCK
    rationale = "Bits per byte may not degrade by more than 2 %."
    owner = "ml-platform"


class VerdictFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = DriftVerdict

    artifact = factory.SubFactory(ArtifactFactory)
    dataset = factory.SubFactory(DatasetFactory)
    metric = "bits_per_byte"
    candidate_value = 2.1
    baseline_value = 2.0
    delta = -0.05
    ci_low = -0.06
    ci_high = -0.04
    outcome = DriftVerdict.Outcome.RED


class EvalRunFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = EvalRun

    artifact = factory.SubFactory(ArtifactFactory)
    dataset = factory.SubFactory(DatasetFactory)
    samples_total = 10


class ExperimentFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Experiment

    slug = factory.Sequence(lambda n: f"experiment-{n}")


class ExperimentRunFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = ExperimentRun

    experiment = factory.SubFactory(ExperimentFactory)
    sequence = factory.Sequence(lambda n: n + 1)
    commit = factory.Sequence(lambda n: f"{n:07x}")
    objective_value = 1.0
    memory_gb = 40.0
    status = ExperimentRun.Status.KEEP
