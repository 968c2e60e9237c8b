// A reader of a queued workflow's events (docs/consumers.md), with
// node-postgres.
//
//   node consumer.js CONNECTION_STRING WORKFLOW_ID [--batch 10] [--visibility 30]
//
// It LISTENs on webhook_events, reads up to --batch events with
// webhook_read, and handles each in a transaction of its own that also acks
// it: the work and the ack commit together, so an event is either done and
// acked or neither (and read again once its visibility timeout passes, by
// this reader or another). The ack names the attempt read, so a reader whose
// timeout passed while another took the event over rolls its work back. An event whose work fails is nacked, and retried
// by the workflow's retry policy. Each handled event is printed as one JSON
// line.
//
// Replace handle() with the application's own work.
'use strict';

const { Client } = require('pg');

// How long to wait for a notification before reading anyway: retries come
// due without one.
const IDLE_WAIT_MS = 5000;

function options(argv) {
  const [connectionString, workflow, ...rest] = argv;
  if (!connectionString || !workflow) {
    console.error('usage: node consumer.js CONNECTION_STRING WORKFLOW_ID [--batch N] [--visibility S] [--work-seconds S]');
    process.exit(2);
  }
  const opts = { connectionString, workflow, batch: 10, visibility: 30, workSeconds: 0 };
  for (let i = 0; i < rest.length; i += 2) {
    const value = Number(rest[i + 1]);
    if (rest[i] === '--batch') opts.batch = value;
    else if (rest[i] === '--visibility') opts.visibility = value;
    else if (rest[i] === '--work-seconds') opts.workSeconds = value;
    else throw new Error(`unknown option ${rest[i]}`);
  }
  return opts;
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// The application's work for one event, in the transaction that acks it.
// Here: the order it is about and the names of its parameters, after a pause
// long enough to see the reader at work (--work-seconds).
async function handle(client, event, opts) {
  await sleep(opts.workSeconds * 1000);
  if (event.params.fail) {
    throw new Error(`cannot handle order ${event.params.order_id}`);
  }
  return {
    event_id: Number(event.id),
    order_id: event.params.order_id,
    attempt: event.attempts,
    keys: Object.keys(event.params).sort(),
  };
}

async function main() {
  const opts = options(process.argv.slice(2));
  const listening = new Client({ connectionString: opts.connectionString });
  const client = new Client({ connectionString: opts.connectionString });
  await listening.connect();
  await client.connect();
  let wake = null;
  listening.on('notification', () => { if (wake) wake(); });
  await listening.query('LISTEN webhook_events');

  for (;;) {
    // Read and hidden at once (autocommit): a reader that dies now leaves
    // them for the visibility timeout.
    const { rows: events } = await client.query(
      'SELECT id, params, attempts FROM webhook_read($1, $2, make_interval(secs => $3))',
      [opts.workflow, opts.batch, opts.visibility]);
    for (const event of events) {
      let done;
      try {
        await client.query('BEGIN');
        done = await handle(client, event, opts);
        // This read's attempt: if its timeout passed and another reader has
        // the event now, the ack is refused (false) and the work rolled back.
        const { rows } = await client.query('SELECT webhook_ack($1, $2) AS acked', [event.id, event.attempts]);
        if (!rows[0].acked) {
          await client.query('ROLLBACK');
          continue;
        }
        await client.query('COMMIT');
      } catch (error) {
        await client.query('ROLLBACK');
        await client.query('SELECT webhook_nack($1, error => $2, attempt => $3)',
          [event.id, error.message, event.attempts]);
        continue;
      }
      process.stdout.write(JSON.stringify(done) + '\n');
    }
    if (events.length === 0) {
      // Nothing due: wait for the next event (any notification will do: the
      // payload names no workflow).
      await new Promise((resolve) => {
        wake = resolve;
        setTimeout(resolve, IDLE_WAIT_MS);
      });
      wake = null;
    }
  }
}

// Stopped by SIGTERM (a service manager) or Ctrl-C: what is read and not
// acked comes back after its visibility timeout.
process.on('SIGTERM', () => process.exit(0));
process.on('SIGINT', () => process.exit(0));
main().catch((error) => {
  console.error(error);
  process.exit(1);
});
