"""The tree search's settings, read from the environment in the step's kernel (names are
the variables, upper-cased): iteration limits per stage, parallel nodes, the node limits."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from .policy import PolicyConfig
from .sandbox import Limits


class TreeSearchSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TREESEARCH_", extra="ignore",
                                      populate_by_name=True)

    stage1_max_iterations: int = Field(8, ge=1, description="nodes stage 1 may create")
    stage2_max_iterations: int = Field(4, ge=1, description="nodes stage 2 may create")
    stage3_max_iterations: int = Field(4, ge=1, description="nodes stage 3 may create")
    stage4_max_iterations: int = Field(6, ge=1, description="nodes stage 4 may create")
    num_workers: int = Field(2, ge=1, description="nodes run in parallel")
    num_drafts: int = Field(2, ge=1, description="independent first drafts in stage 1")
    debug_prob: float = Field(0.5, ge=0, le=1, description="chance to debug a buggy leaf")
    max_debug_depth: int = Field(3, ge=1, description="debug attempts along one branch")
    seeds: int = Field(3, ge=1, description="runs of the best node (with its own) for mean±std")
    search_seed: int = Field(0, description="seeds the selection RNG: runs repeat")
    node_timeout_s: float = Field(600, gt=0, description="wall-clock seconds per node")
    node_memory_mb: int | None = Field(8192, gt=0, description="memory per node (MiB)")
    node_cpu_s: float | None = Field(None, gt=0, description="CPU seconds per node")

    def max_iterations(self, stage_number: int) -> int:
        return int(getattr(self, f"stage{stage_number}_max_iterations"))

    def policy(self) -> PolicyConfig:
        return PolicyConfig(self.num_drafts, self.debug_prob, self.max_debug_depth)

    def limits(self) -> Limits:
        return Limits(self.node_timeout_s, self.node_memory_mb, self.node_cpu_s)
