"""Simple statistics over town records."""

from __future__ import annotations

from collections.abc import Iterable

from westmark.records import Town


def mean_population(towns: Iterable[Town]) -> float:
    """Average population; zero for an empty list."""
    values = [town.population for town in towns]
    if not values:
        return 0.0
    return sum(values) / len(values)


def by_river(towns: Iterable[Town]) -> dict[str, list[Town]]:
    """Group towns by the river they stand on."""
    groups: dict[str, list[Town]] = {}
    for town in towns:
        groups.setdefault(town.river, []).append(town)
    return groups


def largest(towns: Iterable[Town], count: int = 3) -> list[Town]:
    """The most populous towns, largest first."""
    return sorted(towns, key=lambda town: town.population, reverse=True)[:count]
