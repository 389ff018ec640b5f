"""A marker for "not given", where None is a valid value."""

from typing import Any

MISSING: Any = object()
