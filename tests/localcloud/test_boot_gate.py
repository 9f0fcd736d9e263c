"""localcloud's boot gate: at most N guests of the host boot at once, the others wait."""

from __future__ import annotations

import threading
import time

from localcloud.machines.boots import BootGate


def never() -> bool:
    return False


def test_a_third_boot_waits_until_one_of_two_has_booted() -> None:
    gate = BootGate(size=2, hold_seconds=600)
    assert gate.enter("a", never) and gate.enter("b", never)
    entered = threading.Event()
    waiter = threading.Thread(target=lambda: gate.enter("c", never) and entered.set())
    waiter.start()
    assert not entered.wait(1.5)  # both places taken: "c" waits
    gate.leave("a")  # "a" said it booted
    assert entered.wait(5)
    waiter.join(5)
    assert gate.booting("b") and gate.booting("c") and not gate.booting("a")


def test_a_server_already_booting_keeps_its_place() -> None:
    gate = BootGate(size=1, hold_seconds=600)
    assert gate.enter("a", never)
    assert gate.enter("a", never)  # a reboot of the same server does not wait for itself


def test_a_wait_gives_up_when_asked() -> None:
    gate = BootGate(size=1, hold_seconds=600)
    gate.enter("a", never)
    asked = time.monotonic() + 1
    assert gate.enter("b", lambda: time.monotonic() > asked) is False
    assert not gate.booting("b")


def test_a_guest_that_never_says_it_booted_frees_its_place_after_the_hold() -> None:
    gate = BootGate(size=1, hold_seconds=1)
    gate.enter("silent", never)
    started = time.monotonic()
    assert gate.enter("next", lambda: time.monotonic() - started > 10)
    assert not gate.booting("silent")


def test_the_size_comes_from_the_environment(monkeypatch) -> None:
    monkeypatch.setenv("LOCALCLOUD_MAX_BOOTING", "5")
    assert BootGate().size == 5
    monkeypatch.setenv("LOCALCLOUD_MAX_BOOTING", "nonsense")
    assert BootGate().size >= 1


def test_waiting_boots_enter_in_their_order_of_arrival() -> None:
    gate = BootGate(size=1, hold_seconds=600)
    gate.enter("first", never)
    order: list[str] = []
    threads = []
    for name in ("a", "b", "c"):
        thread = threading.Thread(target=lambda n=name: gate.enter(n, never) and order.append(n))
        thread.start()
        threads.append(thread)
        time.sleep(0.3)  # arrive in this order
    for done in ("first", "a", "b"):
        gate.leave(done)
        time.sleep(0.5)
    for thread in threads:
        thread.join(5)
    assert order == ["a", "b", "c"]
