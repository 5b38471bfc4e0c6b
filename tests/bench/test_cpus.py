"""bench.cpus: where the server under test and the load generators run."""

from __future__ import annotations

import pytest

from bench.cpus import CpuPlan, plan

TWO = frozenset({0, 1})
FOUR = frozenset({0, 1, 2, 3})


def test_auto_gives_the_server_the_first_cpu_and_clients_the_rest() -> None:
    assert plan("auto", TWO) == CpuPlan(frozenset({0}), frozenset({1}))
    assert plan("auto", frozenset({2, 5, 7})) == CpuPlan(frozenset({2}), frozenset({5, 7}))


def test_auto_on_one_cpu_and_none_do_not_pin() -> None:
    assert plan("auto", frozenset({3})) == CpuPlan(None, None)
    assert plan("none", FOUR) == CpuPlan(None, None)
    assert CpuPlan(None, None).server_prefix() == []


def test_explicit_list_and_range() -> None:
    p = plan("0-1", FOUR)
    assert p == CpuPlan(frozenset({0, 1}), frozenset({2, 3}))
    assert p.server_prefix() == ["taskset", "--cpu-list", "0,1"]
    assert plan("1,3", FOUR).clients == frozenset({0, 2})
    assert plan("1+3", FOUR) == plan("1,3", FOUR)  # as --ours-env cpus= writes a list
    assert p.describe() == {"server": [0, 1], "clients": [2, 3], "shared": False}
    assert not p.shared and p.server_count() == 2


def test_refuses_cpus_not_allowed() -> None:
    with pytest.raises(ValueError, match=r"CPUs \[4\] are not allowed"):
        plan("3-4", FOUR)


def test_every_cpu_for_the_server_shares_them_with_the_load() -> None:
    p = plan("0-1", TWO)
    assert p == CpuPlan(TWO, TWO) and p.shared
    assert p.describe() == {"server": [0, 1], "clients": [0, 1], "shared": True}
    assert plan("none", TWO).shared and plan("none", TWO).server_count(TWO) == 2
    assert not plan("auto", TWO).shared
