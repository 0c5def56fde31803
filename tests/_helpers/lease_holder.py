"""`python -m tests._helpers.lease_holder URI SWEEP RUN_ID TTL`: one attempt at a run's lease, as a
separate process would make it. Prints `held` or `taken`, then holds what it got until stdin closes.

A holder asserts that a lease it has just acquired is its own (`Lease.confirm`, If-Match on its ETag;
a failed assertion exits 1). Before it releases it confirms again: if another process took the lease
over meanwhile it prints `lost` and exits 1, so a test that closes a holder normally also checks that
its heartbeat kept the run."""

import sys

from gclab.store.lease import Lease
from gclab.store.location import parse


def main() -> int:
    if len(sys.argv) != 5:
        print(__doc__.splitlines()[0], file=sys.stderr)
        return 2
    uri, sweep, run_id, ttl = sys.argv[1:5]
    lease = Lease(parse(uri), sweep, run_id, ttl=float(ttl))
    held = lease.acquire()
    # a lease just acquired is this holder's own: its ETag still matches (else acquire is broken: exit 1)
    assert not held or lease.confirm(), f"acquired the lease of {run_id} but it is not this holder's"
    print("held" if held else "taken", flush=True)
    sys.stdin.read()
    kept = not held or lease.confirm()
    lease.release()
    if not kept:
        print("lost", flush=True)
    return 0 if kept else 1


if __name__ == "__main__":
    sys.exit(main())
