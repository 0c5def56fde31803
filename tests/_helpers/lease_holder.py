"""`python -m tests._helpers.lease_holder URI SWEEP RUN_ID TTL`: one attempt at a run's lease, as a
separate process would make it. Prints `held` or `taken`, then holds what it got until stdin closes."""

import sys

from gclab.store.lease import Lease
from gclab.store.location import parse


def main() -> None:
    uri, sweep, run_id, ttl = sys.argv[1:5]
    lease = Lease(parse(uri), sweep, run_id, ttl=float(ttl))
    print("held" if lease.acquire() else "taken", flush=True)
    sys.stdin.read()
    lease.release()


if __name__ == "__main__":
    main()
