/**
 * What the rows share: the benchmark schema (an `items` table with a primary
 * key and one index, plus optional side tables), the matching raw sql.js
 * database, and a transport whose pulls and pushes the benchmark controls.
 */
import type { Database, SqlJsStatic } from 'sql.js'
import { loadSqlJs } from '../src/database.js'
import type { ConfirmedEvent, PushResponse, Storage, Store, Transport, TransportHandlers } from '../src/index.js'
import { createStore, defineEvent, defineSchema, sql, TransportError } from '../src/index.js'
import { check, tick } from './harness.js'

/** DDL of the state table every row writes; raw and tidelog use the same text. */
export const ITEMS_DDL = 'CREATE TABLE items (id TEXT PRIMARY KEY, grp INTEGER NOT NULL, text TEXT NOT NULL)'
export const ITEMS_INDEX = 'CREATE INDEX items_grp ON items(grp)'
/** The INSERT a raw baseline runs; the `itemCreated` materializer produces the same SQL text. */
export const INSERT_SQL = 'INSERT INTO items (id, grp, text) VALUES (?, ?, ?)'

/** A log table shaped like the store's `__tl_events` (the floor rows write one row per event into it). */
export const LOG_DDL =
  'CREATE TABLE log (pos INTEGER PRIMARY KEY, id NOT NULL, name NOT NULL, args NOT NULL, client_id NOT NULL, session_id NOT NULL, created_at NOT NULL)'
export const LOG_INSERT_SQL = 'INSERT INTO log (id, name, args, client_id, session_id, created_at) VALUES (?, ?, ?, ?, ?, ?)'

export interface ItemArgs {
  id: string
  grp: number
  text: string
}

/** Args of the i-th item: the same values on both sides of every comparison. */
export const itemArgs = (i: number, prefix = 'item'): ItemArgs => ({ id: `${prefix}-${i}`, grp: i % 100, text: `item number ${i} of the benchmark` })

/** Side tables s0..s{n-1} (for live queries on "other tables"). */
const sideTable = (t: number) => `s${t}`

/**
 * The benchmark schema. `sideTables` adds tables that only `sideCreated`
 * writes; `version` changes the schema hash (forces a rebuild).
 */
export function benchSchema(options: { sideTables?: number; version?: number } = {}) {
  const sides = options.sideTables ?? 0
  const tables: Record<string, ReturnType<typeof sql>> = { items: { sql: ITEMS_DDL, params: [] } }
  const sideInserts: string[] = []
  for (let t = 0; t < sides; t++) {
    tables[sideTable(t)] = { sql: `CREATE TABLE ${sideTable(t)} (id INTEGER PRIMARY KEY, v TEXT NOT NULL)`, params: [] }
    sideInserts.push(`INSERT INTO ${sideTable(t)} (id, v) VALUES (?, ?)`)
  }
  return defineSchema({
    tables,
    indexes: [{ sql: ITEMS_INDEX, params: [] }],
    version: options.version ?? 0,
    events: {
      itemCreated: defineEvent<ItemArgs>({
        materialize: ({ id, grp, text }) => sql`INSERT INTO items (id, grp, text) VALUES (${id}, ${grp}, ${text})`,
      }),
      itemRenamed: defineEvent<{ id: string; text: string }>({
        materialize: ({ id, text }) => sql`UPDATE items SET text = ${text} WHERE id = ${id}`,
      }),
      sideCreated: defineEvent<{ t: number; id: number; v: string }>({
        materialize: ({ t, id, v }) => ({ sql: sideInserts[t]!, params: [id, v] }),
      }),
    },
  })
}

export type BenchSchema = ReturnType<typeof benchSchema>

/** The sql.js instance the store uses (loaded once per process), so both sides share one wasm heap. */
export const sqlJs = (): Promise<SqlJsStatic> => loadSqlJs()

/** A fresh raw sql.js database with the items table and its index. */
export function rawDb(SQL: SqlJsStatic): Database {
  const db = new SQL.Database()
  db.run(ITEMS_DDL)
  db.run(ITEMS_INDEX)
  return db
}

/** Inserts items [from, to) in one transaction (untimed setup of raw baselines). */
export function rawFill(db: Database, from: number, to: number, prefix = 'item'): void {
  const ins = db.prepare(INSERT_SQL)
  db.run('BEGIN')
  for (let i = from; i < to; i++) {
    const a = itemArgs(i, prefix)
    ins.run([a.id, a.grp, a.text])
  }
  db.run('COMMIT')
  ins.free()
}

/** Confirmed `itemCreated` events seq from..to-1+from, as another client made them. */
export function upstreamEvents(firstSeq: number, count: number, prefix = 'up'): ConfirmedEvent[] {
  const out: ConfirmedEvent[] = []
  for (let i = 0; i < count; i++) {
    const seq = firstSeq + i
    const a = itemArgs(seq, prefix)
    out.push({ seq, id: `other:${seq}`, name: 'itemCreated', args: { ...a }, clientId: 'other', sessionId: 'bench', createdAt: 1_700_000_000_000 + seq })
  }
  return out
}

/** Polls (yielding to the event loop) until `ready()` holds; throws after `ms`. */
export async function until(ready: () => boolean, what: string, ms = 60_000): Promise<void> {
  const end = Date.now() + ms
  while (!ready()) {
    if (Date.now() > end) throw new Error(`benchmark timed out waiting for ${what}`)
    await tick()
  }
}

/**
 * A transport in the benchmark's hands: pulls serve `upstream`; pushes are
 * accepted (appended at the head) or held until `release()` answers them.
 * `handlers` are the engine's callbacks, so a benchmark can deliver live
 * events synchronously and time exactly what the store does with them.
 */
export interface FeedTransport {
  readonly transport: Transport
  readonly upstream: ConfirmedEvent[]
  readonly handlers: TransportHandlers
  /** 'accept' appends pushes at the head; 'hold' parks them until `release`. */
  mode: 'accept' | 'hold'
  /** Resolves when the next push arrives (held or not). */
  nextPush(): Promise<void>
  /** Answers the parked push. */
  release(answer: PushResponse): void
}

export const BACKEND_ID = 'bench-backend'

/** A transport serving `upstream` to one store, with pushes the benchmark can park. */
export function feedTransport(upstream: ConfirmedEvent[] = []): FeedTransport {
  let handlers: TransportHandlers | undefined
  let held: { resolve(r: PushResponse): void; reject(e: Error): void } | undefined
  let pushWaiters: (() => void)[] = []
  const feed: FeedTransport = {
    upstream,
    mode: 'accept',
    get handlers() {
      check(handlers, 'the store connected its transport')
      return handlers
    },
    nextPush: () => new Promise<void>((resolve) => pushWaiters.push(resolve)),
    release(answer) {
      const h = held
      check(h, 'a push is parked')
      held = undefined
      h.resolve(answer)
    },
    transport: {
      async connect(h) {
        handlers = h
        h.onStatus({ state: 'online' })
      },
      async pull({ since, limit }) {
        const events = upstream.slice(since, since + (limit ?? 1000))
        return { type: 'pulled', events, head: upstream.length, backendId: BACKEND_ID, more: since + events.length < upstream.length }
      },
      push({ parentSeq, events }) {
        const waiters = pushWaiters
        pushWaiters = []
        for (const w of waiters) w()
        if (feed.mode === 'hold') return new Promise<PushResponse>((resolve, reject) => (held = { resolve, reject }))
        if (parentSeq !== upstream.length) return Promise.resolve({ type: 'rejected', reason: 'behind', head: upstream.length })
        const firstSeq = upstream.length + 1
        for (const [i, e] of events.entries()) upstream.push({ ...e, seq: firstSeq + i })
        return Promise.resolve({ type: 'pushed', firstSeq, head: upstream.length, backendId: BACKEND_ID })
      },
      async close() {
        // like a real transport: requests still waiting reject when it closes
        const h = held
        held = undefined
        h?.reject(new TransportError('feed transport closed', { retryable: true }))
        handlers?.onStatus({ state: 'offline' })
      },
    },
  }
  return feed
}

/**
 * Opens a store whose log holds `confirmed` events of another client, pulled
 * through a feed transport (the way a client that synced them has them).
 */
export async function storeWithConfirmed(
  schema: BenchSchema,
  confirmed: number,
  options: { storeId?: string; storage?: Storage; feed?: FeedTransport; snapshotEvery?: number } = {},
): Promise<{ store: Store<BenchSchema>; feed: FeedTransport }> {
  const feed = options.feed ?? feedTransport(upstreamEvents(1, confirmed))
  const store = await createStore({
    schema,
    storeId: options.storeId ?? 'bench',
    storage: options.storage,
    transport: feed.transport,
    dev: false,
    snapshotEvery: options.snapshotEvery,
  })
  await until(() => store.sync.status.value.head === confirmed && store.sync.status.value.state === 'synced', `${confirmed} confirmed events`)
  return { store, feed }
}

type Method = (...args: unknown[]) => unknown

/** The prototypes every sql.js statement and database share (sql.js exports no Statement class). */
export function sqlPrototypes(SQL: SqlJsStatic): { statement: Record<string, Method>; database: Record<string, Method> } {
  const db = new SQL.Database()
  const probe = db.prepare('SELECT 1')
  const statement = Object.getPrototypeOf(probe) as Record<string, Method>
  probe.free()
  db.close()
  return { statement, database: SQL.Database.prototype as unknown as Record<string, Method> }
}

/** The entry points through which anything reaches SQLite in sql.js. */
const STATEMENT_METHODS = ['bind', 'step'] as const
const DATABASE_METHODS = ['exec', 'run', 'prepare'] as const

/**
 * Calls `onCall` on every call into SQLite (statement bind/step, database
 * exec/run/prepare) anywhere in the process until the returned function
 * restores the original methods.
 */
export function watchSql(SQL: SqlJsStatic, onCall: () => void): () => void {
  const { statement, database } = sqlPrototypes(SQL)
  const restore: (() => void)[] = []
  const wrap = (proto: Record<string, Method>, name: string) => {
    const original = proto[name]!
    proto[name] = function (this: unknown, ...args: unknown[]) {
      onCall()
      return original.apply(this, args)
    }
    restore.push(() => {
      proto[name] = original
    })
  }
  for (const m of STATEMENT_METHODS) wrap(statement, m)
  for (const m of DATABASE_METHODS) wrap(database, m)
  return () => {
    for (const r of restore.splice(0)) r()
  }
}
