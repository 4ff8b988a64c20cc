"""The chaos suite's fault schedule (tests/chaos/schedule.py): seeded, complete, non-overlapping."""

import itertools

from tests.chaos.schedule import RECOVERY_S, TARGETS, plan


def test_the_same_seed_plans_the_same_faults_and_another_seed_others():
    assert plan(1, 120) == plan(1, 120)
    assert plan(1, 120) != plan(2, 120)


def test_a_two_minute_run_hits_every_service_kafka_and_postgres():
    for seed in range(20):
        assert {f.target for f in plan(seed, 120)} == set(TARGETS), seed


def test_faults_stay_inside_the_run_and_never_overlap():
    for seed in range(20):
        faults = plan(seed, 300)
        assert faults[0].at >= 5
        for a, b in itertools.pairwise(faults):
            assert b.at >= a.at + a.down_s + RECOVERY_S[a.target]
        last = faults[-1]
        assert last.at + last.down_s + RECOVERY_S[last.target] <= 300


def test_every_kind_comes_once_before_any_comes_twice():
    faults = plan(7, 600)
    first_round = [f.target for f in faults[: len(TARGETS)]]
    assert sorted(first_round) == sorted(TARGETS)
    assert {f.kind for f in faults} == {"service_kill9", "kafka_kill9", "pg_immediate_restart"}


def test_even_a_very_short_run_has_one_fault():
    assert len(plan(1, 1)) == 1
