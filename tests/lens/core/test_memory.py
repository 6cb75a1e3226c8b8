"""lens.core.memory: the arena cap and the trim reach glibc (Linux), and are harmless no-ops elsewhere."""

from __future__ import annotations

import sys

import pytest

from lens.core import memory


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc is Linux's")
def test_glibc_takes_the_arena_cap_and_the_trim():
    assert memory._libc() is not None
    assert memory.limit_arenas(8) is True  # 8: what a test may leave behind without changing much
    assert memory.map_large() is True
    assert isinstance(memory.trim(), bool)


def test_without_glibc_both_say_no(monkeypatch):
    monkeypatch.setattr(memory, "_libc", lambda: None)
    assert memory.limit_arenas() is False and memory.map_large() is False and memory.trim() is False
