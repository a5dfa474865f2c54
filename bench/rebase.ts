/**
 * P7: a rebase, 1,000 pending local events under 100 new upstream events, and
 * its independence from the length of the confirmed log.
 *
 * The store syncs through a feed transport. Its push of the pending events is
 * parked; the 100 upstream events are then delivered as a live notification,
 * and the rebase they cause (roll back pending, apply upstream, re-apply
 * pending) is timed from its first SQL call to the status update that ends it.
 * Afterwards the parked push is answered `rejected` and the pending events
 * drain, as in real sync (untimed, but checked).
 */
import type { SqlJsStatic } from 'sql.js'
import type { Store } from '../src/index.js'
import { type BenchSchema, benchSchema, INSERT_SQL, itemArgs, rawDb, rawFill, sqlJs, storeWithConfirmed, until, upstreamEvents, watchSql } from './fixtures.js'
import { check, interleave, median, now, pair, type ResultLine, type Row, ratioLine } from './harness.js'

const PENDING = 1000
const UPSTREAM = 100

/**
 * Delivers `deliver()` and times the rebase it causes: from the first call
 * into SQLite after the delivery (the engine may apply live events at once or
 * a moment later) to the status update that ends applying them (head reaches
 * `head`). Nothing else touches SQLite meanwhile: the store is idle, with
 * snapshots off.
 */
async function timeRebase(SQL: SqlJsStatic, store: Store<BenchSchema>, head: number, deliver: () => void): Promise<number> {
  let start: number | undefined
  let end: number | undefined
  const stopWatching = watchSql(SQL, () => {
    start = now()
    stopWatching()
  })
  const unsubscribe = store.sync.status.subscribe((s) => {
    if (end === undefined && s.head === head) end = now()
  })
  try {
    deliver()
    await until(() => end !== undefined, 'the upstream events to be applied', 30_000)
  } finally {
    stopWatching()
    unsubscribe()
  }
  check(start !== undefined && end! >= start, 'the rebase ran SQL')
  return end! - start
}

async function tidelogRebase(SQL: SqlJsStatic, confirmed: number): Promise<number> {
  const schema = benchSchema()
  const { store, feed } = await storeWithConfirmed(schema, confirmed, { storeId: 'rebase', snapshotEvery: 1e9 })
  try {
    feed.mode = 'hold'
    const parked = feed.nextPush()
    let last: Promise<void> | undefined
    for (let i = 0; i < PENDING; i++) last = store.commit(schema.events.itemCreated(itemArgs(i, 'local'))).persisted
    await last
    await parked
    check(store.sync.status.value.pending === PENDING, 'pending events are waiting')
    const incoming = upstreamEvents(confirmed + 1, UPSTREAM)
    feed.upstream.push(...incoming)

    const ms = await timeRebase(SQL, store, confirmed + UPSTREAM, () => feed.handlers.onEvents(incoming, feed.upstream.length))

    const status = store.sync.status.value
    check(status.head === confirmed + UPSTREAM && status.pending === PENDING, `rebased onto head ${confirmed + UPSTREAM} (status ${JSON.stringify(status)})`)
    const n = store.query<{ n: number }>({ sql: 'SELECT count(*) AS n FROM items', params: [] }).value[0]!.n
    check(n === confirmed + UPSTREAM + PENDING, `state holds confirmed + upstream + pending rows (${n})`)
    feed.mode = 'accept'
    feed.release({ type: 'rejected', reason: 'behind', head: feed.upstream.length })
    await until(() => store.sync.status.value.pending === 0, 'the rebased events to be confirmed')
    return ms
  } finally {
    await store.close()
  }
}

/**
 * Raw sql.js on a fresh database holding the same `confirmed` rows: the 100
 * upstream then the 1,000 local INSERTs in one transaction, one shot like the
 * store's rebase. Three fresh databases per round, median kept, because a
 * ~10 ms figure is easily bent by a noisy neighbour.
 */
function rawFresh(SQL: SqlJsStatic, confirmed: number): number {
  const figures: number[] = []
  for (let k = 0; k < 3; k++) {
    const db = rawDb(SQL)
    rawFill(db, 1, confirmed + 1, 'up')
    const ins = db.prepare(INSERT_SQL)
    const t0 = now()
    db.run('BEGIN')
    for (let seq = confirmed + 1; seq <= confirmed + UPSTREAM; seq++) {
      const a = itemArgs(seq, 'up')
      ins.run([a.id, a.grp, a.text])
    }
    for (let i = 0; i < PENDING; i++) {
      const a = itemArgs(i, 'local')
      ins.run([a.id, a.grp, a.text])
    }
    db.run('COMMIT')
    figures.push(now() - t0)
    ins.free()
    db.close()
  }
  return median(figures)
}

export const P7: Row = {
  id: 'P7',
  what: `rebase: ${PENDING} pending under ${UPSTREAM} upstream`,
  async run(): Promise<ResultLine[]> {
    const SQL = await sqlJs()
    // all four sides interleaved, so that the 1k / 50k comparison is as drift-free as each ratio to raw
    const r = await interleave(
      {
        raw1k: () => rawFresh(SQL, 1_000),
        tidelog1k: () => tidelogRebase(SQL, 1_000),
        raw50k: () => rawFresh(SQL, 50_000),
        tidelog50k: () => tidelogRebase(SQL, 50_000),
      },
      { warmup: 1, reps: 4 },
    )
    const note = (k: string) =>
      `${k} confirmed: timed = the rebase the 100-event live notification causes (first SQL call to the status update: roll back pending, apply upstream, re-apply pending); baseline = raw sql.js INSERTing the same 1,100 rows in one transaction into a db holding the same ${k} rows (median of 3 fresh databases per round)`
    const growth = pair(r.tidelog1k, r.tidelog50k)
    const rawGrowth = pair(r.raw1k, r.raw50k)
    return [
      ratioLine('P7a', `${this.what}, 1k confirmed in log`, 'ms', pair(r.raw1k, r.tidelog1k), 2, [note('1k')]),
      ratioLine('P7b', `${this.what}, 50k confirmed in log`, 'ms', pair(r.raw50k, r.tidelog50k), 2, [note('50k')]),
      {
        ...ratioLine('P7c', 'rebase time, 50k vs 1k confirmed in log', 'ms', growth, 3),
        target: 'not ∝ log',
        notes: [
          `log 50× longer: rebase ${growth.ratio.toFixed(2)}× the time (raw baseline ${rawGrowth.ratio.toFixed(2)}×, from the bigger database); proportional to the log would be ~50×, pass below 3×`,
        ],
      },
    ]
  },
}
