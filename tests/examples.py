"""How many examples a Hypothesis test draws: what it asks for, or fewer under the `quick` profile
the unit tier loads (`make test-unit`: `pytest --hypothesis-profile=quick`)."""

from __future__ import annotations

from hypothesis import settings

QUICK_PROFILE = "quick"
QUICK_EXAMPLES = 25

settings.register_profile(QUICK_PROFILE, max_examples=QUICK_EXAMPLES)


def examples(wanted: int) -> int:
    """`wanted`, or at most QUICK_EXAMPLES when the quick profile is loaded."""
    if settings.default == settings.get_profile(QUICK_PROFILE):
        return min(wanted, QUICK_EXAMPLES)
    return wanted
