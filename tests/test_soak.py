"""The CI soak: the real app (``python app.py`` on 127.0.0.1) under 3 visitors through ``gradio_client`` for 75 s
(:func:`bench.soak.soak`, the bench's code with fewer visitors and less time; ~2-3 min with start-up).

It fails on any unexpected error (a refusal that was not due, a traceback, a request unanswered), on files left
in the service's folder once every session ended, on threads or open files that outlive the visitors, and on
RSS growth beyond :data:`RSS_GROWTH` of the RSS after warm-up (the warm-up compares every clip the visitors
use, so the result caches are filled by then: what grows past it is explanations of other classes, scores and
allocator slack, bounded, or a leak).
"""

from __future__ import annotations

import pytest

from bench import soak

USERS, MINUTES, GOOD = 3, 1.25, 4
"""3 visitors for 75 s on 4 good clips (and the broken ones), all compared once in the warm-up."""
RSS_GROWTH = 0.6
"""RSS after the visitors left may exceed RSS after warm-up by at most this fraction (60 %; measured +26.7 % with
lens.core.memory, +49 % before it; a leak grows with every request and passes it within the run)."""
PEAK_RSS = 10 * 2**30


@pytest.mark.soak
def test_three_visitors_leave_no_unexpected_error_no_files_no_leak(capsys):
    summary = soak.soak(USERS, MINUTES, seed=1, good=GOOD)
    table = soak.table(summary)
    with capsys.disabled():
        print(f"\n{table}")
    kinds = {r.kind for r in summary.records}
    assert {"compare", "close session"} <= kinds and len(summary.records) >= 6, table
    assert not summary.unexpected, table
    assert summary.left_bytes == 0, table
    assert summary.peak_rss <= PEAK_RSS, table
    assert summary.rss_growth <= RSS_GROWTH, table
    warm, final = summary.warm, summary.final
    assert final[3] <= warm[3] + 4, f"threads {warm[3]} after warm-up, {final[3]} after the visitors left"
    assert final[2] <= warm[2] + 8, f"open files {warm[2]} after warm-up, {final[2]} after the visitors left"
