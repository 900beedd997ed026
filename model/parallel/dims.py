"""How the ranks divide: data x tensor x pipeline parallel degrees, checked once."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ParallelDims:
    world: int
    tp: int = 1
    pp: int = 1

    def __post_init__(self) -> None:
        if self.world % (self.tp * self.pp):
            raise ValueError(f"{self.world} ranks cannot be split into tensor_parallel.size="
                             f"{self.tp} x pipeline.stages={self.pp} groups; make the number "
                             "of ranks a multiple of their product")

    @property
    def dp(self) -> int:
        return self.world // (self.tp * self.pp)

    @property
    def dp_enabled(self) -> bool:
        return self.dp > 1

    @property
    def tp_enabled(self) -> bool:
        return self.tp > 1

    @property
    def pp_enabled(self) -> bool:
        return self.pp > 1
