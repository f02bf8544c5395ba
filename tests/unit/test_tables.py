"""The terminal tables: fit 100 columns, collapse intervals without width, shares as percent."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from simharness import stats, tables


def _agg(reps: int = 6, controls=("none", "static_iam", "jit_per_task", "per_action_policy")):
    rows = []
    for i, c in enumerate(controls):
        for r in range(reps):
            rows.append({"control": c, "replication": r,
                         "misuse_caught": 3 * i + r % 2, "misuse_injected": 10,
                         "damage": 1000.0 / (i + 1) + r, "exposure": 1.81e8 if i == 0 else 5e4 + r,
                         "legit_denied": i * 7 + r % 3, "legit_actions": 500,
                         "tasks_completed": 90 - i, "tasks_ended": 100,
                         "task_inflation": 0.01 * i + 0.001 * r, "decision_p99_ms": 5.9 + 0.1 * r})
    return stats.aggregate(pd.DataFrame(rows), ["control"])


@pytest.mark.parametrize("width", [100, 80])
def test_tables_fit_the_width(width):
    text = tables.headline_table(_agg(), width=width)
    assert max(len(line) for line in text.splitlines()) <= width
    if width == 100:  # every headline metric shown whole (narrower, headers fold)
        for metric in (*tables.SAFETY, *tables.COST):
            assert metric in text


def test_an_interval_without_width_is_the_mean_once():
    text = tables.headline_table(_agg())
    none_row = next(line for line in text.splitlines() if line.startswith("none"))
    assert "1.81e+08" in none_row and none_row.count("1.81e+08") == 1
    assert tables.cell(2.0, 2.0, 2.0) == "2.00"
    assert tables.cell(2.0, math.nan, math.nan) == "2.00"
    assert tables.cell(0.5, 0.25, 0.75, percent=True) == "50.0% [25.0, 75.0]"
    assert tables.cell(math.nan, math.nan, math.nan, percent=True) == "n/a"


def test_task_success_rate_stands_next_to_task_inflation():
    header = next(line for line in tables.headline_table(_agg()).splitlines()
                  if "task_inflation" in line)
    assert "task_success_rate" in header
    assert header.index("task_success_rate") < header.index("task_inflation")


def test_replication_count_in_the_title_or_a_column():
    assert "6 replications each" in tables.headline_table(_agg())
    mixed = pd.concat([_agg(reps=6, controls=("none",)), _agg(reps=4, controls=("jit_per_task",))])
    text = tables.headline_table(mixed)
    assert "replications each" not in text and " n " in text.splitlines()[1] + " "
    assert "fewer than 5" in text  # 4 replications behind the jit_per_task row

