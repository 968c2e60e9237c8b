"""A reader of a queued workflow's events (docs/consumers.md), with psycopg 3.

    python consumer.py CONNINFO WORKFLOW_ID [--batch 10] [--visibility 30]

It LISTENs on webhook_events, reads up to --batch events with webhook_read,
and handles each in a transaction of its own that also acks it: the work and
the ack commit together, so an event is either done and acked or neither
(and read again once its visibility timeout passes, by this reader or
another). The ack names the attempt read, so a reader whose timeout passed
while another took the event over rolls its work back. An event whose work fails is nacked, and retried by the workflow's
retry policy. Each handled event is printed as one JSON line.

Replace handle() with the application's own work.
"""

import argparse
import json
import signal
import sys
import time

import psycopg

# How long to wait for a notification before reading anyway: retries come
# due without one.
IDLE_WAIT_SECONDS = 5.0


def handle(conn: psycopg.Connection, event: dict) -> dict:
    """The application's work for one event, in the transaction that acks
    it. Here: the order it is about and the names of its parameters, after
    a pause long enough to see the reader at work (--work-seconds)."""
    params = event["params"]
    time.sleep(ARGS.work_seconds)
    if params.get("fail"):
        raise ValueError(f"cannot handle order {params.get('order_id')}")
    return {"event_id": event["id"], "order_id": params.get("order_id"), "attempt": event["attempts"],
            "keys": sorted(params)}


def read_batch(conn: psycopg.Connection, workflow: str) -> list[dict]:
    """Reads and hides up to --batch events (committed at once: a reader that
    dies now leaves them for the visibility timeout)."""
    with conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
        cur.execute("SELECT id, params, attempts FROM webhook_read(%s, %s, make_interval(secs => %s))",
                    (workflow, ARGS.batch, ARGS.visibility))
        return cur.fetchall()


def run(conninfo: str, workflow: str) -> None:
    with psycopg.connect(conninfo, autocommit=True) as listening, \
         psycopg.connect(conninfo, autocommit=True) as conn:
        listening.execute("LISTEN webhook_events")
        while True:
            events = read_batch(conn, workflow)
            for event in events:
                try:
                    with conn.transaction():
                        done = handle(conn, event)
                        # This read's attempt: if its timeout passed and another
                        # reader has the event now, the ack is refused (false)
                        # and the transaction rolls back.
                        if not conn.execute("SELECT webhook_ack(%s, %s)",
                                            (event["id"], event["attempts"])).fetchone()[0]:
                            raise TimeoutError("visibility timeout passed: left to the next reader")
                except TimeoutError:
                    continue
                except Exception as error:  # the work failed: retried later
                    conn.execute("SELECT webhook_nack(%s, error => %s, attempt => %s)",
                                 (event["id"], str(error), event["attempts"]))
                    continue
                print(json.dumps(done), flush=True)
            if not events:
                # Nothing due: wait for the next event (any notification
                # will do: the payload names no workflow).
                for _ in listening.notifies(timeout=IDLE_WAIT_SECONDS, stop_after=1):
                    pass


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("conninfo", help="libpq connection string, e.g. 'host=/var/run/postgresql dbname=app'")
    parser.add_argument("workflow", help="the queued workflow's id")
    parser.add_argument("--batch", type=int, default=10, help="events read at once")
    parser.add_argument("--visibility", type=float, default=30, help="seconds an event read stays hidden")
    parser.add_argument("--work-seconds", type=float, default=0.0, help="pause per event (demonstration)")
    return parser.parse_args()


if __name__ == "__main__":
    ARGS = arguments()
    # Stopped by SIGTERM (a service manager) or Ctrl-C: what is read and not
    # acked comes back after its visibility timeout.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        run(ARGS.conninfo, ARGS.workflow)
    except KeyboardInterrupt:
        sys.exit(0)
