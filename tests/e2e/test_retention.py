"""Retention: finished events older than their workflow's retention (or the
server's) are deleted with their attempts by the retention process; pending
and failed events are never removed, whatever their age. A backlog goes in
bounded steps, in a process of its own: requests are answered meanwhile,
however slow the steps."""

import re
import threading
import time

import hookkit as hk

OLD = "now() - interval '2 hours'"


def insert_event(c, wf: str, status: str, handled: str | None, received: str = OLD) -> int:
    """An event as an executor leaves it, aged: received (and, when
    finished, last attempted) long ago, with one attempt row."""
    next_attempt = "NULL" if status in ("succeeded", "dead") else "now() + interval '1 day'"
    attempts = 0 if status == "pending" else 1
    event_id = c.scalar(
        f"INSERT INTO webhook.events (workflow_id, method, params, status, attempts, next_attempt_at, "
        f"received_at, handled_at) VALUES (%s::uuid, 'POST', '{{}}', %s, %s, {next_attempt}, {received}, "
        f"{handled or 'NULL'}) RETURNING id", (wf, status, attempts))
    if attempts:
        c.sql("INSERT INTO webhook.attempts (event_id, attempt, workflow_id, started_at, ended_at, outcome) "
              f"VALUES (%s, 1, %s::uuid, {received}, {received}, %s)",
              (event_id, wf, "succeeded" if status == "succeeded" else "failed"))
    return event_id


def kept(c, ids: list[int]) -> list[int]:
    return [r["id"] for r in c.rows("SELECT id FROM webhook.events WHERE id = ANY(%s) ORDER BY id", (ids,))]


def test_defaults_are_a_week_for_succeeded_and_thirty_days_for_dead_events(cluster):
    assert cluster.scalar("SHOW webhook.retain_succeeded") == "7d"
    assert cluster.scalar("SHOW webhook.retain_dead") == "30d"


def test_finished_events_past_their_workflows_retention_go_with_their_attempts(make_cluster):
    c = make_cluster(conf={"webhook.workers": 2})
    c.sql("CREATE EXTENSION webhook_ext")
    hk.wait_ready(c)
    short = hk.create_workflow(c)
    other = hk.create_workflow(c)  # the server's retention: a week, a month
    c.sql("SELECT webhook_set_retention(%s, '1 hour', '3 hours')", (short,))
    assert c.row("SELECT retain_succeeded::text, retain_dead::text FROM webhook.workflows WHERE id = %s",
                 (short,)) == {"retain_succeeded": "01:00:00", "retain_dead": "03:00:00"}

    gone_succeeded = insert_event(c, short, "succeeded", OLD)
    kept_dead = insert_event(c, short, "dead", OLD)                     # 2 h < 3 h
    gone_dead = insert_event(c, short, "dead", "now() - interval '4 hours'",
                             received="now() - interval '4 hours'")
    recent = insert_event(c, short, "succeeded", "now() - interval '5 minutes'")
    # Received long ago, finished recently (retried for days): kept.
    late = insert_event(c, short, "succeeded", "now() - interval '5 minutes'", received="now() - interval '5 days'")
    # Never removed by retention, however old.
    pending = insert_event(c, short, "pending", None, received="now() - interval '90 days'")
    failed = insert_event(c, short, "failed", "now() - interval '90 days'", received="now() - interval '90 days'")
    other_old = insert_event(c, other, "succeeded", OLD)
    ids = [gone_succeeded, kept_dead, gone_dead, recent, late, pending, failed, other_old]

    hk.wait_for_value(lambda: kept(c, ids), sorted([kept_dead, recent, late, pending, failed, other_old]),
                      timeout=10, what="old finished events deleted")
    assert c.scalar("SELECT count(*) FROM webhook.attempts WHERE event_id IN (%s, %s)",
                    (gone_succeeded, gone_dead)) == 0
    assert c.scalar("SELECT count(*) FROM webhook.attempts WHERE event_id = %s", (kept_dead,)) == 1
    assert c.row("SELECT status, next_attempt_at IS NOT NULL AS due FROM webhook.events WHERE id = %s",
                 (failed,)) == {"status": "failed", "due": True}

    # The workflow goes back to the server's retention.
    c.sql("SELECT webhook_set_retention(%s, NULL, NULL)", (short,))
    assert c.row("SELECT retain_succeeded, retain_dead FROM webhook.workflows WHERE id = %s",
                 (short,)) == {"retain_succeeded": None, "retain_dead": None}


def test_the_servers_retention_applies_when_reloaded_and_minus_one_keeps_for_ever(make_cluster):
    c = make_cluster(conf={"webhook.workers": 1, "webhook.retain_succeeded": -1, "webhook.retain_dead": -1})
    c.sql("CREATE EXTENSION webhook_ext")
    hk.wait_ready(c)
    wf = hk.create_workflow(c)
    ancient = "now() - interval '400 days'"
    succeeded = insert_event(c, wf, "succeeded", ancient, received=ancient)
    dead = insert_event(c, wf, "dead", ancient, received=ancient)
    served = hk.post(c, wf, json_body={"n": 1})
    assert served.status_code == 200, served.text
    hk.wait_for_status(c, served.json()["event_id"], "succeeded")
    # Kept for ever: the retention process's once-a-second rounds pass and nothing
    # goes (a wait, since what is checked is that nothing happens).
    time.sleep(2.5)
    assert kept(c, [succeeded, dead]) == [succeeded, dead]

    c.set_conf(**{"webhook.retain_dead": "1h"})
    c.reload()
    hk.wait_for_value(lambda: kept(c, [succeeded, dead]), [succeeded], timeout=10, what="the dead event deleted")
    c.set_conf(**{"webhook.retain_succeeded": 0})
    c.reload()
    hk.wait_for_value(lambda: kept(c, [succeeded, dead, served.json()["event_id"]]), [], timeout=10,
                      what="every succeeded event deleted")


def test_a_workflow_keeps_at_most_max_events_its_oldest_finished_ones_going_first(make_cluster):
    c = make_cluster(conf={"webhook.workers": 1})
    c.sql("CREATE EXTENSION webhook_ext")
    hk.wait_ready(c)
    wf = hk.create_workflow(c)
    other = hk.create_workflow(c)
    # Received a minute apart, oldest first, all well within the server's
    # retention (a week, a month): only the bound lets any go.
    at = [f"now() - interval '{60 - n} minutes'" for n in range(10)]
    pending = insert_event(c, wf, "pending", None, received=at[0])
    finished = [insert_event(c, wf, "succeeded", at[n], received=at[n]) for n in range(1, 9)]
    dead = insert_event(c, wf, "dead", at[9], received=at[9])
    others = [insert_event(c, other, "succeeded", at[n], received=at[n]) for n in range(10)]
    ids = [pending, *finished, dead]
    time.sleep(2.5)  # rounds pass: nothing is past a bound yet
    assert kept(c, ids + others) == sorted(ids + others)

    row = c.row("SELECT max_events FROM webhook_set_retention(%s, NULL, NULL, 5)", (wf,))
    assert row == {"max_events": 5}
    # The five newest stay, and the older pending event: past the bound,
    # only finished events go, the oldest first (with their attempts).
    hk.wait_for_value(lambda: kept(c, ids), sorted([pending, *finished[4:], dead]), timeout=10,
                      what="the oldest finished events past the bound deleted")
    assert c.scalar("SELECT count(*) FROM webhook.attempts WHERE event_id = ANY(%s)", (finished[:4],)) == 0
    assert kept(c, others) == others

    # New events push the oldest finished ones out, one for one.
    newer = [insert_event(c, wf, "succeeded", "now()", received="now()") for _ in range(2)]
    hk.wait_for_value(lambda: kept(c, ids + newer), sorted([pending, *finished[6:], dead, *newer]), timeout=10,
                      what="two more deleted for the two new ones")

    # No bound again: nothing more goes.
    c.sql("SELECT webhook_set_retention(%s, NULL, NULL)", (wf,))
    assert c.scalar("SELECT max_events FROM webhook.workflows WHERE id = %s", (wf,)) is None
    more = [insert_event(c, wf, "succeeded", "now()", received="now()") for _ in range(3)]
    time.sleep(2.5)
    assert kept(c, ids + newer + more) == sorted([pending, *finished[6:], dead, *newer, *more])


def test_max_events_is_between_one_and_a_million(cluster):
    wf = hk.create_workflow(cluster)
    for bad in (0, -1, 1_000_001):
        err = cluster.sql_error("SELECT webhook_set_retention(%s, NULL, NULL, %s)", (wf, bad), sqlstate="22023")
        assert err["message"] == "max_events must be between 1 and 1000000, or NULL for no bound"
    assert cluster.scalar("SELECT max_events FROM webhook_set_retention(%s, NULL, NULL, 1000000)", (wf,)) == 1_000_000


def test_retention_must_be_positive_and_only_the_owner_sets_it(cluster, uniq):
    wf = hk.create_workflow(cluster)
    for succeeded, dead in (("0 seconds", None), (None, "1001 years"), ("10000 years", "1 day")):
        err = cluster.sql_error("SELECT webhook_set_retention(%s, %s::interval, %s::interval)",
                                (wf, succeeded, dead), sqlstate="22023")
        assert err["message"] == \
            "retention must be a positive interval of at most 1000 years, or NULL for the server's default"
        assert err["hint"] == "webhook.retain_succeeded and webhook.retain_dead are the defaults."
    # Nor through the column a tenant may update.
    cluster.sql_error("UPDATE webhook.workflows SET retain_succeeded = '10000 years' WHERE id = %s", (wf,),
                      sqlstate="23514")
    cluster.sql("SELECT webhook_set_retention(%s, '1000 years', '1000 years')", (wf,))
    tenant = hk.make_login_role(cluster, uniq)
    try:
        err = cluster.sql_error("SELECT webhook_set_retention(%s, '1 day', NULL)", (wf,), user=tenant)
        assert err["message"] == f"workflow {wf} does not exist"
    finally:
        hk.drop_login_role(cluster, tenant)


def test_a_workflow_whose_steps_fail_is_passed_over_and_holds_up_no_other(make_cluster):
    c = make_cluster(conf={"webhook.workers": 1, "webhook.retain_succeeded": "1h"})
    c.sql("CREATE EXTENSION webhook_ext")
    hk.wait_ready(c)
    handler, _ = hk.create_side_handler(c)
    c.sql("SELECT webhook_create_workflow('wf' || n, %s::regproc) FROM generate_series(1, 260) n", (handler,))
    ids = [str(r["id"]) for r in c.rows("SELECT id FROM webhook.workflows ORDER BY id")]
    # A workflow whose every step fails (a trigger stands for whatever may
    # go wrong with one workflow's rows), in the second batch of 200; its
    # neighbours in either batch keep their retention.
    bad, before, after = ids[230], ids[10], ids[240]
    c.sql("CREATE FUNCTION public.refuse() RETURNS trigger LANGUAGE plpgsql AS $f$ BEGIN "
          f"IF OLD.workflow_id = '{bad}' THEN RAISE EXCEPTION 'refused'; END IF; RETURN OLD; END $f$")
    c.sql("CREATE TRIGGER refuse BEFORE DELETE ON webhook.events FOR EACH ROW EXECUTE FUNCTION public.refuse()")
    since = c.log_position()
    stuck = insert_event(c, bad, "succeeded", OLD)
    others = [insert_event(c, wf, "succeeded", OLD) for wf in (before, after)]
    hk.wait_for_value(lambda: kept(c, others + [stuck]), [stuck], timeout=15, what="the others' old events deleted")
    # Positive control: that workflow's steps did fail, and the log names it.
    c.wait_for_log(re.escape(f"could not delete old events of workflow {bad} (passed over until the next pass)"),
                   timeout=10, since=since)
    # Again and again, and still the others go.
    again = [insert_event(c, wf, "succeeded", OLD) for wf in (before, after)]
    hk.wait_for_value(lambda: kept(c, again), [], timeout=15, what="the others' old events deleted again")
    assert kept(c, [stuck]) == [stuck]


def test_the_retention_process_comes_back_after_pg_terminate_backend(make_cluster):
    c = make_cluster(conf={"webhook.workers": 1, "webhook.retain_succeeded": "1h"})
    c.sql("CREATE EXTENSION webhook_ext")
    hk.wait_ready(c)
    wf = hk.create_workflow(c)
    pid = retention_pid(c)
    assert c.scalar("SELECT pg_terminate_backend(%s)", (pid,)) is True
    hk.wait_until(lambda: c.scalar("SELECT count(*) FROM pg_stat_activity WHERE backend_type = "
                                   "'webhook_ext retention' AND pid <> %s", (pid,)) == 1,
                  timeout=10, what="a new retention process")
    old = insert_event(c, wf, "succeeded", OLD)
    hk.wait_for_value(lambda: kept(c, [old]), [], timeout=10, what="old events deleted again")


# ------------------------------------------------------------- its bounds
# What retention promises: a step (one statement, in a transaction of its
# own) deletes at most STEP_ROWS events, each workflow's oldest first, from
# the next STEP_WORKFLOWS workflows in id order (wrapping around); steps
# follow one another while they find a full step's worth or have not looked
# at every workflow, in the retention process, never on a listener. Each
# test logs every step from a statement trigger (record_steps), and polls
# what is left from another session, as an operator would.
STEP_ROWS = 1000
STEP_WORKFLOWS = 200
SLOW_STEP = 0.030  # a slow disk


def retention_pid(c) -> int:
    """The retention process (exactly one)."""
    pids = [r["pid"] for r in c.rows("SELECT pid FROM pg_stat_activity WHERE backend_type = 'webhook_ext retention'")]
    assert len(pids) == 1, pids
    return pids[0]


def record_steps(c, step_sleep: float = 0.0) -> None:
    """Logs every retention step in public.retention_steps, from a statement
    trigger on webhook.events (nothing else deletes events here): the process
    that ran it, when it started (now(): the retention process sets each step's
    statement start) and ended, how many events it deleted, from which
    workflows, the lowest and highest event id. With ``step_sleep`` every
    step takes that much longer."""
    c.sql("CREATE TABLE public.retention_steps (n bigserial PRIMARY KEY, pid int, started timestamptz, "
          "ended timestamptz, deleted int, workflows uuid[], first_id bigint, last_id bigint)")
    sleep = f"PERFORM pg_catalog.pg_sleep({step_sleep}); " if step_sleep else ""
    c.sql("CREATE FUNCTION public.record_retention_step() RETURNS trigger LANGUAGE plpgsql AS $f$ BEGIN "
          f"{sleep}INSERT INTO public.retention_steps (pid, started, ended, deleted, workflows, first_id, last_id) "
          "SELECT pg_catalog.pg_backend_pid(), pg_catalog.now(), pg_catalog.clock_timestamp(), "
          "pg_catalog.count(*), COALESCE(pg_catalog.array_agg(DISTINCT g.workflow_id), '{}'), "
          "pg_catalog.min(g.id), pg_catalog.max(g.id) FROM gone g; RETURN NULL; END $f$")
    c.sql("CREATE TRIGGER record_retention_step AFTER DELETE ON webhook.events REFERENCING OLD TABLE AS gone "
          "FOR EACH STATEMENT EXECUTE FUNCTION public.record_retention_step()")


def last_step(c) -> int:
    return c.scalar("SELECT coalesce(max(n), 0) FROM public.retention_steps")


def logged_steps(c, after: int = 0) -> list[dict]:
    """The steps logged after step ``after``, checked to be the retention
    process's."""
    logged = c.rows("SELECT pid, started, ended, deleted, workflows, first_id, last_id "
                    "FROM public.retention_steps WHERE n > %s ORDER BY n", (after,))
    assert {s["pid"] for s in logged} == {retention_pid(c)}, logged[:3]
    return logged


def insert_old_succeeded(c, workflows: str, per_workflow: int) -> None:
    """``per_workflow`` succeeded events, each with its attempt, for every
    workflow the query ``workflows`` selects, received and handled two hours
    ago a millisecond apart in id order; all in one statement."""
    c.sql("WITH e AS (INSERT INTO webhook.events (workflow_id, method, params, status, attempts, "
          "next_attempt_at, received_at, handled_at) "
          "SELECT w.id, 'POST', '{}', 'succeeded', 1, NULL, t, t FROM (" + workflows + ") w(id) "
          "CROSS JOIN generate_series(1, %s) n "
          "CROSS JOIN LATERAL (SELECT now() - interval '2 hours' + n * interval '1 ms') a(t) "
          "ORDER BY w.id, n RETURNING id, workflow_id, received_at) "
          "INSERT INTO webhook.attempts (event_id, attempt, workflow_id, started_at, ended_at, outcome) "
          "SELECT id, 1, workflow_id, received_at, received_at, 'succeeded' FROM e", (per_workflow,))


class Poller:
    """Runs ``query`` (one number) in a session of its own every 5 ms until
    stopped; ``seen`` is [(monotonic time, value)]."""

    def __init__(self, c, query: str, params: tuple = ()):
        self.seen: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._conn = c.connect()
        self._query, self._params = query, params
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.seen.append((time.monotonic(), self._conn.execute(self._query, self._params).fetchone()[0]))
            time.sleep(0.005)

    def last(self) -> int | None:
        return self.seen[-1][1] if self.seen else None

    def wait_for(self, value: int, timeout: float) -> list[tuple[float, int]]:
        """Waits until ``value`` is seen, stops, returns what was seen."""
        try:
            hk.wait_until(lambda: self.last() == value, timeout, interval=0.02,
                          what=f"{self._query!r} == {value}")
        finally:
            self._stop.set()
            self._thread.join(10)
            self._conn.close()
        return self.seen


def backlog_cluster(make_cluster):
    """One listener (it answers every request), succeeded events kept an
    hour."""
    c = make_cluster(conf={"webhook.workers": 1, "webhook.retain_succeeded": "1h"})
    c.sql("CREATE EXTENSION webhook_ext")
    hk.wait_ready(c)
    return c


def test_a_backlog_goes_a_full_step_at_a_time_while_requests_are_answered(make_cluster):
    backlog = 15_500  # 15 full steps and 500
    c = backlog_cluster(make_cluster)
    record_steps(c)
    old = hk.create_workflow(c)
    busy = hk.create_workflow(c)
    insert_old_succeeded(c, f"SELECT '{old}'::uuid", backlog)
    first_id = c.scalar("SELECT min(id) FROM webhook.events WHERE workflow_id = %s", (old,))
    poller = Poller(c, "SELECT count(*) FROM webhook.events WHERE workflow_id = %s", (old,))

    # Another workflow's requests, one after another, while the backlog goes.
    answers: list[tuple[int, float]] = []
    while poller.last() != 0 and len(answers) < 20_000:
        t0 = time.monotonic()
        r = hk.post(c, busy, json_body={"n": len(answers)})
        answers.append((r.status_code, time.monotonic() - t0))
    seen = [v for _, v in poller.wait_for(0, timeout=30)]

    # What is left is only ever the backlog less whole steps (the last
    # step takes the remaining 500), going down.
    assert set(seen) <= {backlog - STEP_ROWS * k for k in range(backlog // STEP_ROWS + 1)} | {0}, \
        sorted(set(seen), reverse=True)
    assert seen == sorted(seen, reverse=True)
    assert any(0 < v < backlog for v in seen), "the backlog never seen half-way"
    assert c.scalar("SELECT count(*) FROM webhook.attempts WHERE workflow_id = %s", (old,)) == 0

    # Every step deleted the oldest thousand left (ids are in received
    # order), then the 500.
    logged = logged_steps(c)
    deleting = [s for s in logged if s["deleted"]]
    assert [s["deleted"] for s in deleting] == [STEP_ROWS] * (backlog // STEP_ROWS) + [backlog % STEP_ROWS]
    assert [(s["first_id"], s["last_id"]) for s in deleting] == \
        [(first_id + STEP_ROWS * k, first_id + STEP_ROWS * k + s["deleted"] - 1) for k, s in enumerate(deleting)]
    # The other workflow's requests were answered meanwhile, each within a
    # second, and each 2xx is a stored event.
    assert len(answers) >= 10, answers
    assert {status for status, _ in answers} == {200}, answers
    assert max(took for _, took in answers) < 1, sorted(took for _, took in answers)[-5:]
    assert hk.count_events(c, busy) == len(answers)


def test_a_step_deletes_from_at_most_two_hundred_workflows_in_id_order(make_cluster, uniq):
    workflows = 450  # two full steps' worth and 50 more
    c = backlog_cluster(make_cluster)
    # Steps slowed down so that what each step did is seen by polling too.
    record_steps(c, step_sleep=SLOW_STEP)
    handler, _ = hk.create_side_handler(c)
    c.sql("SELECT webhook_create_workflow(%s || n, %s::regproc) FROM generate_series(1, %s) n",
          (uniq("wf"), handler, workflows))
    ids = [str(r["id"]) for r in c.rows("SELECT id FROM webhook.workflows ORDER BY id")]
    assert len(ids) == workflows
    since = last_step(c)
    insert_old_succeeded(c, "SELECT id FROM webhook.workflows", 1)
    poller = Poller(c, "SELECT count(DISTINCT workflow_id) FROM webhook.events")
    seen = [v for _, v in poller.wait_for(0, timeout=30)]

    logged = logged_steps(c, since)
    deleting = [s for s in logged if s["deleted"]]
    # One event from each of at most 200 workflows a step, ...
    assert all(s["deleted"] == len(s["workflows"]) <= STEP_WORKFLOWS for s in deleting), \
        [(s["deleted"], len(s["workflows"])) for s in deleting]
    # ... consecutive in id order, wrapping around, 200 at a time: the
    # steps took every workflow once, in the order of a rotation of the ids,
    # each a full 200 except the one that ended at the last workflow.
    runs = [sorted(map(str, s["workflows"])) for s in deleting]
    order = [wf for run in runs for wf in run]
    start = ids.index(order[0])
    assert order == ids[start:] + ids[:start], [(ids.index(r[0]), len(r)) for r in runs]
    assert sorted(len(r) for r in runs) == [workflows % STEP_WORKFLOWS] + [STEP_WORKFLOWS] * \
        (workflows // STEP_WORKFLOWS), [(ids.index(r[0]), len(r)) for r in runs]
    assert all(r[-1] == ids[-1] for r in runs if len(r) < STEP_WORKFLOWS)

    # Polled: the workflows with old events went down as the steps went,
    # and were seen between steps.
    after_steps = {workflows - sum(s["deleted"] for s in deleting[:k]) for k in range(len(deleting) + 1)}
    assert set(seen) <= after_steps, (sorted(set(seen)), sorted(after_steps))
    assert seen == sorted(seen, reverse=True)
    assert any(0 < v < workflows for v in seen), sorted(set(seen))


def test_slow_steps_hold_up_no_request(make_cluster):
    step_sleep = 0.4  # each step takes this much longer (a very slow disk)
    c = backlog_cluster(make_cluster)
    record_steps(c, step_sleep=step_sleep)
    old = hk.create_workflow(c)
    busy = hk.create_workflow(c)
    since = last_step(c)
    insert_old_succeeded(c, f"SELECT '{old}'::uuid", 4_500)
    poller = Poller(c, "SELECT count(*) FROM webhook.events WHERE workflow_id = %s", (old,))

    # Another workflow's requests, one after another, while the steps run.
    took: dict[int, float] = {}
    while poller.last() != 0 and len(took) < 20_000:
        t0 = time.monotonic()
        r = hk.post(c, busy, json_body={"n": len(took)})
        assert r.status_code == 200, r.text
        took[r.json()["event_id"]] = time.monotonic() - t0
    poller.wait_for(0, timeout=30)
    logged = [s for s in logged_steps(c, since) if s["deleted"]]
    assert [s["deleted"] for s in logged] == [STEP_ROWS] * 4 + [500]

    # The requests stored while a step was running (by the server's clock:
    # the step's start and end, the event's receipt) ...
    received = {r["id"]: r["received_at"] for r in c.rows(
        "SELECT id, received_at FROM webhook.events WHERE workflow_id = %s", (busy,))}
    assert set(received) == set(took)
    during = [took[i] for i, at in received.items() if any(s["started"] < at < s["ended"] for s in logged)]
    # ... are most of them (positive control: the steps and the requests
    # overlapped), and none waited for the step it came during.
    assert len(during) >= 10, (len(during), len(took))
    assert max(during) < step_sleep / 2, sorted(during)[-5:]


def test_a_backlog_in_one_workflow_holds_up_no_other_workflows_retention(make_cluster):
    c = backlog_cluster(make_cluster)
    record_steps(c)
    first, second = sorted([hk.create_workflow(c), hk.create_workflow(c)])
    # Kept for ever while the backlog is made, then an hour again.
    c.alter_system("webhook.retain_succeeded", "-1")
    since = last_step(c)
    insert_old_succeeded(c, f"SELECT '{first}'::uuid", 20_000)
    lone = insert_event(c, second, "succeeded", OLD)
    c.alter_system("webhook.retain_succeeded", "1h", shown="1h")
    hk.wait_for_value(lambda: kept(c, [lone]), [], timeout=30, what="the second workflow's old event deleted")
    deleting = [s for s in logged_steps(c, since) if s["deleted"]]
    # The second workflow's event went in the first pass, right after the
    # first workflow's first full step, not after its 20,000 events.
    went_in = next(k for k, s in enumerate(deleting) if second in map(str, s["workflows"]))
    assert went_in <= 1, [(s["deleted"], len(s["workflows"])) for s in deleting]
    assert deleting[0]["deleted"] == STEP_ROWS
