"""units: durations, rates and the sampling distributions."""

from __future__ import annotations

import math
import typing

import numpy as np
import pytest
from pydantic import BaseModel, TypeAdapter, ValidationError

from simharness import units
from simharness.units import (
    DIST_KINDS,
    Constant,
    Distribution,
    Duration,
    Empirical,
    Exponential,
    Lognormal,
    Rate,
    format_duration,
    parse_duration,
    parse_rate,
)

DIST = TypeAdapter(Distribution)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("250us", 250e-6),
        ("250ms", 0.25),
        ("2s", 2.0),
        ("5m", 300.0),
        ("8h", 28800.0),
        ("1d", 86400.0),
        ("1.5h", 5400.0),
        (" 2 s ", 2.0),
        ("1e3ms", 1.0),
        (".5s", 0.5),
        ("0", 0.0),
        ("42", 42.0),
        (3, 3.0),
        (0.25, 0.25),
    ],
)
def test_parse_duration(text, seconds):
    assert parse_duration(text) == pytest.approx(seconds)


def test_parse_duration_infinity():
    assert parse_duration("inf") == math.inf


@pytest.mark.parametrize(
    "bad", ["5 min", "abc", "", "5x", "ms", "1h30m", "-1s", -1, -0.5, math.nan, True, False, None, [1]]
)
def test_parse_duration_rejects(bad):
    with pytest.raises(ValueError):
        parse_duration(bad)


def test_parse_duration_message_names_units():
    with pytest.raises(ValueError, match="us ms s m h d"):
        parse_duration("5 min")


@pytest.mark.parametrize(
    ("text", "per_second"),
    [("6/h", 6 / 3600), ("0.5/s", 0.5), ("2 / m", 2 / 60), ("10/d", 10 / 86400), ("3/ms", 3000.0),
     (3, 3.0), (0, 0.0)],
)
def test_parse_rate(text, per_second):
    assert parse_rate(text) == pytest.approx(per_second)


@pytest.mark.parametrize("bad", ["6", "6/x", "6/hour", "-1/h", "1e999/s", "/h", True, None, math.inf, -2])
def test_parse_rate_rejects(bad):
    with pytest.raises(ValueError):
        parse_rate(bad)


@pytest.mark.parametrize("text", ["250ms", "2h", "1d", "0s", "100us", "90m", "inf"])
def test_format_duration_round_trips(text):
    assert format_duration(parse_duration(text)) == text


class _Model(BaseModel):
    duration: Duration
    rate: Rate


def test_duration_and_rate_as_pydantic_fields():
    m = _Model(duration="300ms", rate="6/h")
    assert (m.duration, m.rate) == (pytest.approx(0.3), pytest.approx(6 / 3600))
    with pytest.raises(ValidationError, match="expected a duration"):
        _Model(duration=True, rate="6/h")
    with pytest.raises(ValidationError, match="expected a rate"):
        _Model(duration=1, rate="6 per hour")


def test_bare_duration_is_a_constant():
    d = DIST.validate_python("300ms")
    assert isinstance(d, Constant)
    assert d.value == pytest.approx(0.3)
    assert d.mean() == pytest.approx(0.3)
    assert np.all(d.sample(np.random.default_rng(0), 5) == pytest.approx(0.3))


def test_lognormal_quantiles_match_p50_p99():
    d = DIST.validate_python({"dist": "lognormal", "p50": "300ms", "p99": "3s"})
    assert isinstance(d, Lognormal)
    x = d.sample(np.random.default_rng(20261129), 400_000)
    assert np.quantile(x, 0.50) == pytest.approx(0.3, rel=0.02)
    assert np.quantile(x, 0.99) == pytest.approx(3.0, rel=0.05)
    assert x.mean() == pytest.approx(d.mean(), rel=0.03)


@pytest.mark.parametrize(("p50", "p99"), [("3s", "300ms"), (0, "1s")])
def test_lognormal_rejects_bad_order(p50, p99):
    with pytest.raises(ValidationError, match="p50"):
        DIST.validate_python({"dist": "lognormal", "p50": p50, "p99": p99})


def test_lognormal_with_equal_quantiles_is_constant():
    d = DIST.validate_python({"dist": "lognormal", "p50": "1s", "p99": "1s"})
    assert d.sample(np.random.default_rng(1), 3) == pytest.approx([1.0, 1.0, 1.0])


def test_exponential_mean_alias():
    d = DIST.validate_python({"dist": "exponential", "mean": "2s"})
    assert isinstance(d, Exponential)
    assert d.mean() == 2.0
    assert d.sample(np.random.default_rng(3), 200_000).mean() == pytest.approx(2.0, rel=0.02)
    assert d.model_dump(by_alias=True)["mean"] == 2.0


def test_uniform():
    d = DIST.validate_python({"dist": "uniform", "low": "1s", "high": "3s"})
    x = d.sample(np.random.default_rng(4), 10_000)
    assert x.min() >= 1.0 and x.max() <= 3.0
    assert d.mean() == 2.0
    with pytest.raises(ValidationError, match="low <= high"):
        DIST.validate_python({"dist": "uniform", "low": "3s", "high": "1s"})


def test_empirical_resamples_given_values():
    d = DIST.validate_python({"dist": "empirical", "samples": [0.1, "200ms", 3]})
    assert isinstance(d, Empirical)
    assert d.samples == pytest.approx([0.1, 0.2, 3.0])
    x = d.sample(np.random.default_rng(5), 1000)
    assert set(np.round(x, 9)) == {0.1, 0.2, 3.0}
    assert d.mean() == pytest.approx(3.3 / 3)


def test_empirical_rejects_empty_and_bad_samples():
    with pytest.raises(ValidationError, match="at least one sample"):
        DIST.validate_python({"dist": "empirical", "samples": []})
    with pytest.raises(ValidationError):
        DIST.validate_python({"dist": "empirical", "samples": [1, -2]})


def test_empirical_with_unloaded_file_cannot_sample():
    d = DIST.validate_python({"dist": "empirical", "samples": "latency.csv"})
    with pytest.raises(ValueError, match="not loaded"):
        d.sample(np.random.default_rng(0), 1)


def test_beta():
    d = DIST.validate_python({"dist": "beta", "a": 2, "b": 8})
    x = d.sample(np.random.default_rng(6), 100_000)
    assert x.min() >= 0 and x.max() <= 1
    assert x.mean() == pytest.approx(0.2, rel=0.02)
    with pytest.raises(ValidationError):
        DIST.validate_python({"dist": "beta", "a": 0, "b": 1})


@pytest.mark.parametrize(
    "bad",
    [{"dist": "gamma", "k": 1}, {"mean": "2s"}, {"dist": "exponential", "mean": "2s", "extra": 1}, "soon",
     {"dist": "gamma", "mean": "1s", "shape": 0}, {"dist": "weibull", "scale": "1s", "shape": -1},
     {"dist": "pareto", "minimum": "1s", "alpha": 1}, {"dist": "pareto", "minimum": 0, "alpha": 2},
     {"dist": "gamma", "mean": "1s", "shape": "inf"},
     {"dist": "lognormal", "p99": "1s"}, {"dist": "lognormal", "p50": "1s", "mean": "1s", "p99": "2s"},
     {"dist": "lognormal", "mean": "1s", "p99": "0.5s"}, {"dist": "lognormal", "mean": "1s", "p99": "20s"}],
)
def test_bad_distributions(bad):
    with pytest.raises(ValidationError):
        DIST.validate_python(bad)


def test_dist_kinds_lists_every_alternative():
    union = typing.get_args(Distribution)[0]
    kinds = tuple(typing.get_args(m.model_fields["dist"].annotation)[0] for m in typing.get_args(union))
    assert kinds == DIST_KINDS
    assert units.UNITS["h"] == 3600.0


RNG_N = 400_000


def _draws(spec):
    d = DIST.validate_python(spec)
    return d, d.sample(np.random.default_rng(20261203), RNG_N)


def test_lognormal_by_mean_and_p99():
    # Closed form: s = z - sqrt(z^2 - 2 ln(p99/mean)), mu = ln(mean) - s^2/2.
    d, x = _draws({"dist": "lognormal", "mean": "1s", "p99": "5s"})
    z = units.Z99
    s = z - math.sqrt(z * z - 2 * math.log(5.0))
    assert d.mu_sigma == pytest.approx((-s * s / 2, s))
    assert x.mean() == pytest.approx(1.0, rel=0.02)
    assert np.quantile(x, 0.99) == pytest.approx(5.0, rel=0.04)
    assert d.mean() == pytest.approx(1.0)


def test_gamma_mean_and_variance():
    # Gamma(k, theta = mean / k): variance k theta^2 = mean^2 / k.
    d, x = _draws({"dist": "gamma", "mean": "2s", "shape": 4})
    assert x.mean() == pytest.approx(2.0, rel=0.01) and d.mean() == 2.0
    assert x.var() == pytest.approx(4.0 / 4, rel=0.02)


def test_weibull_mean_and_median():
    # mean = scale * Gamma(1 + 1/k); median = scale * ln(2)^(1/k).
    d, x = _draws({"dist": "weibull", "scale": "3s", "shape": 0.7})
    assert d.mean() == pytest.approx(3.0 * math.gamma(1 + 1 / 0.7))
    assert x.mean() == pytest.approx(d.mean(), rel=0.02)
    assert np.median(x) == pytest.approx(3.0 * math.log(2) ** (1 / 0.7), rel=0.02)


def test_pareto_minimum_mean_and_median():
    # Type I: P(X > x) = (m / x)^alpha for x >= m; mean alpha m / (alpha - 1); median m 2^(1/alpha).
    d, x = _draws({"dist": "pareto", "minimum": "100ms", "alpha": 3})
    assert x.min() >= 0.1
    assert d.mean() == pytest.approx(0.15)
    assert x.mean() == pytest.approx(0.15, rel=0.02)
    assert np.median(x) == pytest.approx(0.1 * 2 ** (1 / 3), rel=0.01)
