/**
 * Randomized convergence (TARGETS.md R1): 3–8 clients on one backend, random
 * commits, offline periods and restarts, over a transport that drops,
 * duplicates and delays messages and loses answers after the backend applied
 * them. Every run must end with all clients holding the backend's eventlog
 * order and the state a plain-JS model computes from it.
 *
 * Replay a failure: TIDELOG_SEED=<seed> TIDELOG_PATH=<path> npx vitest run test/convergence.test.ts
 * More runs: TIDELOG_RUNS=5000
 */
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { createStore, defineEvent, defineSchema, localTransport, memoryStorage, sql, type Store, type Storage } from 'tidelog'
import { memoryBackend } from '../src/memory-backend.js'
import { faultyTransport, type Faults } from './helpers/faulty-transport.js'

const schema = defineSchema({
  tables: { items: sql`CREATE TABLE items (id TEXT PRIMARY KEY, value INTEGER NOT NULL)` },
  events: {
    set: defineEvent<{ id: string; value: number }>({
      materialize: ({ id, value }) => sql`INSERT INTO items (id, value) VALUES (${id}, ${value}) ON CONFLICT(id) DO UPDATE SET value = excluded.value`,
    }),
    add: defineEvent<{ id: string; by: number }>({
      materialize: ({ id, by }) => sql`UPDATE items SET value = value + ${by} WHERE id = ${id}`,
    }),
    remove: defineEvent<{ id: string }>({ materialize: ({ id }) => sql`DELETE FROM items WHERE id = ${id}` }),
  },
})

type Op = { name: 'set'; id: string; value: number } | { name: 'add'; id: string; by: number } | { name: 'remove'; id: string }

/** The plain-JS reference: the same events, in the backend's order. */
function model(events: { name: string; args: unknown }[]): Record<string, number> {
  const items = new Map<string, number>()
  for (const e of events) {
    const a = e.args as { id: string; value: number; by: number }
    if (e.name === 'set') items.set(a.id, a.value)
    else if (e.name === 'add' && items.has(a.id)) items.set(a.id, items.get(a.id)! + a.by)
    else if (e.name === 'remove') items.delete(a.id)
  }
  return Object.fromEntries([...items].sort(([x], [y]) => (x < y ? -1 : 1)))
}

const ids = fc.constantFrom('a', 'b', 'c', 'd')
const op: fc.Arbitrary<Op> = fc.oneof(
  fc.record({ name: fc.constant('set' as const), id: ids, value: fc.integer({ min: 0, max: 99 }) }),
  fc.record({ name: fc.constant('add' as const), id: ids, by: fc.integer({ min: 1, max: 9 }) }),
  fc.record({ name: fc.constant('remove' as const), id: ids }),
)
type Action =
  | { kind: 'commit'; client: number; ops: Op[] }
  | { kind: 'offline' | 'online' | 'restart'; client: number }
  | { kind: 'wait'; ms: number }
const action = (n: number): fc.Arbitrary<Action> =>
  fc.oneof(
    { weight: 6, arbitrary: fc.record({ kind: fc.constant('commit' as const), client: fc.nat(n - 1), ops: fc.array(op, { minLength: 1, maxLength: 3 }) }) },
    { weight: 1, arbitrary: fc.record({ kind: fc.constantFrom('offline' as const, 'online' as const, 'restart' as const), client: fc.nat(n - 1) }) },
    { weight: 2, arbitrary: fc.record({ kind: fc.constant('wait' as const), ms: fc.integer({ min: 0, max: 4 }) }) },
  )
const scenario = fc
  .integer({ min: 3, max: 8 })
  .chain((n) => fc.record({ n: fc.constant(n), actions: fc.array(action(n), { minLength: 5, maxLength: 30 }), faultSeed: fc.integer() }))

interface Client { storage: Storage; store: Store<typeof schema>; offline: boolean }

async function runScenario({ n, actions, faultSeed }: { n: number; actions: Action[]; faultSeed: number }) {
  const backend = memoryBackend()
  const faults: Faults = { enabled: true, seed: faultSeed, drop: 0.1, duplicate: 0.1, loseAnswer: 0.1, maxDelayMs: 3 }
  const open = (storage: Storage) =>
    createStore({
      schema, storeId: 'conv', storage, dev: false, onWarning: () => {},
      transport: faultyTransport(localTransport(backend), faults),
      sync: { minBackoffMs: 1, maxBackoffMs: 8 },
    })
  const clients: Client[] = []
  for (let i = 0; i < n; i++) {
    const storage = memoryStorage()
    clients.push({ storage, store: await open(storage), offline: false })
  }
  try {
    for (const a of actions) {
      if (a.kind === 'wait') await new Promise((r) => setTimeout(r, a.ms))
      else if (a.kind === 'commit') clients[a.client]!.store.commit(...a.ops.map((o) => schema.events[o.name](o as never)))
      else if (a.kind === 'offline') { clients[a.client]!.offline = true; clients[a.client]!.store.sync.pause() }
      else if (a.kind === 'online') { clients[a.client]!.offline = false; clients[a.client]!.store.sync.resume() }
      else {
        const c = clients[a.client]!
        await c.store.close()
        c.store = await open(c.storage)
        if (c.offline) c.store.sync.pause()
      }
    }
    // Heal: faults off, everyone online; then every client must drain and catch up.
    faults.enabled = false
    for (const c of clients) c.store.sync.resume()
    await Promise.all(clients.map((c) => c.store.sync.flush()))
    const head = (await backend.pull('conv', 0, 1)).head
    await Promise.all(clients.map((c) => untilHead(c.store, head)))
    const upstream: { id: string; name: string; args: unknown }[] = []
    for (let since = 0; since < head; ) {
      const page = await backend.pull('conv', since, 1000)
      upstream.push(...page.events)
      since += page.events.length
    }
    const expected = model(upstream)
    for (const c of clients) {
      expect(c.store.events().map((e) => e.id)).toEqual(upstream.map((e) => e.id))
      const rows = c.store.query<{ id: string; value: number }>(sql`SELECT id, value FROM items ORDER BY id`).value
      expect(Object.fromEntries(rows.map((r) => [r.id, r.value]))).toEqual(expected)
    }
  } finally {
    await Promise.all(clients.map((c) => c.store.close()))
  }
}

/** Resolves once the store's confirmed head reaches `head` (the live stream or a pull delivers it). */
function untilHead(store: Store<typeof schema>, head: number): Promise<void> {
  return new Promise((resolve) => {
    const stop = store.sync.status.subscribe((s) => {
      if (s.head >= head) { queueMicrotask(() => stop()); resolve() }
    })
  })
}

describe('convergence (R1)', () => {
  it('every client ends with the backend order and the model state, under faults, offline periods and restarts', async () => {
    const seed = process.env.TIDELOG_SEED ? Number(process.env.TIDELOG_SEED) : Date.now() ^ (Math.random() * 2 ** 31)
    const numRuns = Number(process.env.TIDELOG_RUNS ?? 1000)
    const path = process.env.TIDELOG_PATH
    console.log(`convergence: seed ${seed}, ${numRuns} runs (replay with TIDELOG_SEED=${seed})`)
    await fc.assert(fc.asyncProperty(scenario, runScenario), { seed, numRuns, path, endOnFailure: true })
  }, 600_000)
})
