"""Registers the `quick` Hypothesis profile before pytest's Hypothesis plugin may load it."""

import tests.examples  # noqa: F401
