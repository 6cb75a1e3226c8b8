"""Deployment helpers (not part of the installed packages)."""
