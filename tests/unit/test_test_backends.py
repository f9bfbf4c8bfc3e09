"""The test-server backends: which one runs, and the containers backend reads its images from compose.yaml."""

from pathlib import Path

import pytest

from tests.support.containers import compose_image
from tests.support.servers import backend


def test_embedded_is_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TELEMETRY_TEST_BACKEND", raising=False)
    assert backend() == "embedded"
    monkeypatch.setenv("TELEMETRY_TEST_BACKEND", "containers")
    assert backend() == "containers"


def test_an_unknown_backend_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TELEMETRY_TEST_BACKEND", "docker")
    with pytest.raises(ValueError, match="'embedded' or 'containers'"):
        backend()


def test_container_images_are_the_ones_compose_runs() -> None:
    assert compose_image("nats").startswith("nats:")
    assert compose_image("postgres").startswith("postgres:")


def test_compose_image_names_a_missing_service(tmp_path: Path) -> None:
    compose = tmp_path / "compose.yaml"
    compose.write_text("services:\n  nats:\n    image: nats:9\n  other:\n    command: [x]\n")
    assert compose_image("nats", compose) == "nats:9"
    with pytest.raises(ValueError, match="no image for service 'other'"):
        compose_image("other", compose)
