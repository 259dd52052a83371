"""Toolchain registry, conformance certification, canary routing, promote/rollback."""
