"""The chaos scenarios: which faults, how much data, how long.

A scenario runs *rounds*. A round seeds the shop dataset (``orders`` orders), starts the shop
pipeline with ``headrace run --until-idle``, injects faults from the scenario's list one after
another at random moments while the pipeline still has work (``gap`` seconds apart, drawn at
random), lets it run to idle and checks the invariant. Faults not injected before a round went
idle carry over to the next round. ``ci`` injects each fault kind that matters most once (one
round, more if a round went idle too soon), sized for a few minutes; ``long`` repeats the full
list, shuffled, until ``duration`` seconds have passed.

MariaDB faults and source kills matter only while the sources read (with ``--until-idle`` they
read what is there, then finish): a round injects those first, as soon as its MySQL sources
start; the others once the sinks write.
"""

from __future__ import annotations

from dataclasses import dataclass

from headrace_dev.chaos.faults import Fault

__all__ = ["SCENARIOS", "Scenario"]


@dataclass(frozen=True)
class Scenario:
    """A named fault schedule over the shop pipeline (see the module doc)."""

    name: str
    orders: int
    faults: tuple[Fault, ...]
    customers: int = 300
    #: stop starting rounds after this many seconds (the last round still finishes)
    duration: float = 0.0
    #: at most this many rounds (0: as many as ``duration`` allows, at least one)
    rounds: int = 1
    #: go on with more rounds (up to ``rounds``) until every fault was injected once
    every_fault: bool = False
    #: seconds between one fault's recovery and the next fault (uniform in the range)
    gap: tuple[float, float] = (3.0, 10.0)
    shuffle: bool = False
    #: give up waiting for a recovery (the episode is recorded as not recovered) after this
    recovery_timeout: float = 300.0
    #: a round that is not idle this long after its start fails the run
    round_timeout: float = 1500.0


_ALL = (
    Fault("kill", "kafka", 5),
    Fault("restart", "kafka", 5),
    Fault("pause", "kafka", 30),
    Fault("kill", "mariadb", 3),
    Fault("restart", "mariadb", 3),
    Fault("pause", "mariadb", 30),
    Fault("kill", "ferretdb", 3),
    Fault("restart", "ferretdb", 3),
    Fault("pause", "ferretdb", 30),
    Fault("pause", "moto", 30),
    Fault("slow", "ferretdb", 60, delay=0.5),
    Fault("kill9", "worker"),
    Fault("kill9-again", "worker"),
    Fault("term", "worker"),
    Fault("kill9", "sink:"),
    Fault("term", "sink:"),
    Fault("kill9", "produce:"),
    Fault("term", "produce:"),
)

SCENARIOS: dict[str, Scenario] = {
    "ci": Scenario(
        name="ci",
        orders=60_000,
        faults=(
            Fault("restart", "mariadb", 2),
            Fault("kill9", "produce:"),
            Fault("kill", "kafka", 3),
            Fault("kill9", "worker"),
            Fault("term", "sink:"),
            Fault("pause", "ferretdb", 15),
            Fault("pause", "kafka", 15),
            Fault("slow", "ferretdb", 20, delay=0.3),
        ),
        gap=(1.0, 4.0),
        rounds=3,
        every_fault=True,
        round_timeout=900.0,
    ),
    "long": Scenario(
        name="long",
        orders=200_000,
        faults=_ALL,
        duration=3600.0,
        rounds=0,
        gap=(5.0, 30.0),
        shuffle=True,
    ),
}
