/**
 * P13: batches. One `commit()` of 10k events, and 10k pulled events applied
 * with nothing pending (what a new client does while catching up), each
 * against raw sql.js running the same INSERTs in one transaction.
 */
import type { Database, SqlJsStatic } from 'sql.js'
import { createStore } from '../src/index.js'
import { benchSchema, INSERT_SQL, itemArgs, LOG_DDL, LOG_INSERT_SQL, rawDb, sqlJs, storeWithConfirmed, upstreamEvents } from './fixtures.js'
import { check, interleave, median, now, pair, type ResultLine, type Row, ratioLine } from './harness.js'

const N = 10_000

/** The time since `t0`, once the raw side is checked to hold its N rows; closes `db`. */
function finishRaw(db: Database, t0: number): number {
  const ms = now() - t0
  const count = db.exec('SELECT count(*) FROM items')[0]!.values[0]![0]
  check(count === N, `raw wrote ${N} rows (found ${count})`)
  db.close()
  return ms
}

/** Raw sql.js: the same N INSERTs through one prepared statement in one transaction. */
function rawOneTransaction(SQL: SqlJsStatic, prefix: string): number {
  const db = rawDb(SQL)
  const t0 = now()
  const ins = db.prepare(INSERT_SQL)
  db.run('BEGIN')
  for (let i = 1; i <= N; i++) {
    const a = itemArgs(i, prefix)
    ins.run([a.id, a.grp, a.text])
  }
  db.run('COMMIT')
  ins.free()
  return finishRaw(db, t0)
}

/**
 * The floor of the design: raw sql.js running statements shaped like the
 * store's own for each event, in one transaction: the event's log row
 * (`__tl_events`/`__tl_pending` columns) and the state INSERT, with `capture`
 * also the undo log's AFTER INSERT trigger (its WHEN check and shadow row).
 * No JS of the store's; what is left between this and the store is its own overhead.
 */
function rawLogShaped(SQL: SqlJsStatic, prefix: string, capture: boolean): number {
  const db = rawDb(SQL)
  db.exec('PRAGMA journal_mode = MEMORY; PRAGMA synchronous = OFF; PRAGMA temp_store = MEMORY; PRAGMA recursive_triggers = ON')
  db.run(LOG_DDL)
  if (capture) {
    db.exec(`CREATE TEMP TABLE flag (capture INTEGER NOT NULL); INSERT INTO temp.flag VALUES (1);
      CREATE TABLE shadow (id INTEGER PRIMARY KEY, pos INTEGER NOT NULL, op INTEGER NOT NULL, rid INTEGER NOT NULL, nrid INTEGER NOT NULL, c0, c1, c2);
      CREATE TEMP TRIGGER ui AFTER INSERT ON main.items WHEN (SELECT capture FROM temp.flag) BEGIN
        INSERT INTO main.shadow (pos, op, rid, nrid, c0, c1, c2) VALUES ((SELECT max(pos) FROM main.log), 0, new.rowid, new.rowid, NULL, NULL, NULL); END;`)
  }
  const t0 = now()
  const log = db.prepare(LOG_INSERT_SQL)
  const ins = db.prepare(INSERT_SQL)
  db.run('BEGIN')
  for (let i = 1; i <= N; i++) {
    const a = itemArgs(i, prefix)
    log.run([`client:${i}`, 'itemCreated', JSON.stringify(a), 'client', 'session', 1_700_000_000_000 + i])
    ins.run([a.id, a.grp, a.text])
  }
  db.run('COMMIT')
  log.free()
  ins.free()
  return finishRaw(db, t0)
}

const countItems = (store: { query<T>(f: { sql: string; params: unknown[] }): { value: T[] } }) =>
  store.query<{ n: number }>({ sql: 'SELECT count(*) AS n FROM items', params: [] }).value[0]!.n

/** tidelog: one commit() of N events (no storage: nothing is journaled), timed until its receipt's `persisted` resolved. */
async function oneCommit(parts: number[], valueMs: number[]): Promise<number> {
  const schema = benchSchema()
  const store = await createStore({ schema, storeId: 'batch-commit', dev: false })
  try {
    const v0 = now()
    const values = []
    for (let i = 1; i <= N; i++) values.push(schema.events.itemCreated(itemArgs(i, 'item')))
    const t0 = now()
    const receipt = store.commit(...values)
    const t1 = now()
    await receipt.persisted
    const ms = now() - t0
    parts.push(t1 - t0)
    valueMs.push(t0 - v0)
    check(countItems(store) === N && receipt.events.length === N, `one commit wrote ${N} rows`)
    return ms
  } finally {
    await store.close()
  }
}

/**
 * tidelog: N confirmed events delivered as one live notification to a synced
 * store with nothing pending; with nothing pending the engine applies them at
 * once, so the synchronous `onEvents` call is the whole apply (log rows, state,
 * journal record queued, query signals, status).
 */
async function applyPulled(): Promise<number> {
  const schema = benchSchema()
  const { store, feed } = await storeWithConfirmed(schema, 1, { storeId: 'batch-pull', snapshotEvery: 1e9 })
  try {
    const incoming = upstreamEvents(2, N)
    feed.upstream.push(...incoming)
    const t0 = now()
    feed.handlers.onEvents(incoming, feed.upstream.length)
    const ms = now() - t0
    check(store.sync.status.value.head === N + 1 && countItems(store) === N + 1, `applied ${N} pulled events at once`)
    return ms
  } finally {
    await store.close()
  }
}

export const P13: Row = {
  id: 'P13',
  what: `batches of ${N / 1000}k events`,
  async run(): Promise<ResultLine[]> {
    const SQL = await sqlJs()
    const parts: number[] = []
    const valueMs: number[] = []
    const c = await interleave(
      {
        baseline: () => rawOneTransaction(SQL, 'item'),
        floor: () => rawLogShaped(SQL, 'item', true),
        subject: () => oneCommit(parts, valueMs),
      },
      { warmup: 1, reps: 5 },
    )
    const p = await interleave(
      {
        baseline: () => rawOneTransaction(SQL, 'up'),
        floor: () => rawLogShaped(SQL, 'up', false),
        subject: applyPulled,
      },
      { warmup: 1, reps: 5 },
    )
    const commit = pair(c.baseline, c.subject)
    const pulled = pair(p.baseline, p.subject)
    const floor = (r: typeof c) => {
      const f = pair(r.baseline, r.floor)
      return `${f.subject.toFixed(1)} ms, ${f.ratio.toFixed(2)}× the baseline (median of per-round ratios), so the store's own overhead is ${(median(r.subject.map((x, i) => x / r.floor[i]!))).toFixed(2)}× on top`
    }
    const sync = median(parts.slice(-5))
    const making = median(valueMs.slice(-5))
    return [
      ratioLine('P13a', `one commit() of ${N / 1000}k events`, 'ms', commit, 3, [
        `tidelog: store.commit(...values) of ${N} event values until receipt.persisted (no storage, so no journal record; dev: false), synchronous part median ${sync.toFixed(1)} ms; making the values (schema.events.itemCreated(args), untimed) took ${making.toFixed(1)} ms more; baseline: raw sql.js, the same ${N} INSERTs through one prepared statement in one transaction`,
        `floor of the design: raw sql.js writing, per event, a log row shaped like __tl_pending's and the state row, with the undo log's capture trigger, in one transaction: ${floor(c)}`,
      ]),
      ratioLine('P13b', `apply ${N / 1000}k pulled events, nothing pending`, 'ms', pulled, 2, [
        `tidelog: ${N} confirmed events handed to the sync engine as one live notification (applied at once: log rows, state, journal record, signals, status); baseline: the same ${N} INSERTs in one raw transaction`,
        `floor of the design: raw sql.js writing, per event, a log row shaped like __tl_events's and the state row (no capture), in one transaction: ${floor(p)}`,
      ]),
    ]
  },
}
