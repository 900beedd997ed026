"""Town records: parsing and validation."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Town:
    """One town of the region with its river and population."""

    name: str
    river: str
    population: int

    def is_large(self, limit: int = 5000) -> bool:
        """Return True when the town has more people than the limit."""
        return self.population > limit


def parse_row(row: dict[str, str]) -> Town:
    """Build a town from one CSV row, stripping spaces around each value."""
    name = row["name"].strip()
    river = row["river"].strip()
    population = int(row["population"])
    if population < 0:
        raise ValueError(f"population of {name} cannot be negative")
    return Town(name=name, river=river, population=population)


def load_towns(path: Path) -> list[Town]:
    """Read every town from a CSV file with a header row."""
    with path.open(newline="") as handle:
        return [parse_row(row) for row in csv.DictReader(handle)]
