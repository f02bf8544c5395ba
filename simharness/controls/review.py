"""Parameters of a human reviewer pool (`reviewers:` of human_approval, and of task_policy and
data_flow when they escalate instead of denying).

All defaults are illustrative, not measured (docs/sources.md, human review): a review takes a
couple of minutes (lognormal, p50 2 min, p99 20 min), a requester waits at most 15 minutes and
is then denied, a rested reviewer rejects 90 % of misuse put in front of them and 2 % of
legitimate requests, and at 20 approvals per reviewer-hour the catch rate has fallen to 1/e of
that (rubber-stamping under load, as reported for alert and approval fatigue).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from simharness.controls.base import ReviewPool
from simharness.units import Distribution, PositiveDuration


class ReviewParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)
    reviewers: int = Field(default=2, ge=1, le=10_000, description="people reviewing in parallel")
    service_time: Distribution = Field(  # type: ignore[assignment]
        default_factory=lambda: {"dist": "lognormal", "p50": "2m", "p99": "20m"},
        description="time one review takes")
    timeout: PositiveDuration = Field(default=900.0, description=(
        "how long a request waits for a verdict before `on_timeout` applies"))
    on_timeout: Literal["deny", "allow"] = "deny"
    hours: tuple[float, float] | None = Field(default=None, description=(
        "staffed hours of day [start, end] (time 0 is midnight; start > end spans midnight); "
        "not given: always staffed"))
    catch_rate: float = Field(default=0.9, ge=0, le=1, description=(
        "probability that a rested reviewer rejects a misuse"))
    false_reject: float = Field(default=0.02, ge=0, le=1, description=(
        "probability that a reviewer rejects a legitimate request"))
    fatigue: float = Field(default=20.0, gt=0, description=(
        "approvals per reviewer in the last hour at which the catch rate has fallen by 1/e"))

    @model_validator(mode="after")
    def _hours(self) -> ReviewParams:
        if self.hours is not None and not all(0 <= h <= 24 for h in self.hours):
            raise ValueError("hours are [start, end] hours of day, each in 0..24")
        if self.hours is not None and self.hours[0] == self.hours[1]:
            raise ValueError("hours [h, h] staffs nobody; leave `hours` out for always staffed")
        return self

    def pool(self) -> ReviewPool:
        return ReviewPool(self.reviewers, self.service_time, self.timeout, self.on_timeout,
                          self.hours, self.catch_rate, self.false_reject, self.fatigue)
