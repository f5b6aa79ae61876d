"""Worker-tagged sids (roomcast.worker_ids): the tag round-trips every pid Linux can give,
keeps Node's 20-character url-safe shape, and untagged or foreign ids name no worker."""
from __future__ import annotations

import re

import pytest
from hypothesis import given, strategies as st

from roomcast.worker_ids import MAX_PID, pid_of_sid, tag_of_pid, tagged_id


@given(st.integers(min_value=1, max_value=MAX_PID))
def test_the_pid_round_trips(pid):
    sid = tagged_id(tag_of_pid(pid))
    assert re.fullmatch(r"[A-Za-z0-9_-]{20}", sid)
    assert pid_of_sid(sid) == pid


def test_linux_pids_fit():
    assert MAX_PID >= 4_194_304   # pid_max's ceiling on 64-bit Linux


@pytest.mark.parametrize("sid", ["", "short", "AAAA" + "x" * 15, "!!!!" + "x" * 16, "AAAA" + "x" * 16])
def test_other_ids_name_no_worker(sid):
    assert pid_of_sid(sid) is None


def test_untagged_ids_stay_random():
    assert len({tagged_id("") for _ in range(100)}) == 100
    with pytest.raises(ValueError):
        tag_of_pid(MAX_PID + 1)
