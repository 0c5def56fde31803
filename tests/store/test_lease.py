"""Claims on object storage (gclab/store/lease.py) against a real S3-compatible server on loopback:
of racing processes exactly one gets a run, a SIGKILLed holder's lease expires and exactly one
taker gets it, a live holder's heartbeat keeps it, release frees it."""

import os
import signal
import subprocess
import sys
import time

import pytest

from gclab.store.claim import ClaimTaken, claim_for
from gclab.store.lease import Lease
from gclab.store.location import parse
from tests._helpers.cli import ROOT

TTL = 2.0  # short, so that a killed holder's lease expires within the test


def _holders(uri: str, n: int, run_id: str = "aaaaaaaaaaaa") -> list[subprocess.Popen]:
    return [
        subprocess.Popen(
            [sys.executable, "-m", "tests._helpers.lease_holder", uri, "demo", run_id, str(TTL)],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        for _ in range(n)
    ]


def _answers(procs: list[subprocess.Popen]) -> list[str]:
    return [p.stdout.readline().strip() for p in procs]  # pyright: ignore[reportOptionalMemberAccess]


def _close(procs: list[subprocess.Popen]) -> None:
    """Close each live holder's stdin; every one exits 0 (a holder that held its lease kept it to the end)."""
    for p in procs:
        if p.poll() is None:
            out, _ = p.communicate("", timeout=60)
            assert p.returncode == 0, f"holder {p.pid} exited {p.returncode}: {out!r}"


def _acquire_within(lease: Lease, seconds: float) -> bool:
    """Try until `seconds` have passed (a bound on the wait, not a measured time)."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if lease.acquire():
            return True
        time.sleep(0.2)
    return False


def test_racing_processes_exactly_one_wins(s3_uri):
    procs = _holders(s3_uri, 4)
    try:
        answers = _answers(procs)
        assert sorted(answers) == ["held", "taken", "taken", "taken"], answers
        lease = Lease(parse(s3_uri), "demo", "aaaaaaaaaaaa", ttl=TTL)
        assert not lease.acquire()
        winner = procs[answers.index("held")]
        assert lease.holder().endswith(f" {winner.pid}")
        with pytest.raises(ClaimTaken, match=str(winner.pid)):
            lease.require("run aaaaaaaaaaaa")
    finally:
        _close(procs)


def test_killed_holder_expires_and_one_taker_wins(s3_uri):
    (holder,) = _holders(s3_uri, 1)
    assert _answers([holder]) == ["held"]
    probe = Lease(parse(s3_uri), "demo", "aaaaaaaaaaaa", ttl=TTL)
    assert not probe.acquire()
    holder.send_signal(signal.SIGKILL)
    holder.wait(timeout=60)
    time.sleep(TTL + 1.5)  # the lease has outlived its TTL by the server's clock (1 s resolution)
    takers = _holders(s3_uri, 3)
    try:
        assert sorted(_answers(takers)) == ["held", "taken", "taken"]
    finally:
        _close(takers)
    # The winner released it on exit: free again.
    assert _acquire_within(probe, 30)
    probe.release()


def test_live_holder_keeps_its_lease_past_the_ttl(s3_uri):
    (holder,) = _holders(s3_uri, 1)
    try:
        assert _answers([holder]) == ["held"]
        time.sleep(3 * TTL)  # three TTLs without the heartbeat would have let it expire
        lease = Lease(parse(s3_uri), "demo", "aaaaaaaaaaaa", ttl=TTL)
        assert not lease.acquire()
        assert lease.holder().endswith(f" {holder.pid}")
    finally:
        _close([holder])


def test_release_frees_the_run_and_nested_claims_share_one_lease(s3, s3_uri):
    outer = claim_for(s3_uri, "demo", "bbbbbbbbbbbb")
    assert isinstance(outer, Lease)
    with outer:
        assert outer.held
        inner = claim_for(s3_uri, "demo", "bbbbbbbbbbbb")
        assert inner.acquire()  # the Recorder inside a runner's claim
        inner.release()
        bucket = s3_uri.split("/")[2]
        assert s3.keys(bucket) == ["store/claims/sweep=demo/run_id=bbbbbbbbbbbb"]
        (other,) = _holders(s3_uri, 1, "bbbbbbbbbbbb")
        assert _answers([other]) == ["taken"]
        _close([other])
    assert s3.keys(bucket) == []
    (after,) = _holders(s3_uri, 1, "bbbbbbbbbbbb")
    try:
        assert _answers([after]) == ["held"]
    finally:
        _close([after])


def test_missing_bucket_is_one_line(s3):
    lease = Lease(parse("s3://no-such-bucket-here/store"), "demo", "cccccccccccc")
    with pytest.raises(Exception, match="bucket does not exist") as info:
        lease.acquire()
    assert "\n" not in str(info.value)


def test_a_holder_whose_lease_was_overwritten_says_lost(s3, s3_uri):
    """The helper's own check: another writer replaced the lease object (a new ETag) while the holder
    held it, so its confirm before release fails — it prints `lost` and exits 1, not 0."""
    (holder,) = _holders(s3_uri, 1, "dddddddddddd")
    assert _answers([holder]) == ["held"]
    bucket = s3_uri.split("/")[2]
    s3.client().put_object(Bucket=bucket, Key="store/claims/sweep=demo/run_id=dddddddddddd", Body=b'{"holder": "x"}')
    out, _ = holder.communicate("", timeout=60)
    assert (holder.returncode, out.strip()) == (1, "lost")
