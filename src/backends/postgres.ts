/**
 * A sync backend on PostgreSQL, so that several sync servers (processes,
 * machines) share one total order per storeId. Built on the `pg` package, an
 * optional peer dependency loaded on first use.
 *
 * Tables (in their own schema, `tidelog` by default), created on first use or
 * by `tidelog migrate --postgres URL`:
 * - `schema_version(version)`: one row per applied migration; a later release
 *   reads the highest and applies only what is missing.
 * - `backend(backend_id)`: the one `backendId` of every log in this schema.
 * - `stores(store_id, head)`: one head row per log. A push locks it for its
 *   transaction, so two appends at one head cannot interleave.
 * - `events(store_id, seq, id_json, body)`: the logs, primary key
 *   (store_id, seq), unique (store_id, id_json) for the idempotency check.
 *   `body` is the event's JSON text and `id_json` the id's (exact for every
 *   string, NUL and lone surrogates included, which PostgreSQL text cannot hold).
 *
 * Invariants:
 * 1. A push is one transaction: lock the head row, judge (judgePush: the
 *    idempotency check, then the head check), insert, move the head, notify.
 *    `pushed` is answered only after COMMIT returned, so it is durable. The
 *    transaction ends by itself when left idle (`transactionTimeoutMs`), so a
 *    server that stops mid-push cannot hold the head row for good.
 * 2. Subscribers hear a head only once it is committed: after our own COMMIT,
 *    or from a `NOTIFY` (which PostgreSQL delivers at commit) on one listener
 *    connection per backend. Heads told to a storeId's subscribers never go
 *    backwards.
 * 3. When the listener connection drops it reconnects with backoff and then
 *    tells every subscriber the current head of its storeId, so that pushes
 *    made while it was gone are caught up.
 * 4. Nothing is cached: every pull reads one page (at most MAX_PULL_LIMIT
 *    events) from PostgreSQL, and every store shares the pool's connections.
 */

import { backoffDelay } from '../backoff.js'
import { StorageError, TidelogError } from '../errors.js'
import { randomId } from '../ids.js'
import {
  type ConfirmedEvent,
  isValidStoreId,
  MAX_PULL_LIMIT,
  type PendingEvent,
  ProtocolViolation,
  type PullResponse,
  type PushResponse,
  STORE_ID_RULE,
} from '../protocol.js'
import type { SyncBackend } from '../transport.js'
import { judgePush } from './judge-push.js'

/** The part of a `pg` query result the backend reads. */
export interface PostgresQueryResult {
  rows: Record<string, unknown>[]
}

/** A connection checked out of a pool: what `pg.PoolClient` offers and the backend uses. */
export interface PostgresPoolClient {
  query(text: string, values?: unknown[]): Promise<PostgresQueryResult>
  /** Returns the connection to the pool; with an error (or `true`) the pool destroys it. */
  release(destroy?: Error | boolean): void
  on(event: 'notification', listener: (message: { channel: string; payload?: string }) => void): unknown
  on(event: 'error', listener: (error: Error) => void): unknown
  on(event: 'end', listener: () => void): unknown
}

/** What `pg.Pool` offers and the backend uses; any `pg.Pool` fits. */
export interface PostgresPool {
  query(text: string, values?: unknown[]): Promise<PostgresQueryResult>
  connect(): Promise<PostgresPoolClient>
  end(): Promise<void>
}

/** Where the backend finds PostgreSQL: a URL (the backend opens and closes its own pool) or your pool. */
export type PostgresConnection =
  | { /** e.g. 'postgres://user@db.internal:5432/app' */ connectionString: string; pool?: undefined }
  | {
      /** A `pg.Pool` of yours (with room for 2 connections or more); `close()` leaves it open. One connection of it is held for LISTEN. */ pool: PostgresPool
      connectionString?: undefined
    }

/** Options of `postgresBackend` besides the connection. */
export interface PostgresBackendOptions {
  /** Schema holding the tables (default `tidelog`): lower-case letters, digits and `_`, at most 40. Created if missing. */
  schema?: string
  /** Connections of the pool the backend opens from `connectionString` (default 10, at least 2: one of them listens). */
  maxConnections?: number
  /**
   * How long a push's transaction may sit idle before PostgreSQL ends it
   * (`idle_in_transaction_session_timeout`, default 10,000 ms): a sync server
   * that stops in the middle of a push (frozen, or cut off from the database)
   * holds its store's head row, and so every other push to that store, at most
   * this long. A push waits for that row at most twice as long (`lock_timeout`),
   * then fails with a retryable error. Set per transaction, so it holds on a pool of yours too.
   */
  transactionTimeoutMs?: number
}

/** Counters since the backend was opened; a benchmark divides them to report round trips per push. */
export interface PostgresBackendStats {
  /** Statements sent to PostgreSQL (each one round trip), the listener's included. */
  queries: number
  /** Pushes answered `pushed` that appended events (idempotent retries not counted). */
  pushes: number
  /** Events appended. */
  events: number
  /** Times the listener connection was (re)established and caught up. */
  listenerConnects: number
  /** True while the listener connection is up, listening, and has caught up every subscriber. */
  listening: boolean
}

/** A `SyncBackend` on PostgreSQL, with its counters. */
export interface PostgresBackend extends SyncBackend {
  readonly schema: string
  stats(): PostgresBackendStats
}

/** The schema version this release writes; `migratePostgres` brings a database up to it. */
export const POSTGRES_SCHEMA_VERSION = 1

// Migration n (1-based) takes a schema from version n - 1 to n. Append only: never edit a released one.
const MIGRATIONS: ((schema: string) => string)[] = [
  (s) => `
    CREATE TABLE ${s}.backend (one boolean PRIMARY KEY DEFAULT true CHECK (one), backend_id text NOT NULL);
    CREATE TABLE ${s}.stores (store_id text PRIMARY KEY, head bigint NOT NULL);
    CREATE TABLE ${s}.events (
      store_id text NOT NULL,
      seq bigint NOT NULL,
      id_json text NOT NULL,
      body text NOT NULL,
      PRIMARY KEY (store_id, seq),
      UNIQUE (store_id, id_json)
    );`,
]

const SCHEMA_NAME = /^[a-z_][a-z0-9_]{0,39}$/

interface PgModule {
  Pool: new (config: {
    connectionString: string
    max?: number
    keepAlive?: boolean
  }) => PostgresPool & { on(event: 'error', listener: (error: Error) => void): unknown }
}

/**
 * Loads `pg` (an optional peer dependency). Exported for tests: `importer`
 * stands in for `import('pg')`.
 */
export async function loadPg(importer: () => Promise<unknown> = () => import('pg')): Promise<PgModule> {
  let loaded: unknown
  try {
    loaded = await importer()
  } catch (error) {
    const code = (error as { code?: unknown }).code
    if (code === 'ERR_MODULE_NOT_FOUND' || code === 'MODULE_NOT_FOUND') {
      throw new StorageError('postgresBackend needs the "pg" package, which is not installed: run npm install pg', { cause: error })
    }
    throw error
  }
  const mod = ((loaded as { default?: unknown }).default ?? loaded) as Partial<PgModule>
  if (typeof mod.Pool !== 'function') throw new StorageError('postgresBackend: the "pg" package does not export Pool; install pg 8 (npm install pg@8)')
  return mod as PgModule
}

function checkSchema(schema: string): string {
  if (!SCHEMA_NAME.test(schema)) {
    throw new StorageError(`postgresBackend: schema "${schema}" is not allowed; use 1-40 of a-z 0-9 _ (starting with a letter or _)`)
  }
  return schema
}

function dbError(what: string, error: unknown): StorageError {
  if (error instanceof StorageError || error instanceof ProtocolViolation) return error as StorageError
  const reason = error instanceof Error ? error.message : String(error)
  return new StorageError(
    `postgresBackend: ${what} failed: ${reason}. Check that PostgreSQL is reachable and the user may use the schema; the request can be retried.`,
    { cause: error },
  )
}

async function openPool(connection: PostgresConnection, max: number | undefined): Promise<{ pool: PostgresPool; owned: boolean }> {
  if (connection.pool) return { pool: connection.pool, owned: false }
  if (typeof connection.connectionString !== 'string' || connection.connectionString === '') {
    throw new StorageError('postgresBackend needs { connectionString: "postgres://..." } or { pool }')
  }
  const { Pool } = await loadPg()
  // TCP keepalives, so that a database host that vanished is noticed on idle connections too
  const pool = new Pool({ connectionString: connection.connectionString, max: max ?? 10, keepAlive: true })
  // an idle connection that breaks (server restart, pg_terminate_backend) is dropped by the pool; the next checkout opens a new one
  pool.on('error', () => {})
  return { pool, owned: true }
}

/**
 * Creates or upgrades the backend's tables in `schema` to
 * `POSTGRES_SCHEMA_VERSION` (in one transaction, under an advisory lock, so
 * that servers starting together do it once) and returns the schema's
 * backendId. The backend runs it on first use; `tidelog migrate` runs it ahead.
 */
export async function migratePostgres(
  connection: PostgresConnection,
  options: Pick<PostgresBackendOptions, 'schema'> = {},
): Promise<{ schema: string; version: number; backendId: string }> {
  const schema = checkSchema(options.schema ?? 'tidelog')
  const { pool, owned } = await openPool(connection, 1)
  try {
    return await migrate(pool, schema, () => {})
  } finally {
    if (owned) await pool.end()
  }
}

async function migrate(pool: PostgresPool, schema: string, counted: () => void): Promise<{ schema: string; version: number; backendId: string }> {
  const s = `"${schema}"`
  let client: PostgresPoolClient
  try {
    client = guard(await pool.connect())
  } catch (error) {
    throw dbError('connecting', error)
  }
  const q = (text: string, values?: unknown[]) => {
    counted()
    return client.query(text, values)
  }
  try {
    await q('BEGIN')
    await q('SELECT pg_advisory_xact_lock(hashtext($1))', [`tidelog:${schema}`])
    await q(`CREATE SCHEMA IF NOT EXISTS ${s}`)
    await q(`CREATE TABLE IF NOT EXISTS ${s}.schema_version (version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())`)
    const { rows } = await q(`SELECT coalesce(max(version), 0) AS version FROM ${s}.schema_version`)
    const version = Number(rows[0]!.version)
    if (version > MIGRATIONS.length) {
      throw new StorageError(
        `postgresBackend: schema "${schema}" is at version ${version}, written by a newer tidelog (this one knows up to ${MIGRATIONS.length}); upgrade tidelog on this server`,
      )
    }
    for (let v = version + 1; v <= MIGRATIONS.length; v++) {
      await q(MIGRATIONS[v - 1]!(s))
      await q(`INSERT INTO ${s}.schema_version (version) VALUES ($1)`, [v])
    }
    await q(`INSERT INTO ${s}.backend (backend_id) VALUES ($1) ON CONFLICT DO NOTHING`, [randomId(16)])
    const id = await q(`SELECT backend_id FROM ${s}.backend`)
    await q('COMMIT')
    client.release()
    return { schema, version: MIGRATIONS.length, backendId: String(id.rows[0]!.backend_id) }
  } catch (error) {
    await client.query('ROLLBACK').catch(() => {})
    client.release(true)
    throw dbError(`creating the tables in schema "${schema}"`, error)
  }
}

// A checked-out pg connection has no 'error' listener, so a connection that breaks between two
// statements would throw from an event emitter; the failing statement reports the error instead.
const guarded = new WeakSet<PostgresPoolClient>()
const guard = (client: PostgresPoolClient) => {
  if (!guarded.has(client)) {
    guarded.add(client)
    client.on('error', () => {})
  }
  return client
}
const listeningClients = new WeakSet<PostgresPoolClient>()

/**
 * A `SyncBackend` on PostgreSQL for one or many sync servers sharing one
 * database: give each server the same connection string and schema.
 * @example createSyncServer({ backend: postgresBackend({ connectionString: process.env.DATABASE_URL! }) })
 */
export function postgresBackend(connection: PostgresConnection, options: PostgresBackendOptions = {}): PostgresBackend {
  const schema = checkSchema(options.schema ?? 'tidelog')
  const max = options.maxConnections
  const idleMs = options.transactionTimeoutMs ?? 10_000
  if (!Number.isSafeInteger(idleMs) || idleMs < 1)
    throw new TidelogError('invalid_options', `postgresBackend: transactionTimeoutMs must be a positive whole number of milliseconds (got ${idleMs})`)
  // one round trip: a push's transaction ends by itself if this server stops in the middle of it
  const BEGIN_PUSH = `BEGIN; SET LOCAL idle_in_transaction_session_timeout = ${idleMs}; SET LOCAL lock_timeout = ${2 * idleMs}`
  if (max !== undefined && !(Number.isSafeInteger(max) && max >= 2)) {
    throw new StorageError(`postgresBackend: maxConnections must be an integer of at least 2 (one connection listens for other servers' pushes), got ${max}`)
  }
  const s = `"${schema}"`
  const channel = `tidelog_${schema}`
  const subscribers = new Map<string, { told: number; listeners: Set<(head: number) => void> }>()
  let ready: Promise<{ pool: PostgresPool; owned: boolean; backendId: string }> | undefined
  let closed = false
  const counters = { queries: 0, pushes: 0, events: 0, listenerConnects: 0 }
  let listener: PostgresPoolClient | undefined
  let listening = false
  let listenerStarted = false
  let listenerAttempt = 0
  let retryTimer: ReturnType<typeof setTimeout> | undefined

  const open = () => {
    if (closed) return Promise.reject(new StorageError('postgresBackend is closed; open a new one with postgresBackend()'))
    ready ??= (async () => {
      const { pool, owned } = await openPool(connection, options.maxConnections)
      try {
        const { backendId } = await migrate(pool, schema, () => counters.queries++)
        return { pool, owned, backendId }
      } catch (error) {
        if (owned) await pool.end().catch(() => {})
        throw error
      }
    })().catch((error) => {
      ready = undefined
      throw error
    })
    return ready
  }

  const query = (on: { query: PostgresPool['query'] }, text: string, values?: unknown[]) => {
    counters.queries++
    return on.query(text, values)
  }

  // Tells a storeId's subscribers a committed head, never one lower than told before.
  const tell = (storeId: string, head: number, again = false) => {
    const entry = subscribers.get(storeId)
    if (!entry || head < entry.told || (head === entry.told && !again)) return
    entry.told = head
    for (const onHead of [...entry.listeners]) onHead(head)
  }

  const onNotification = (message: { channel: string; payload?: string }) => {
    if (message.channel !== channel || !message.payload) return
    const space = message.payload.indexOf(' ')
    const head = Number(message.payload.slice(0, space))
    if (Number.isSafeInteger(head)) tell(message.payload.slice(space + 1), head)
  }

  const startListener = () => {
    if (listenerStarted || closed) return
    listenerStarted = true
    void connectListener()
  }

  async function connectListener(): Promise<void> {
    retryTimer = undefined
    if (closed) return
    let client: PostgresPoolClient | undefined
    try {
      const { pool } = await open()
      client = guard(await pool.connect())
      if (closed) return client.release()
      if (!listeningClients.has(client)) {
        listeningClients.add(client)
        const dropped = client
        client.on('notification', (m) => {
          if (listener === dropped) onNotification(m)
        })
        client.on('error', () => listenerDropped(dropped))
        client.on('end', () => listenerDropped(dropped))
      }
      listener = client
      await query(client, `LISTEN "${channel}"`)
      await catchUp(pool)
      listening = true
      counters.listenerConnects++
      listenerAttempt = 0
    } catch {
      if (client) listenerDropped(client)
      else scheduleListener()
    }
  }

  function listenerDropped(client: PostgresPoolClient) {
    if (listener !== client) return
    listener = undefined
    listening = false
    client.release(true)
    scheduleListener()
  }

  function scheduleListener() {
    if (closed || retryTimer) return
    retryTimer = setTimeout(() => void connectListener(), backoffDelay(listenerAttempt++, 100, 5000))
    retryTimer.unref?.()
  }

  // After (re)connecting: every subscriber hears its storeId's current head, covering notifications missed meanwhile.
  async function catchUp(pool: PostgresPool) {
    const storeIds = [...subscribers.keys()]
    if (storeIds.length === 0) return
    const { rows } = await query(pool, `SELECT store_id, head FROM ${s}.stores WHERE store_id = ANY($1::text[])`, [storeIds])
    for (const row of rows) tell(String(row.store_id), Number(row.head), true)
  }

  const checkStoreId = (storeId: string) => {
    if (!isValidStoreId(storeId)) throw new ProtocolViolation('invalid_message', `storeId must be ${STORE_ID_RULE}`)
  }

  return {
    schema,

    async pull(storeId, since, limit): Promise<PullResponse> {
      checkStoreId(storeId)
      const { pool, backendId } = await open()
      const n = Math.max(1, Math.min(limit, MAX_PULL_LIMIT))
      let rows: Record<string, unknown>[]
      try {
        // one statement, so head and page come from one snapshot
        ;({ rows } = await query(
          pool,
          `
          SELECT h.head, e.seq, e.body
          FROM (SELECT coalesce((SELECT head FROM ${s}.stores WHERE store_id = $1), 0) AS head) h
          LEFT JOIN LATERAL (
            SELECT seq, body FROM ${s}.events WHERE store_id = $1 AND seq > $2 ORDER BY seq LIMIT $3
          ) e ON true`,
          [storeId, since, n],
        ))
      } catch (error) {
        throw dbError(`pulling ${storeId}`, error)
      }
      const head = Number(rows[0]!.head)
      const events: ConfirmedEvent[] = rows.filter((r) => r.seq !== null).map((r) => ({ seq: Number(r.seq), ...(JSON.parse(String(r.body)) as PendingEvent) }))
      return { type: 'pulled', events, head, backendId, more: since + events.length < head }
    },

    async push(storeId, request): Promise<PushResponse> {
      const { parentSeq, events } = request
      checkStoreId(storeId)
      // an empty push is refused (by judgePush, which throws invalid_message for it) before a connection is taken
      if (events.length === 0) judgePush({ head: 0, seqOf: () => undefined }, parentSeq, events)
      const ids = events.map((e) => JSON.stringify(e.id))
      // serialized before the transaction: an event that cannot be stored appends nothing
      const bodies = events.map((e) =>
        JSON.stringify({ id: e.id, name: e.name, args: e.args, clientId: e.clientId, sessionId: e.sessionId, createdAt: e.createdAt }),
      )
      const { pool, backendId } = await open()
      let client: PostgresPoolClient
      try {
        client = guard(await pool.connect())
      } catch (error) {
        throw dbError(`pushing to ${storeId}`, error)
      }
      let broken: unknown
      try {
        await query(client, BEGIN_PUSH)
        // Locks the head row (creating it for a new log). When the lock had to wait for another
        // push, the ids read in this statement's snapshot may be stale: read them again.
        const { rows } = await query(
          client,
          `
          WITH locked AS (
            INSERT INTO ${s}.stores AS st (store_id, head) VALUES ($1, 0)
            ON CONFLICT (store_id) DO UPDATE SET head = st.head
            RETURNING st.head
          )
          SELECT (SELECT head FROM locked) AS head,
                 coalesce((SELECT head FROM ${s}.stores WHERE store_id = $1), 0) AS seen,
                 (SELECT json_agg(json_build_array(id_json, seq)) FROM ${s}.events WHERE store_id = $1 AND id_json = ANY($2::text[])) AS known`,
          [storeId, ids],
        )
        const head = Number(rows[0]!.head)
        let known = rows[0]!.known as [string, number][] | null
        if (Number(rows[0]!.seen) !== head) {
          const again = await query(
            client,
            `SELECT json_agg(json_build_array(id_json, seq)) AS known FROM ${s}.events WHERE store_id = $1 AND id_json = ANY($2::text[])`,
            [storeId, ids],
          )
          known = again.rows[0]!.known as [string, number][] | null
        }
        const seqById = new Map((known ?? []).map(([id, seq]) => [JSON.parse(id) as string, Number(seq)]))
        const verdict = judgePush({ head, seqOf: (id) => seqById.get(id), backendId }, parentSeq, events, request)
        if (verdict.kind !== 'append') {
          await query(client, 'ROLLBACK')
          return verdict.kind === 'retry' ? { type: 'pushed', firstSeq: verdict.firstSeq, head, backendId } : { type: 'rejected', reason: 'behind', head }
        }
        const newHead = head + events.length
        await query(
          client,
          `
          WITH appended AS (
            INSERT INTO ${s}.events (store_id, seq, id_json, body)
            SELECT $1, $2::bigint + t.ord, t.id_json, t.body FROM unnest($3::text[], $4::text[]) WITH ORDINALITY AS t(id_json, body, ord)
          ), moved AS (
            UPDATE ${s}.stores SET head = $5 WHERE store_id = $1
          )
          SELECT pg_notify($6, $7)`,
          [storeId, head, ids, bodies, newHead, channel, `${newHead} ${storeId}`],
        )
        await query(client, 'COMMIT')
        counters.pushes++
        counters.events += events.length
        queueMicrotask(() => tell(storeId, newHead))
        return { type: 'pushed', firstSeq: head + 1, head: newHead, backendId }
      } catch (error) {
        if (error instanceof ProtocolViolation) {
          await client.query('ROLLBACK').catch((e: unknown) => (broken = e))
          throw error
        }
        broken = error
        throw dbError(`pushing to ${storeId}`, error)
      } finally {
        // a connection whose transaction state is unknown is not handed to the next push
        client.release(broken === undefined ? undefined : true)
      }
    },

    subscribe(storeId, onHead) {
      let entry = subscribers.get(storeId)
      if (!entry) {
        entry = { told: 0, listeners: new Set() }
        subscribers.set(storeId, entry)
      }
      entry.listeners.add(onHead)
      startListener()
      return () => {
        const current = subscribers.get(storeId)
        if (!current) return
        current.listeners.delete(onHead)
        if (current.listeners.size === 0) subscribers.delete(storeId)
      }
    },

    stats() {
      return { ...counters, listening }
    },

    async close() {
      if (closed) return
      closed = true
      subscribers.clear()
      if (retryTimer) clearTimeout(retryTimer)
      const opened = ready
      ready = undefined
      const held = listener
      listener = undefined
      listening = false
      held?.release(true)
      const state = await opened?.catch(() => undefined)
      if (state?.owned) await state.pool.end()
    },
  }
}
