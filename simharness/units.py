"""Durations ("250ms", "8h"), rates ("6/h") and the sampling distributions of a scenario."""

from __future__ import annotations

import math
import re
from typing import Annotated, Literal

import numpy as np
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

#: seconds per unit
UNITS: dict[str, float] = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}

_NUMBER = r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?"
_DURATION_RE = re.compile(rf"^\s*({_NUMBER})\s*(us|ms|s|m|h|d)?\s*$")
_RATE_RE = re.compile(rf"^\s*({_NUMBER})\s*/\s*(us|ms|s|m|h|d)\s*$")

# A z-score of the 99th percentile of the standard normal: lognormal p50/p99 -> sigma.
Z99 = 2.3263478740408408


def parse_duration(value: object) -> float:
    """Seconds from a number (already seconds) or a string with a unit: us ms s m h d."""
    if isinstance(value, bool):
        raise ValueError(f"expected a duration like '250ms' or '8h', got {value!r}")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        if value.strip() in ("inf", "infinity"):
            return math.inf
        m = _DURATION_RE.match(value)
        if not m:
            raise ValueError(
                f"expected a duration like '250ms', '2s' or '8h' (units: us ms s m h d), got {value!r}"
            )
        seconds = float(m.group(1)) * UNITS[m.group(2) or "s"]
    else:
        raise ValueError(f"expected a duration like '250ms' or '8h', got {type(value).__name__}")
    if math.isnan(seconds) or seconds < 0:
        raise ValueError(f"a duration must be >= 0, got {value!r}")
    return seconds


def parse_rate(value: object) -> float:
    """Events per second from '6/h', '0.5/s' or a bare number (per second)."""
    if isinstance(value, bool):
        raise ValueError(f"expected a rate like '6/h', got {value!r}")
    if isinstance(value, int | float):
        rate = float(value)
    elif isinstance(value, str):
        m = _RATE_RE.match(value)
        if not m:
            raise ValueError(f"expected a rate like '6/h' or '0.5/s', got {value!r}")
        rate = float(m.group(1)) / UNITS[m.group(2)]
    else:
        raise ValueError(f"expected a rate like '6/h', got {type(value).__name__}")
    if math.isnan(rate) or rate < 0 or math.isinf(rate):
        raise ValueError(f"a rate must be finite and >= 0, got {value!r}")
    return rate


def format_duration(seconds: float) -> str:
    """Shortest readable form of a duration in seconds ('250ms', '2h')."""
    if math.isinf(seconds):
        return "inf"
    for unit in ("d", "h", "m", "s", "ms", "us"):
        q = seconds / UNITS[unit]
        if q >= 1 and abs(q - round(q)) < 1e-9:
            return f"{round(q)}{unit}"
    return f"{seconds:g}s"


def parse_finite_duration(value: object) -> float:
    """A duration that is not infinite (a distribution parameter: inf samples break sums)."""
    seconds = parse_duration(value)
    if math.isinf(seconds):
        raise ValueError(f"expected a finite duration, got {value!r}")
    return seconds


def parse_positive_duration(value: object) -> float:
    """A duration > 0 (inf allowed: never), e.g. a timeout, where 0 would fail everything."""
    seconds = parse_duration(value)
    if seconds <= 0:
        raise ValueError(f"expected a duration > 0, got {value!r}")
    return seconds


def parse_servers(value: object) -> float:
    """A server count: a whole number >= 1, or inf (no queue)."""
    if isinstance(value, str) and value.strip() in ("inf", "infinity"):
        return math.inf
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"expected a whole number of servers >= 1 or inf, got {value!r}")
    if value == math.inf:
        return math.inf
    if not (value >= 1 and float(value).is_integer()):
        raise ValueError(f"expected a whole number of servers >= 1 or inf, got {value!r}")
    return float(value)


class JsonForms:
    """The JSON Schema of a type whose validator accepts more than its Python type says (a
    duration string for a float): what an editor should accept. `extend`: the generated
    schema or these forms."""

    def __init__(self, schema: dict, extend: bool = False):
        self.schema, self.extend = schema, extend

    def __get_pydantic_json_schema__(self, core_schema, handler):
        if self.extend:
            return {"anyOf": [handler(core_schema), dict(self.schema)]}
        return dict(self.schema)


_UNIT_NAMES = "us ms s m h d"
DURATION_PATTERN = (r"^\s*[+]?([0-9]+([.][0-9]*)?|[.][0-9]+)([eE][+-]?[0-9]+)?\s*(us|ms|s|m|h|d)?"
                    r"\s*$|^\s*inf(inity)?\s*$")
RATE_PATTERN = (r"^\s*[+]?([0-9]+([.][0-9]*)?|[.][0-9]+)([eE][+-]?[0-9]+)?\s*/\s*(us|ms|s|m|h|d)"
                r"\s*$")
# The forms are described on each branch too: a field's own description replaces the top one.
_DURATION_TEXT = (f"a duration: a number with a unit ({_UNIT_NAMES}), e.g. '250ms', '8h'; a "
                  "bare number is seconds")
_RATE_TEXT = (f"a rate: a number per unit ({_UNIT_NAMES}), e.g. '6/h', '0.5/s'; a bare number "
              "is per second")
DURATION_SCHEMA = {
    "description": _DURATION_TEXT,
    "anyOf": [{"type": "number", "minimum": 0, "description": "seconds"},
              {"type": "string", "pattern": DURATION_PATTERN, "description": _DURATION_TEXT}]}
RATE_SCHEMA = {
    "description": _RATE_TEXT,
    "anyOf": [{"type": "number", "minimum": 0, "description": "per second"},
              {"type": "string", "pattern": RATE_PATTERN, "description": _RATE_TEXT}]}
SERVERS_SCHEMA = {
    "description": "servers: a whole number >= 1, or 'inf' (no queue)",
    "anyOf": [{"type": "integer", "minimum": 1}, {"type": "string", "enum": ["inf", "infinity"]}]}

def parse_queue_limit(value: object) -> float:
    """A queue limit: a whole number >= 0 (0: no waiting at all), or inf (no limit)."""
    if isinstance(value, str) and value.strip() in ("inf", "infinity"):
        return math.inf
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"expected a whole number of waiting requests >= 0 or inf, got {value!r}")
    if value == math.inf:
        return math.inf
    if not (value >= 0 and float(value).is_integer()):
        raise ValueError(f"expected a whole number of waiting requests >= 0 or inf, got {value!r}")
    return float(value)


QUEUE_LIMIT_SCHEMA = {
    "description": "waiting requests: a whole number >= 0, or 'inf' (no limit)",
    "anyOf": [{"type": "integer", "minimum": 0}, {"type": "string", "enum": ["inf", "infinity"]}]}
QueueLimit = Annotated[float, BeforeValidator(parse_queue_limit), JsonForms(QUEUE_LIMIT_SCHEMA)]
Duration = Annotated[float, BeforeValidator(parse_duration), JsonForms(DURATION_SCHEMA)]
FiniteDuration = Annotated[float, BeforeValidator(parse_finite_duration), JsonForms(DURATION_SCHEMA)]
PositiveDuration = Annotated[float, BeforeValidator(parse_positive_duration),
                             JsonForms(DURATION_SCHEMA)]
Rate = Annotated[float, BeforeValidator(parse_rate), JsonForms(RATE_SCHEMA)]
#: servers of a queueing station (a PDP, a proxy, a token service)
Servers = Annotated[float, BeforeValidator(parse_servers), JsonForms(SERVERS_SCHEMA)]


class _Dist(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:  # pragma: no cover
        """n independent draws as a float array."""
        raise NotImplementedError

    def mean(self) -> float:  # pragma: no cover
        """Expected value."""
        raise NotImplementedError


class Constant(_Dist):
    dist: Literal["constant"] = "constant"
    value: FiniteDuration

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        return np.full(n, self.value)

    def mean(self) -> float:
        return self.value


class Exponential(_Dist):
    dist: Literal["exponential"]
    mean_: FiniteDuration = Field(alias="mean")

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        return rng.exponential(self.mean_, n) if self.mean_ > 0 else np.zeros(n)

    def mean(self) -> float:
        return self.mean_


class Lognormal(_Dist):
    """Lognormal given by its 99th percentile and either its median (p50) or its mean (how
    latency is usually reported)."""

    dist: Literal["lognormal"]
    p50: FiniteDuration | None = None
    mean_: FiniteDuration | None = Field(default=None, alias="mean")
    p99: FiniteDuration

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @model_validator(mode="after")
    def _order(self) -> Lognormal:
        if (self.p50 is None) == (self.mean_ is None):
            raise ValueError("lognormal needs p99 and one of p50 or mean")
        if self.p50 is not None and (self.p50 <= 0 or self.p99 < self.p50):
            raise ValueError("lognormal needs 0 < p50 <= p99")
        if self.mean_ is not None:
            # mean = exp(mu + s^2/2), p99 = exp(mu + z s): s^2/2 - z s + ln(p99/mean) = 0 has a
            # real root only when ln(p99/mean) <= z^2/2 (p99 at most ~15x the mean).
            if self.mean_ <= 0 or self.p99 <= self.mean_:
                raise ValueError("lognormal needs 0 < mean < p99")
            if math.log(self.p99 / self.mean_) > Z99 * Z99 / 2:
                raise ValueError(f"no lognormal has p99 more than {math.exp(Z99 * Z99 / 2):.3g}"
                                 " x its mean: give p50 and p99, or another distribution")
        return self

    @property
    def mu_sigma(self) -> tuple[float, float]:
        if self.p50 is not None:
            return math.log(self.p50), math.log(self.p99 / self.p50) / Z99
        assert self.mean_ is not None
        # The smaller root: of the two lognormals with this mean and p99, the lighter tail.
        sigma = Z99 - math.sqrt(Z99 * Z99 - 2 * math.log(self.p99 / self.mean_))
        return math.log(self.mean_) - sigma * sigma / 2, sigma

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        mu, sigma = self.mu_sigma
        return rng.lognormal(mu, sigma, n)

    def mean(self) -> float:
        mu, sigma = self.mu_sigma
        return math.exp(mu + sigma * sigma / 2)


class Gamma(_Dist):
    """Gamma by its mean and shape k (k = 1: exponential; larger k: less spread, cv = 1/sqrt k)."""

    dist: Literal["gamma"]
    mean_: FiniteDuration = Field(alias="mean")
    shape: float = Field(gt=0, allow_inf_nan=False)

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        return rng.gamma(self.shape, self.mean_ / self.shape, n)

    def mean(self) -> float:
        return self.mean_


class Weibull(_Dist):
    """Weibull by scale and shape k (k < 1: heavy early failures; k = 1: exponential)."""

    dist: Literal["weibull"]
    scale: FiniteDuration
    shape: float = Field(gt=0, allow_inf_nan=False)

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        return self.scale * rng.weibull(self.shape, n)

    def mean(self) -> float:
        return self.scale * math.gamma(1 + 1 / self.shape)


class Pareto(_Dist):
    """Pareto (type I) by its minimum and tail index alpha > 1 (a finite mean): heavy tails."""

    dist: Literal["pareto"]
    minimum: FiniteDuration
    alpha: float = Field(gt=1, allow_inf_nan=False)

    @model_validator(mode="after")
    def _positive(self) -> Pareto:
        if self.minimum <= 0:
            raise ValueError("pareto needs minimum > 0")
        return self

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        return self.minimum * (1.0 + rng.pareto(self.alpha, n))  # numpy draws Lomax (type II)

    def mean(self) -> float:
        return self.alpha * self.minimum / (self.alpha - 1)


class Uniform(_Dist):
    dist: Literal["uniform"]
    low: FiniteDuration
    high: FiniteDuration

    @model_validator(mode="after")
    def _order(self) -> Uniform:
        if self.high < self.low:
            raise ValueError("uniform needs low <= high")
        return self

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        return rng.uniform(self.low, self.high, n)

    def mean(self) -> float:
        return (self.low + self.high) / 2


class Empirical(_Dist):
    """Resampling of observed values; `samples` is a list or a CSV path (resolved by the loader)."""

    dist: Literal["empirical"]
    samples: list[FiniteDuration] | str

    @model_validator(mode="after")
    def _non_empty(self) -> Empirical:
        if isinstance(self.samples, list) and not self.samples:
            raise ValueError("empirical needs at least one sample")
        return self

    def _values(self) -> np.ndarray:
        if isinstance(self.samples, str):
            raise ValueError(f"empirical samples file {self.samples!r} was not loaded")
        return np.asarray(self.samples, dtype=float)

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        values = self._values()
        return values[rng.integers(0, len(values), n)]

    def mean(self) -> float:
        return float(self._values().mean())


class Beta(_Dist):
    """Beta(a, b) on [0, 1]: risk scores."""

    dist: Literal["beta"]
    a: float = Field(gt=0, allow_inf_nan=False)
    b: float = Field(gt=0, allow_inf_nan=False)

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        return rng.beta(self.a, self.b, n)

    def mean(self) -> float:
        return self.a / (self.a + self.b)


def _bare_to_constant(value: object) -> object:
    # A bare duration ("300ms", 2) means a constant distribution.
    if isinstance(value, int | float | str) and not isinstance(value, bool):
        return {"dist": "constant", "value": value}
    return value


Distribution = Annotated[
    Constant | Exponential | Lognormal | Gamma | Weibull | Pareto | Uniform | Empirical | Beta,
    Field(discriminator="dist"),
    BeforeValidator(_bare_to_constant),
    JsonForms({**DURATION_SCHEMA, "description": "or a bare duration: a constant"}, extend=True),
]

DIST_KINDS = ("constant", "exponential", "lognormal", "gamma", "weibull", "pareto", "uniform",
              "empirical", "beta")
