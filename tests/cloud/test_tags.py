"""Finding what a create made by its tags (and name), as a create whose answer was lost does."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from cloud import tags


def _resource(name: str, state: str, *labels: str) -> SimpleNamespace:
    return SimpleNamespace(name=name, state=state, tags=list(labels))


LISTED = [
    _resource("test-1-box", "running", "image-factory", "test-run:2"),
    _resource("test-1-box", "stopped", "image-factory", "test-run:1"),
    _resource("test-1-boxer", "running", "image-factory", "test-run:1"),
    _resource("test-1-box", "running", "image-factory", "test-run:1"),
]


def test_find_one_passes_the_filters_to_the_list_call_and_checks_them_again() -> None:
    asked: list[dict[str, Any]] = []

    def list_all(**filters: Any) -> list[SimpleNamespace]:
        asked.append(filters)
        return LISTED  # an API whose filters matched loosely

    found = tags.find_one(
        list_all,
        what="look for server test-1-box",
        carrying=["test-run:1"],
        name="test-1-box",
        states=("running",),
        zone="fr-par-1",
        tags=["test-run:1"],
    )
    assert found is LISTED[3]
    assert asked == [{"zone": "fr-par-1", "tags": ["test-run:1"], "name": "test-1-box"}]


def test_find_one_without_a_name_or_states_takes_the_first_with_every_tag() -> None:
    def list_all(**filters: Any) -> list[SimpleNamespace]:
        assert "name" not in filters
        return LISTED

    carrying = ["image-factory", "test-run:1"]
    assert tags.find_one(list_all, what="list", carrying=carrying) is LISTED[1]
    assert tags.find_one(list_all, what="list", carrying=["build:3"]) is None
