-- The snapshot /metrics renders (webhook_core::metrics::Snapshot): the
-- counters and queue of webhook.workflow_stats for every workflow, without
-- its percentiles (a scrape runs on the listener's main thread between two
-- batches, so it reads only counters and the unfinished events), and the
-- processes of webhook_processes() with the workflow an executor runs.
-- Names are cut to 128 characters: a label repeats on every sample of its
-- workflow, and an owner may give a workflow a name of any length.
WITH running AS (
    SELECT p.value AS process, e.workflow_id, pg_catalog.left(w.name, 128) AS workflow
      FROM pg_catalog.jsonb_array_elements(webhook._processes()) p
      LEFT JOIN webhook.events e
             ON e.id OPERATOR(pg_catalog.=) (p.value OPERATOR(pg_catalog.->>) 'event')::pg_catalog.int8
      LEFT JOIN webhook.workflows w ON w.id OPERATOR(pg_catalog.=) e.workflow_id
), running_events AS (
    SELECT COALESCE(pg_catalog.array_agg((r.process OPERATOR(pg_catalog.->>) 'event')::pg_catalog.int8)
                        FILTER (WHERE r.process OPERATOR(pg_catalog.->>) 'event' IS NOT NULL),
                    '{}') AS events
      FROM running r
)
SELECT pg_catalog.jsonb_build_object(
    'workflows', COALESCE((
        SELECT pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
                   'id', w.id, 'name', pg_catalog.left(w.name, 128),
                   'accepted', c.accepted, 'redelivered', c.redelivered,
                   'succeeded', c.succeeded, 'failed_attempts', c.failed_attempts, 'dead', c.dead,
                   'handshakes', h.handshakes, 'refused', r.refused,
                   'pending', q.pending, 'running', q.running, 'failed', q.failed,
                   'oldest_pending_seconds',
                   pg_catalog.date_part('epoch', pg_catalog.now() OPERATOR(pg_catalog.-) q.oldest_pending))
                 ORDER BY w.name, w.id)
          FROM webhook.workflows w
         CROSS JOIN running_events re
         CROSS JOIN LATERAL (
               SELECT COALESCE(pg_catalog.sum(k.accepted), 0) AS accepted,
                      COALESCE(pg_catalog.sum(k.redelivered), 0) AS redelivered,
                      COALESCE(pg_catalog.sum(k.succeeded), 0) AS succeeded,
                      COALESCE(pg_catalog.sum(k.failed_attempts), 0) AS failed_attempts,
                      COALESCE(pg_catalog.sum(k.dead), 0) AS dead
                 FROM webhook.workflow_counters k
                WHERE k.workflow_id OPERATOR(pg_catalog.=) w.id) c
         CROSS JOIN LATERAL (
               SELECT COALESCE(pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
                          'status', x.status, 'reason', x.reason, 'count', x.count)
                          ORDER BY x.status, x.reason), '[]') AS refused
                 FROM webhook.rejection_counts x
                WHERE x.workflow_id OPERATOR(pg_catalog.=) w.id) r
         CROSS JOIN LATERAL (
               SELECT COALESCE(pg_catalog.sum(s.answered), 0) AS handshakes
                 FROM webhook.handshakes s
                WHERE s.workflow_id OPERATOR(pg_catalog.=) w.id) h
         CROSS JOIN LATERAL (
               SELECT pg_catalog.count(*) FILTER (WHERE u.status OPERATOR(pg_catalog.=) 'pending'
                          AND u.id OPERATOR(pg_catalog.<>) ALL (re.events)) AS pending,
                      pg_catalog.count(*) FILTER (WHERE u.id OPERATOR(pg_catalog.=) ANY (re.events)) AS running,
                      pg_catalog.count(*) FILTER (WHERE u.status OPERATOR(pg_catalog.=) 'failed'
                          AND u.id OPERATOR(pg_catalog.<>) ALL (re.events)) AS failed,
                      pg_catalog.min(u.received_at)
                          FILTER (WHERE u.status OPERATOR(pg_catalog.=) 'pending') AS oldest_pending
                 FROM webhook.events u
                WHERE u.workflow_id OPERATOR(pg_catalog.=) w.id AND u.next_attempt_at IS NOT NULL) q
    ), '[]'),
    'processes', COALESCE((
        SELECT pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
                   'pid', r.process OPERATOR(pg_catalog.->) 'pid',
                   'kind', r.process OPERATOR(pg_catalog.->) 'kind',
                   'owner', (r.process OPERATOR(pg_catalog.->>) 'owner')::pg_catalog.oid::pg_catalog.regrole::pg_catalog.text,
                   'state', r.process OPERATOR(pg_catalog.->) 'state',
                   'since_seconds', GREATEST(0, (pg_catalog.date_part('epoch', pg_catalog.now())
                        OPERATOR(pg_catalog.*) 1000
                        OPERATOR(pg_catalog.-) (r.process OPERATOR(pg_catalog.->>) 'since_unix_ms')::pg_catalog.float8)
                        OPERATOR(pg_catalog./) 1000),
                   'workflow_id', r.workflow_id, 'workflow', r.workflow)
                 ORDER BY (r.process OPERATOR(pg_catalog.->>) 'pid')::pg_catalog.int4)
          FROM running r
    ), '[]'))
