"""The seeded fault schedule: pure, so the same seed always plans the same faults (unit-tested).

One fault at a time, never overlapping: a kill -9 of a service (then restarted as services.sh
does), a kill -9 of Kafka (then kafka.sh start), or PostgreSQL stopped in immediate mode (then
postgres.sh start). Every kind comes once, in seeded order, before any kind comes twice, so even
a short run hits each service, Kafka and PostgreSQL."""

import random
from dataclasses import dataclass

SERVICES = ("invoicing", "payments", "dunning", "webhooks")
TARGETS = (*SERVICES, "kafka", "postgres")
# Rough seconds each fault takes until the target is back, to space them over the run.
RECOVERY_S = {"kafka": 20.0, "postgres": 4.0, **dict.fromkeys(SERVICES, 6.0)}


@dataclass(frozen=True)
class Fault:
    at: float  # seconds after traffic starts; the runner starts it then, or when the previous is over
    target: str  # a service name, "kafka" or "postgres"
    down_s: float  # how long it stays dead before the restart

    @property
    def kind(self) -> str:
        return {"kafka": "kafka_kill9", "postgres": "pg_immediate_restart"}.get(self.target, "service_kill9")

    def describe(self) -> str:
        what = {
            "service_kill9": f"kill -9 {self.target}",
            "kafka_kill9": "kill -9 kafka",
            "pg_immediate_restart": "pg_ctl stop -m immediate",
        }[self.kind]
        return f"t+{self.at:.0f}s {what}, down {self.down_s:.1f}s"


def plan(seed: int, seconds: float, *, warmup: float = 5.0, min_gap: float = 2.0, max_gap: float = 8.0) -> list[Fault]:
    """Faults for a run of `seconds` of traffic: seeded order and gaps, all within the run, and
    each fault planned to end (with its recovery) before the next begins."""
    rng = random.Random(seed)
    faults: list[Fault] = []
    t = warmup
    deck: list[str] = []
    while True:
        if not deck:  # a fresh shuffled round of every target
            deck = list(TARGETS)
            rng.shuffle(deck)
        target = deck.pop()
        down = round(rng.uniform(0.5, 3.0) if target in SERVICES else rng.uniform(1.0, 6.0), 1)
        if t + down + RECOVERY_S[target] > seconds and faults:
            break
        faults.append(Fault(round(t, 1), target, down))
        t += down + RECOVERY_S[target] + rng.uniform(min_gap, max_gap)
    return faults
