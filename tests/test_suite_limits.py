"""The suite's own limits: nothing in it measures how busy the machine is."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests import helpers


def test_hypothesis_has_no_clock() -> None:
    """Hypothesis' deadline and its too_slow health check time the machine, not the code."""
    assert settings.default.deadline is None
    assert HealthCheck.too_slow in settings.default.suppress_health_check


@given(st.integers())
def test_a_given_without_settings_inherits_the_profile(value: int) -> None:
    assert settings.default.deadline is None and isinstance(value, int)


def test_wait_s_is_generous_and_scaled() -> None:
    assert helpers.WAIT_S == 60.0 * helpers.PATIENCE
    assert helpers.WAIT_S >= 60.0 or helpers.PATIENCE < 1
