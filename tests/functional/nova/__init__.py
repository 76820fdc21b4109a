"""Functional tests against the real Nova stack of tools/nova.sh."""
