from tests.reliability.faultrun import world  # noqa: F401 -- the fixture
