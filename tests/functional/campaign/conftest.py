"""The rollouts' fleet driver (tests/functional/rollouts/conftest.py) for the campaign tests."""

from tests.functional.rollouts.conftest import make_fleet

__all__ = ["make_fleet"]
