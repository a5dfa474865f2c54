import { createStore, defineEvent, defineSchema, localTransport, type Store, sql } from 'tidelog'
import { memoryBackend } from 'tidelog/server'
import { afterEach, describe, expect, it } from 'vitest'
import { freshStoreId } from './helpers/todo-schema.js'
import { waitFor } from './helpers/wait.js'

// A long batch of confirmed events (a client catching up) is applied with the undo log's
// capture triggers dropped for the batch; these tests check that capture works again after it.
const schema = defineSchema({
  tables: { items: sql`CREATE TABLE items (id TEXT PRIMARY KEY, text TEXT NOT NULL)` },
  events: {
    created: defineEvent<{ id: string; text: string }>({ materialize: ({ id, text }) => sql`INSERT INTO items (id, text) VALUES (${id}, ${text})` }),
    appended: defineEvent<{ id: string; suffix: string }>({ materialize: ({ id, suffix }) => sql`UPDATE items SET text = text || ${suffix} WHERE id = ${id}` }),
  },
})

/** Longer than the batch from which the triggers are dropped (150 events per state table). */
const BATCH = 400

const open: Store<typeof schema>[] = []
afterEach(async () => {
  await Promise.all(open.splice(0).map((s) => s.close()))
})

const other = (seq: number, name: string, args: unknown) => ({ id: `other:${seq}`, name, args, clientId: 'other', sessionId: 's', createdAt: seq }) as never

const textOf = (store: Store<typeof schema>, id: string) => store.query<{ text: string }>(sql`SELECT text FROM items WHERE id = ${id}`).value[0]?.text

describe('a long commit', () => {
  // one commit of many events takes the tables it wrote from the undo log instead of the update hook
  const wide = defineSchema({
    tables: {
      items: sql`CREATE TABLE items (id TEXT PRIMARY KEY, text TEXT NOT NULL)`,
      notes: sql`CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT NOT NULL)`,
      idle: sql`CREATE TABLE idle (id INTEGER PRIMARY KEY)`,
    },
    events: {
      created: defineEvent<{ id: string }>({ materialize: ({ id }) => sql`INSERT INTO items (id, text) VALUES (${id}, 'x')` }),
      noted: defineEvent<{ body: string }>({ materialize: ({ body }) => sql`INSERT INTO notes (body) VALUES (${body})` }),
    },
  })
  const counts = (store: Store<typeof wide>) =>
    Object.fromEntries((['items', 'notes', 'idle'] as const).map((t) => [t, store.query<{ n: number }>({ sql: `SELECT count(*) AS n FROM ${t}`, params: [] })]))

  it('notifies the live queries of every table it wrote, and only those', async () => {
    const store = await createStore({ schema: wide, storeId: freshStoreId('long'), dev: false })
    open.push(store as never)
    const live = counts(store)
    const runs: Record<string, number> = { items: 0, notes: 0, idle: 0 }
    const stops = Object.entries(live).map(([t, q]) => q.subscribe(() => runs[t]!++))
    const values = Array.from({ length: 200 }, (_, i) => (i % 2 ? wide.events.noted({ body: `n${i}` }) : wide.events.created({ id: `i${i}` })))
    store.commit(...values)
    expect(Object.fromEntries(Object.entries(live).map(([t, q]) => [t, q.value[0]!.n]))).toEqual({ items: 100, notes: 100, idle: 0 })
    // each subscription ran once on subscribe, and once more for a table this commit wrote
    expect(runs).toEqual({ items: 2, notes: 2, idle: 1 })
    for (const stop of stops) stop()
  })
})

describe('a long batch of confirmed events', () => {
  it.each([
    ['every event applies', -1],
    ['one event fails to materialize (the batch is applied again, guarded)', 7],
  ])('leaves undo capture working for the pending events after it: %s', async (_what, failing) => {
    const backend = memoryBackend()
    const storeId = freshStoreId('bulk')
    const events = Array.from({ length: BATCH }, (_, i) =>
      // a duplicate primary key fails to materialize; confirmed events that fail are skipped on every client
      other(i + 1, 'created', { id: i === failing ? 'i0' : `i${i}`, text: 'base' }),
    )
    await backend.push(storeId, { parentSeq: 0, events })
    const warnings: string[] = []
    const store = await createStore({ schema, storeId, transport: localTransport(backend), dev: false, onWarning: (m) => warnings.push(m) })
    open.push(store)
    await waitFor(store.sync.status, (s) => s.head === BATCH && s.state === 'synced', 'the batch to be applied')
    expect(store.query<{ n: number }>(sql`SELECT count(*) AS n FROM items`).value[0]!.n).toBe(failing < 0 ? BATCH : BATCH - 1)
    expect(warnings.some((w) => w.includes('failed to materialize'))).toBe(failing >= 0)

    // a pending event, then an upstream one on the same row: the rebase must undo the pending write first
    store.sync.pause()
    await store.commit(schema.events.appended({ id: 'i1', suffix: '+mine' })).persisted
    expect(textOf(store, 'i1')).toBe('base+mine')
    await backend.push(storeId, { parentSeq: BATCH, events: [other(BATCH + 1, 'appended', { id: 'i1', suffix: '+theirs' })] })
    store.sync.resume()
    await waitFor(store.sync.status, (s) => s.head === BATCH + 2 && s.pending === 0, 'the rebase and the push')
    // without capture the rollback would keep '+mine', and the re-apply would add it again
    expect(textOf(store, 'i1')).toBe('base+theirs+mine')
  })

  it('re-runs the live queries on what it wrote', async () => {
    const backend = memoryBackend()
    const storeId = freshStoreId('bulk')
    await backend.push(storeId, { parentSeq: 0, events: [other(1, 'created', { id: 'first', text: 'base' })] })
    const store = await createStore({ schema, storeId, transport: localTransport(backend), dev: false })
    open.push(store)
    await waitFor(store.sync.status, (s) => s.head === 1 && s.state === 'synced', 'the first event')
    const count = store.query<{ n: number }>(sql`SELECT count(*) AS n FROM items`)
    const seen = waitFor(count, (rows) => rows[0]!.n === 1 + BATCH, 'the live count to see the batch')
    await backend.push(storeId, { parentSeq: 1, events: Array.from({ length: BATCH }, (_, i) => other(i + 2, 'created', { id: `i${i}`, text: 'base' })) })
    await seen
  })
})
