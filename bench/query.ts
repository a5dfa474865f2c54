/**
 * P3 (reading query signals) and P4 (commit → subscriber notified, with many
 * unrelated live queries).
 */

import type { ReadonlySignal } from '@preact/signals-core'
import { effect } from '@preact/signals-core'
import type { Database, SqlJsStatic, Statement } from 'sql.js'
import type { Store } from '../src/index.js'
import { createStore, sql } from '../src/index.js'
import { type BenchSchema, benchSchema, itemArgs, rawDb, rawFill, sqlJs, watchSql } from './fixtures.js'
import { check, compare, now, type ResultLine, type Row, ratioLine } from './harness.js'

const ROWS = 10_000
const POINT_SQL = 'SELECT * FROM items WHERE id = ?'
const LIST_SQL = 'SELECT * FROM items WHERE grp = ? ORDER BY id'

type Item = { id: string; grp: number; text: string }

/** A store holding items 0..ROWS-1 (committed in batches of 1,000). */
async function filledStore(schema: BenchSchema): Promise<Store<BenchSchema>> {
  const store = await createStore({ schema, storeId: 'query', dev: false })
  for (let i = 0; i < ROWS; i += 1000) {
    const batch = Array.from({ length: 1000 }, (_, k) => schema.events.itemCreated(itemArgs(i + k)))
    await store.commit(...batch).persisted
  }
  return store
}

const columnsOf = new WeakMap<Statement, string[]>()

/**
 * Raw prepared statement, done the fast way: bind, step loop, rows built from
 * `get()` with the column names read once per statement (sql.js's own
 * `getAsObject()` re-reads them on every row: about 2× slower on 100 rows), reset.
 */
function rawRun(stmt: Statement, params: (string | number)[]): Record<string, unknown>[] {
  stmt.bind(params)
  let columns = columnsOf.get(stmt)
  if (!columns) columnsOf.set(stmt, (columns = stmt.getColumnNames()))
  const rows: Record<string, unknown>[] = []
  while (stmt.step()) {
    const values = stmt.get()
    const row: Record<string, unknown> = {}
    for (let i = 0; i < columns.length; i++) row[columns[i]!] = values[i]
    rows.push(row)
  }
  stmt.reset()
  return rows
}

/** Counts calls into SQLite anywhere in this process while `fn` runs. */
function countSql(SQL: SqlJsStatic, fn: () => void): number {
  let calls = 0
  const stop = watchSql(SQL, () => calls++)
  try {
    fn()
  } finally {
    stop()
  }
  return calls
}

const us = (ms: number, n: number) => (ms / n) * 1000

export const P3: Row = {
  id: 'P3',
  what: 'store.query(...).value',
  async run(): Promise<ResultLine[]> {
    const SQL = await sqlJs()
    const schema = benchSchema()
    const store = await filledStore(schema)
    const raw: Database = rawDb(SQL)
    rawFill(raw, 0, ROWS)
    const point = raw.prepare(POINT_SQL)
    const list = raw.prepare(LIST_SQL)
    const rename = raw.prepare('UPDATE items SET text = ? WHERE id = ?')
    const lines: ResultLine[] = []
    const target = 'item-5000'

    // P3a: a watched query read again and again, no writes in between: must be the cached array, no SQL.
    {
      const q = store.query<Item>(sql`SELECT * FROM items WHERE id = ${target}`)
      const stop = effect(() => void q.value)
      const first = q.value
      const stepsDuringReads = countSql(SQL, () => {
        for (let i = 0; i < 1000; i++) check(q.value === first, 'cached read returns the same array')
      })
      const K = 200_000
      const KR = 20_000
      const c = await compare({
        warmup: 1,
        reps: 5,
        baseline: () => {
          const t0 = now()
          for (let i = 0; i < KR; i++) check(rawRun(point, [target]).length === 1, 'raw point row')
          return us(now() - t0, KR)
        },
        subject: () => {
          const t0 = now()
          for (let i = 0; i < K; i++) check(q.value.length === 1, 'point row')
          return us(now() - t0, K)
        },
      })
      stop()
      lines.push({
        ...ratioLine('P3a', 'watched query .value, no writes between (cached)', 'µs/read', c, Infinity),
        target: 'no SQL runs',
        pass: stepsDuringReads === 0,
        notes: [
          `calls into SQLite (bind/step/exec/run/prepare) during 1,000 cached reads: ${stepsDuringReads}; baseline: raw prepared statement (bind, step loop, get() into objects, reset) for the same point query by primary key, ${ROWS / 1000}k rows`,
        ],
      })
    }

    // P3b: a brand-new query: store.query() plus its first .value, vs raw prepare + run + free.
    {
      const K = 1000
      let n = 0
      const c = await compare({
        warmup: 1,
        reps: 5,
        baseline: () => {
          const t0 = now()
          for (let i = 0; i < K; i++) {
            const st = raw.prepare(POINT_SQL)
            check(rawRun(st, [`item-${(n++ * 7919) % ROWS}`]).length === 1, 'raw point row')
            st.free()
          }
          return us(now() - t0, K)
        },
        subject: () => {
          const t0 = now()
          for (let i = 0; i < K; i++) {
            const q = store.query<Item>(sql`SELECT * FROM items WHERE id = ${`item-${(n++ * 7919) % ROWS}`}`)
            check(q.value.length === 1, 'point row')
          }
          return us(now() - t0, K)
        },
      })
      lines.push(
        ratioLine('P3b', 'new query: store.query() + first .value', 'µs/query', c, 1.5, [
          'point query by primary key; baseline: raw db.prepare + bind + step loop + get() into objects + free',
        ]),
      )
    }

    // P3c/P3d: re-running a query whose table was written: the SQL runs through tidelog's statement cache and row diff.
    for (const [id, what, rawStmt, fragment, params, rows] of [
      ['P3c', 'query re-run after a write to its table, 1 row', point, sql`SELECT * FROM items WHERE id = ${target}`, [target], 1],
      ['P3d', 'query re-run after a write to its table, 100 rows', list, sql`SELECT * FROM items WHERE grp = ${7} ORDER BY id`, [7], 100],
    ] as const) {
      const q: ReadonlySignal<Item[]> = store.query<Item>(fragment)
      const K = id === 'P3c' ? 2000 : 500
      let w = 0
      // a write the query must notice (same table), changing a row in its result for the list query
      const victim = (j: number) => (id === 'P3c' ? `item-${(j * 13) % ROWS}` : `item-${7 + 100 * (j % 100)}`)
      const c = await compare({
        warmup: 1,
        reps: 5,
        baseline: () => {
          let ms = 0
          for (let i = 0; i < K; i++) {
            rename.run([`renamed ${w}`, victim(w++)])
            const t0 = now()
            const r = rawRun(rawStmt, [...params])
            ms += now() - t0
            check(r.length === rows, 'raw rows')
          }
          return us(ms, K)
        },
        subject: () => {
          let ms = 0
          for (let i = 0; i < K; i++) {
            store.commit(schema.events.itemRenamed({ id: victim(w++), text: `renamed ${w}` }))
            const t0 = now()
            const r = q.value
            ms += now() - t0
            check(r.length === rows, 'rows')
          }
          return us(ms, K)
        },
      })
      lines.push(
        ratioLine(id, what, 'µs/run', c, 1.5, [
          `unwatched query read right after a commit to its table (the commit untimed) vs the raw prepared statement's step loop right after a raw UPDATE`,
        ]),
      )
    }

    point.free()
    list.free()
    rename.free()
    raw.close()
    await store.close()
    return lines
  },
}

const SIDE_TABLES = 10
const OTHER_QUERIES = 1000
const M = 1000

interface NotifyBench {
  store: Store<BenchSchema>
  /** Times M commits, each checked to have been seen by the count effect; returns µs per commit. */
  trial(): number
  /** How often the unrelated queries re-ran since setup. */
  otherRuns(): number
  dispose(): void
}

async function notifyBench(schema: BenchSchema, others: number): Promise<NotifyBench> {
  const store = await createStore({ schema, storeId: `notify-${others}`, dev: false })
  // identical content in both stores: 100 rows in each side table
  for (let t = 0; t < SIDE_TABLES; t++) {
    await store.commit(...Array.from({ length: 100 }, (_, id) => schema.events.sideCreated({ t, id, v: `side ${t}/${id}` }))).persisted
  }
  const disposers: (() => void)[] = []
  let otherRuns = 0
  for (let i = 0; i < others; i++) {
    const q = store.query({ sql: `SELECT * FROM s${i % SIDE_TABLES} WHERE id = ?`, params: [Math.floor(i / SIDE_TABLES)] })
    disposers.push(
      effect(() => {
        q.value
        otherRuns++
      }),
    )
  }
  const setupRuns = otherRuns
  const count = store.query<{ n: number }>(sql`SELECT count(*) AS n FROM items`)
  let seen = -1
  disposers.push(
    effect(() => {
      seen = count.value[0]!.n
    }),
  )
  let next = 0
  return {
    store,
    trial() {
      let last: Promise<void> | undefined
      const t0 = now()
      for (let i = 0; i < M; i++) {
        last = store.commit(schema.events.itemCreated(itemArgs(next++))).persisted
        if (seen !== next) throw new Error(`subscriber saw ${seen} items after commit ${next}`)
      }
      const ms = now() - t0
      void last
      return us(ms, M)
    },
    otherRuns: () => otherRuns - setupRuns,
    dispose() {
      for (const d of disposers) d()
    },
  }
}

export const P4: Row = {
  id: 'P4',
  what: `commit → subscriber notified, ${OTHER_QUERIES} live queries on other tables`,
  async run(): Promise<ResultLine[]> {
    const schema = benchSchema({ sideTables: SIDE_TABLES })
    const none = await notifyBench(schema, 0)
    const many = await notifyBench(schema, OTHER_QUERIES)
    try {
      const c = await compare({ warmup: 2, reps: 9, baseline: () => none.trial(), subject: () => many.trial() })
      const reruns = many.otherRuns()
      const line = ratioLine('P4', this.what, 'µs/commit', c, 1.2, [
        `baseline: the same store setup with 0 other live queries; an effect on SELECT count(*) checks the new count after every commit; ${M} commits per run`,
        `the ${OTHER_QUERIES} unrelated queries (point queries on ${SIDE_TABLES} side tables, each watched by an effect) re-ran ${reruns} times during the commits`,
      ])
      if (reruns !== 0) line.pass = false
      return [line]
    } finally {
      none.dispose()
      many.dispose()
      await none.store.close()
      await many.store.close()
    }
  },
}
