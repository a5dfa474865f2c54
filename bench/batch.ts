/**
 * P13: batches. One `commit()` of 10k events, and 10k pulled events applied
 * with nothing pending (what a new client does while catching up), each
 * against raw sql.js running the same INSERTs in one transaction.
 */
import type { SqlJsStatic } from 'sql.js'
import { createStore } from '../src/index.js'
import { check, compare, median, now, ratioLine, type ResultLine, type Row } from './harness.js'
import { benchSchema, INSERT_SQL, itemArgs, rawDb, sqlJs, storeWithConfirmed, upstreamEvents } from './fixtures.js'

const N = 10_000

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
  const ms = now() - t0
  const count = db.exec('SELECT count(*) FROM items')[0]!.values[0]![0]
  check(count === N, `raw wrote ${N} rows (found ${count})`)
  db.close()
  return ms
}

const countItems = (store: { query<T>(f: { sql: string; params: unknown[] }): { value: T[] } }) =>
  store.query<{ n: number }>({ sql: 'SELECT count(*) AS n FROM items', params: [] }).value[0]!.n

/** tidelog: one commit() of N events (memoryStorage), timed until its receipt's `persisted` resolved. */
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
    const commit = await compare({ warmup: 1, reps: 5, baseline: () => rawOneTransaction(SQL, 'item'), subject: () => oneCommit(parts, valueMs) })
    const pulled = await compare({ warmup: 1, reps: 5, baseline: () => rawOneTransaction(SQL, 'up'), subject: applyPulled })
    const sync = median(parts.slice(-5))
    const making = median(valueMs.slice(-5))
    return [
      ratioLine('P13a', `one commit() of ${N / 1000}k events`, 'ms', commit, 3, [
        `tidelog: store.commit(...values) of ${N} event values until receipt.persisted (memoryStorage, dev: false), synchronous part median ${sync.toFixed(1)} ms; making the values (schema.events.itemCreated(args), untimed) took ${making.toFixed(1)} ms more; baseline: raw sql.js, the same ${N} INSERTs through one prepared statement in one transaction`,
      ]),
      ratioLine('P13b', `apply ${N / 1000}k pulled events, nothing pending`, 'ms', pulled, 2, [
        `tidelog: ${N} confirmed events handed to the sync engine as one live notification (applied at once: log rows, state, journal record, signals, status); baseline: the same ${N} INSERTs in one raw transaction`,
      ]),
    ]
  },
}
