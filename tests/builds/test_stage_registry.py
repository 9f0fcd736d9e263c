"""The stage registry: the stages a build runs, in the order of its Stage rows."""

from __future__ import annotations

from builds.choices import StageName
from builds.stages import registry


def test_the_registry_lists_every_stage_in_the_order_a_build_numbers_them() -> None:
    assert registry.names() == list(StageName.values)


def test_every_stage_module_is_named_after_its_stage_and_runs_and_checks_its_outputs() -> None:
    for name, module in zip(registry.names(), registry.modules(), strict=True):
        assert name == module.NAME
        assert callable(module.run) and callable(module.outputs_exist)


def test_a_stage_needs_only_stages_that_run_before_it() -> None:
    order = registry.names()
    for name, needs in registry.needs().items():
        assert all(order.index(need) < order.index(name) for need in needs), name


def test_the_needs_are_those_the_takeover_relies_on() -> None:
    assert registry.needs() == {
        "fetch": (),
        "customize": ("fetch",),
        "finalize": ("fetch", "customize"),
        "publish": ("finalize",),
        "test": ("publish",),
    }
