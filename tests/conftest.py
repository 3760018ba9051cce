"""Shared fixtures: `lab_factory` brings labs up for a test session and always tears them down."""

from svcnet.lab.pytest_fixtures import lab_factory  # noqa: F401
