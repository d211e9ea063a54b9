"""Shared fixtures: the real data in ../shared/data (skipped with a reason when absent)."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The shared real-data folder; tests that need it skip when it is absent (a user's machine)."""
    if not (SHARED_DATA / "README.md").exists():
        pytest.skip(f"real data not available: {SHARED_DATA} is absent (it exists only beside dev/CI checkouts)")
    return SHARED_DATA
