"""Tools for the Westmark town records."""

from westmark.records import Town, load_towns
from westmark.stats import mean_population

__all__ = ["Town", "load_towns", "mean_population"]
