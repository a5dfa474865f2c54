// postgresBackend against the machine's PostgreSQL: the backend kit (crash
// hook included) in a fresh schema dropped afterwards, migrations, the
// listener connection's reconnect and catch-up, and pg missing.

import type pg from 'pg'
import { migratePostgres, type PostgresBackend, type PostgresPool, postgresBackend, type SyncBackend } from 'tidelog/server'
import { runBackendConformance } from 'tidelog/testing'
import { afterAll, describe, expect, it } from 'vitest'
// by path: loadPg is not part of the package's surface
import { loadPg } from '../src/backends/postgres.js'
import { dropSchema, freshSchemaName, killConnections, namedPool, POSTGRES_URL, postgresUnavailable, sql } from './helpers/postgres.js'
import { within } from './helpers/wait.js'

const unavailable = await postgresUnavailable()
if (unavailable) console.warn(`backend-postgres.test.ts: skipping the PostgreSQL tests: ${unavailable}`)

const schemas: string[] = []
const pools = new Map<SyncBackend, { pool: pg.Pool; name: string }>()
afterAll(async () => {
  await Promise.all([...pools.values()].map(({ pool }) => pool.end().catch(() => {})))
  if (!unavailable) for (const schema of schemas) await dropSchema(schema)
})

const schema = freshSchemaName()
schemas.push(schema)
let poolCount = 0

/** A backend on a pool of its own, so that a crash can kill exactly its connections. */
function openBackend(): PostgresBackend {
  const name = `${schema}_p${poolCount++}`
  const pool = namedPool(name)
  const backend = postgresBackend({ pool }, { schema })
  pools.set(backend, { pool, name })
  return backend
}

/** Polls a condition that no event announces (the listener's state), bounded. */
async function until(condition: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 1000 && !condition(); i++) await new Promise((resolve) => setTimeout(resolve, 10))
  if (!condition()) throw new Error(`timed out waiting for ${what}`)
}

function events(clientId: string, from: number, count: number) {
  return Array.from({ length: count }, (_, i) => ({ id: `${clientId}:${from + i}`, name: 'e', args: { i }, clientId, sessionId: 's', createdAt: 0 }))
}

describe.skipIf(unavailable)('postgresBackend', () => {
  runBackendConformance('postgresBackend', openBackend, {
    reopen: async (closed) => {
      await pools.get(closed)!.pool.end()
      pools.delete(closed)
      return openBackend()
    },
    // the process dies: PostgreSQL sees its connections drop, nothing is closed or flushed
    crash: async (abandoned) => {
      const { pool, name } = pools.get(abandoned)!
      await killConnections(name)
      void pool.end().catch(() => {})
      pools.delete(abandoned)
      return openBackend()
    },
  })

  it('creates its tables on first use, at the schema version this release writes, with one backendId', async () => {
    const mine = freshSchemaName()
    schemas.push(mine)
    const results = await Promise.all([1, 2, 3, 4].map(() => migratePostgres({ connectionString: POSTGRES_URL }, { schema: mine })))
    expect(new Set(results.map((r) => r.backendId)).size).toBe(1)
    expect(results[0]).toMatchObject({ schema: mine, version: 1 })
    const { rows } = await sql(`SELECT version FROM "${mine}".schema_version ORDER BY version`)
    expect(rows).toEqual([{ version: 1 }])
    const backend = postgresBackend({ connectionString: POSTGRES_URL }, { schema: mine })
    expect((await backend.pull('s', 0, 1)).backendId).toBe(results[0]!.backendId)
    await backend.close()
  })

  it('refuses a schema migrated by a newer release, saying so', async () => {
    const mine = freshSchemaName()
    schemas.push(mine)
    await migratePostgres({ connectionString: POSTGRES_URL }, { schema: mine })
    await sql(`INSERT INTO "${mine}".schema_version (version) VALUES (2)`)
    const backend = postgresBackend({ connectionString: POSTGRES_URL }, { schema: mine })
    await expect(backend.pull('s', 0, 1)).rejects.toMatchObject({
      name: 'StorageError',
      message: expect.stringMatching(/version 2, written by a newer tidelog .*upgrade tidelog/),
    })
    await backend.close()
  })

  it('refuses a schema name that is not a plain identifier', () => {
    expect(() => postgresBackend({ connectionString: POSTGRES_URL }, { schema: 'x"; DROP TABLE y; --' })).toThrow(/schema .* is not allowed/)
  })

  it('tells a subscriber on one backend of pushes made through another (NOTIFY), committed ones only', async () => {
    const [a, b] = [openBackend(), openBackend()]
    const heads: number[] = []
    a.subscribe('cross', (head) => heads.push(head))
    await until(() => a.stats().listening, 'the listener to be up')
    expect(await b.push('cross', { parentSeq: 0, events: events('x', 1, 2) })).toMatchObject({ type: 'pushed', head: 2 })
    await until(() => heads.includes(2), 'head 2 on the other backend')
    // a rejected push commits nothing and notifies nothing; the next accepted one does
    expect(await b.push('cross', { parentSeq: 0, events: events('y', 1, 1) })).toMatchObject({ type: 'rejected', head: 2 })
    await b.push('cross', { parentSeq: 2, events: events('x', 3, 1) })
    await until(() => heads.includes(3), 'head 3 on the other backend')
    expect(heads).toEqual([2, 3])
    await Promise.all([a.close(), b.close()])
  })

  it('reconnects the listener when its connection is terminated and catches up a push made meanwhile', async () => {
    const name = `${schema}_gated`
    const real = namedPool(name)
    // connections pass a gate the test can close, to hold the listener down for as long as it needs
    let gate: { promise: Promise<void>; open(): void } | undefined
    const pool: PostgresPool = {
      query: (text, values) => real.query(text, values),
      connect: async () => {
        if (gate) await gate.promise
        return real.connect()
      },
      end: () => real.end(),
    }
    const listening = postgresBackend({ pool }, { schema })
    const pusher = openBackend()
    const heads: number[] = []
    listening.subscribe('gap', (head) => heads.push(head))
    await until(() => listening.stats().listening, 'the listener to be up')
    await pusher.push('gap', { parentSeq: 0, events: events('a', 1, 1) })
    await until(() => heads.includes(1), 'head 1')

    let open!: () => void
    gate = { promise: new Promise<void>((resolve) => (open = resolve)), open: () => open() }
    expect(await killConnections(name)).toBeGreaterThanOrEqual(1)
    await until(() => !listening.stats().listening, 'the listener to notice its connection died')
    await pusher.push('gap', { parentSeq: 1, events: events('a', 2, 2) })
    // the push's NOTIFY went out while nobody listened: it is lost, and only a catch-up can tell head 3
    expect(heads).toEqual([1])
    expect(listening.stats().listenerConnects).toBe(1)
    gate.open()
    gate = undefined
    await until(() => heads.includes(3), 'the catch-up to tell head 3')
    expect(listening.stats().listenerConnects).toBe(2)
    // and notifications flow again, without another reconnect
    await pusher.push('gap', { parentSeq: 3, events: events('a', 4, 1) })
    await until(() => heads.includes(4), 'head 4 by notification')
    expect(listening.stats().listenerConnects).toBe(2)
    expect(heads).toEqual([1, 3, 4])
    await within(listening.close(), 'close')
    await real.end()
    await pusher.close()
  })

  it('serves a thousand stores, pushed to and subscribed, with the connections of one small pool', async () => {
    const name = `${schema}_many`
    const backend = postgresBackend({ connectionString: `${POSTGRES_URL}?application_name=${name}` }, { schema, maxConnections: 3 })
    const stores = Array.from({ length: 1000 }, (_, k) => `many-${k}`)
    const told = new Map<string, number>()
    for (const s of stores) backend.subscribe(s, (head) => told.set(s, head))
    const answers = await Promise.all(stores.map((s, k) => backend.push(s, { parentSeq: 0, events: events(`c${k}`, 1, 1 + (k % 3)) })))
    expect(answers.every((a) => a.type === 'pushed')).toBe(true)
    await until(() => stores.every((s, k) => told.get(s) === 1 + (k % 3)), "every store's subscriber to hear its head")
    const { rows } = await sql('SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = $1', [name])
    expect(rows[0].n).toBeGreaterThanOrEqual(1)
    expect(rows[0].n).toBeLessThanOrEqual(3)
    await backend.close()
    expect(() => postgresBackend({ connectionString: POSTGRES_URL }, { maxConnections: 1 })).toThrow(/maxConnections must be an integer of at least 2/)
  })

  it('frees a store held by a server that stopped in the middle of a push, after transactionTimeoutMs', async () => {
    const storeId = 'frozen-mid-push'
    const pool = namedPool(`${schema}_frozen`)
    const held: pg.PoolClient[] = []
    let freeze = false
    // a server that stops after taking the head row's lock: its append never reaches PostgreSQL
    const freezing: PostgresPool = {
      query: (text, values) => pool.query(text, values),
      end: () => pool.end(),
      async connect() {
        const client = await pool.connect()
        held.push(client)
        return {
          query: (text: string, values?: unknown[]) => (freeze && text.includes('unnest') ? new Promise<never>(() => {}) : client.query(text, values)),
          release: (destroy?: Error | boolean) => client.release(destroy),
          on: (event: never, listener: never) => client.on(event, listener),
        }
      },
    }
    const stuck = postgresBackend({ pool: freezing }, { schema, transactionTimeoutMs: 300 })
    const other = openBackend()
    try {
      expect(await stuck.push(storeId, { parentSeq: 0, events: events('a', 1, 1) })).toMatchObject({ type: 'pushed', firstSeq: 1 })
      freeze = true
      void stuck.push(storeId, { parentSeq: 1, events: events('a', 2, 1) })
      await until(() => held.length === 2, 'the frozen push to take a connection')
      const { rows } = await sql("SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = $1 AND state = 'idle in transaction'", [
        `${schema}_frozen`,
      ])
      expect(rows[0]!.n, 'the frozen push holds a transaction open').toBe(1)
      // without the timeout this push would wait for the head row for as long as the frozen server lives
      expect(await within(other.push(storeId, { parentSeq: 1, events: events('b', 1, 1) }), 'the push behind the frozen one')).toMatchObject({
        type: 'pushed',
        firstSeq: 2,
      })
      expect((await other.pull(storeId, 0, 10)).events.map((e) => e.id)).toEqual(['a:1', 'b:1'])
    } finally {
      held[1]?.release(true) // the frozen push's connection (PostgreSQL has ended its session)
      await pool.end()
      await other.close()
    }
  })

  it('refuses a transactionTimeoutMs that is not a positive whole number', () => {
    for (const bad of [0, -1, 1.5, Number.NaN]) {
      expect(() => postgresBackend({ connectionString: POSTGRES_URL }, { transactionTimeoutMs: bad })).toThrow(
        expect.objectContaining({ code: 'invalid_options', message: expect.stringContaining('transactionTimeoutMs') }),
      )
    }
  })

  it('counts its round trips: an accepted push is four statements', async () => {
    const b = openBackend()
    await b.pull('rt', 0, 1) // migration done
    const before = b.stats().queries
    await b.push('rt', { parentSeq: 0, events: events('a', 1, 5) })
    expect(b.stats().queries - before).toBe(4) // BEGIN, lock + judge, append + notify, COMMIT
    expect(b.stats()).toMatchObject({ pushes: 1, events: 5 })
    await b.close()
  })
})

describe('postgresBackend without pg installed', () => {
  it('says to npm install pg', async () => {
    const missing = Object.assign(new Error("Cannot find package 'pg' imported from postgres.js"), { code: 'ERR_MODULE_NOT_FOUND' })
    await expect(loadPg(() => Promise.reject(missing))).rejects.toMatchObject({ name: 'StorageError', message: expect.stringContaining('npm install pg') })
  })
})
