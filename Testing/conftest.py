"""Shared pytest fixtures."""

from pathlib import Path

import pytest


@pytest.fixture
def shared_data() -> Path:
    """The project's real data (../shared/data from the repository root)."""
    path = Path(__file__).resolve().parents[1].parent / "shared" / "data"
    if not path.is_dir():
        pytest.skip(f"shared data not found at {path}")
    return path
