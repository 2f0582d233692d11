from tests.pipeline.conftest import alert_receiver, demo_family, demo_imports  # noqa: F401 - shared fixtures
