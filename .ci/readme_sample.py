"""Write the README's sample output (`simharness run baseline`) from a real run.

    python .ci/readme_sample.py        # rewrites the block after README's sample marker

tests/unit/test_readme.py fails when the block and a real run differ."""

from __future__ import annotations

import re
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MARKER = "<!-- sample output: simharness run baseline (.ci/readme_sample.py writes it) -->"


def sample() -> str:
    """What `simharness run baseline` prints as its tables, at 100 columns."""
    import simharness
    from simharness.tables import headline_table

    with tempfile.TemporaryDirectory() as tmp:
        res = simharness.run("baseline", out=Path(tmp) / "out", workers=2)
        return headline_table(res.aggregate, width=100)


def block(readme: str) -> str:
    """The code block after the marker."""
    m = re.search(re.escape(MARKER) + r"\n```\n(.*?)```\n", readme, re.S)
    if m is None:
        raise SystemExit(f"README.md has no sample block after {MARKER!r}")
    return m.group(1)


def main() -> int:
    path = ROOT / "README.md"
    text = path.read_text()
    old = block(text)
    path.write_text(text.replace(f"{MARKER}\n```\n{old}```\n", f"{MARKER}\n```\n{sample()}```\n"))
    print("README.md sample output updated")
    return 0


if __name__ == "__main__":
    sys.exit(main())
