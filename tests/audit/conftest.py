"""The enrollment rig (reference server + UDP virtual keys), reused to see model names in enroll's output."""

from tests.enroll.conftest import enroll, rig

__all__ = ["enroll", "rig"]
