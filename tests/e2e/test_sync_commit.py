"""A listener answers 2xx only for events its synchronous standby has too.

PostgreSQL ends a commit's wait for the synchronous standby early when the
waiting process is cancelled, told to terminate, or finds the postmaster
dead: the transaction stays committed on the primary ("might not have been
replicated to the standby") and the commit returns. Such an event would be
lost by a failover to that standby, so its caller gets 503 and retries."""

import threading

import hookkit as hk

UNCONFIRMED = {"msg": "Event stored but not confirmed by the synchronous standby, retry later"}


def test_a_commit_the_standby_did_not_confirm_is_not_acknowledged(make_cluster, uniq):
    primary = make_cluster(conf={"webhook.workers": 1})
    primary.sql("CREATE EXTENSION webhook_ext")
    hk.wait_ready(primary)
    wf = hk.create_workflow(primary, uniq=uniq)
    name = uniq("standby")
    standby = make_cluster(standby_of=primary, name=name)
    hk.wait_until(lambda: primary.row("SELECT state FROM pg_stat_replication WHERE application_name = %s", (name,)),
                  timeout=30, until=lambda r: r == {"state": "streaming"}, what="the standby streaming")
    primary.set_conf(synchronous_standby_names=name)
    primary.reload()
    hk.wait_for_value(lambda: primary.scalar("SELECT sync_state FROM pg_stat_replication"), "sync", timeout=10)
    # Positive control: confirmed by the standby, acknowledged.
    assert hk.post_url(primary.hook_url(wf), {"n": 1}).status == 200
    standby.stop("immediate")

    result = {}
    sender = threading.Thread(target=lambda: result.update(
        reply=hk.try_request("POST", primary.hook_url(wf), {"n": 2}, timeout=30)))
    sender.start()
    listener = hk.wait_until(lambda: primary.scalar(
        "SELECT pid FROM pg_stat_activity WHERE backend_type = 'webhook_ext listener' AND wait_event = 'SyncRep'"),
        timeout=10, what="the listener waiting for the standby")
    primary.sql("SELECT pg_cancel_backend(%s)", (listener,))
    sender.join(30)
    reply = result["reply"]
    assert (reply.status, reply.json(), reply.headers["retry-after"]) == (503, UNCONFIRMED, "1"), reply
    primary.wait_for_log("answered 503 to requests whose events committed here but were not confirmed "
                         "by the synchronous standby")
    # Stored here (a retry may store it again: at least once, never lost).
    assert primary.scalar("SELECT count(*) FROM webhook.events WHERE params->>'n' = '2'") == 1

    # Once the standby is back and has caught up, events are acknowledged again.
    standby.start()
    hk.wait_for_value(lambda: primary.scalar("SELECT sync_state FROM pg_stat_replication"), "sync", timeout=20)
    assert hk.post_url(primary.hook_url(wf), {"n": 3}).status == 200
