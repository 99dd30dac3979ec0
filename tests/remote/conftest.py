"""Fixtures of the host_setup unit tests: a throwaway sshd (host_setup_sshd.py)."""

from host_setup_sshd import sshd

__all__ = ["sshd"]
