"""One module per check; `builds.testing.registry` lists them in order."""

from __future__ import annotations
