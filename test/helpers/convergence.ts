/**
 * The randomized convergence property (TARGETS.md R1), shared by the
 * in-process run (test/convergence.test.ts, over a fault-injecting transport)
 * and the wire run (test/convergence-wire.test.ts, over WebSocket and HTTP
 * with real connection drops): a scenario generator, a plain-JS reference
 * model, and the runner that plays a scenario and checks the outcome.
 */
import fc from 'fast-check'
import { createStore, defineEvent, defineSchema, memoryStorage, type Storage, type Store, type SyncBackend, sql, type TabLinks, type Transport } from 'tidelog'
import { expect } from 'vitest'
import { within } from './wait.js'

export const schema = defineSchema({
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

export type Op = { name: 'set'; id: string; value: number } | { name: 'add'; id: string; by: number } | { name: 'remove'; id: string }

/** The plain-JS reference: the same events, in the backend's order. */
export function model(events: { name: string; args: unknown }[]): Record<string, number> {
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
export type Action = { kind: 'commit'; client: number; ops: Op[] } | { kind: 'offline' | 'online' | 'restart'; client: number } | { kind: 'wait'; ms: number }
const action = (n: number): fc.Arbitrary<Action> =>
  fc.oneof(
    { weight: 6, arbitrary: fc.record({ kind: fc.constant('commit' as const), client: fc.nat(n - 1), ops: fc.array(op, { minLength: 1, maxLength: 3 }) }) },
    { weight: 1, arbitrary: fc.record({ kind: fc.constantFrom('offline' as const, 'online' as const, 'restart' as const), client: fc.nat(n - 1) }) },
    { weight: 2, arbitrary: fc.record({ kind: fc.constant('wait' as const), ms: fc.integer({ min: 0, max: 4 }) }) },
  )

/**
 * `tabs`: that many of the last clients are further tabs of the client before
 * them: they share its storage (which a wire with `tabs` links), so one of them
 * owns it and syncs for all, and the others sync through it (PROTOCOL.md, Tabs).
 */
export interface Scenario {
  n: number
  actions: Action[]
  faultSeed: number
  tabs: number
}

/** 3–8 clients, 0–3 of them tabs of another, and 5–30 actions; `faultSeed` seeds whatever faults the runner injects. */
export const scenario: fc.Arbitrary<Scenario> = fc.integer({ min: 3, max: 8 }).chain((n) =>
  fc.record({
    n: fc.constant(n),
    actions: fc.array(action(n), { minLength: 5, maxLength: 30 }),
    faultSeed: fc.integer(),
    tabs: fc.integer({ min: 0, max: Math.min(3, n - 2) }),
  }),
)

/** Where a scenario runs: the backend every client syncs with, and how each client reaches it. */
export interface ScenarioWire {
  backend: SyncBackend
  storeId: string
  /** A fresh transport for client `client` (called again when the scenario restarts that client). */
  transport(client: number): Transport
  sync: { minBackoffMs: number; maxBackoffMs: number }
  /** Runs before action `index` (and once more with index = actions.length before healing): the place to inject faults. */
  beforeAction?(index: number): Promise<void>
  /** Turns injected faults off before the final convergence check. */
  heal?(): void | Promise<void>
  /** Turns a hang in the final convergence into a readable failure after this long; none by default. */
  healTimeoutMs?: number
  /** Stretches the scenario's `wait` actions (0–4 ms) for wires whose round trips are slower. Default 1. */
  waitScale?: number
  /** Links the tabs of one shared storage (named `name`); without it, the scenario's `tabs` is ignored. */
  tabs?(name: string): TabLinks
}

interface Client {
  storage: Storage
  store: Store<typeof schema>
  offline: boolean
}

/**
 * Plays the scenario's actions, heals (faults off, everyone online), and
 * checks that every client holds the backend's eventlog order and the state
 * the model computes from it.
 */
export async function runScenario({ n, actions, tabs }: Scenario, wire: ScenarioWire): Promise<void> {
  const { backend, storeId } = wire
  const open = (storage: Storage, client: number) =>
    createStore({
      schema,
      storeId,
      storage,
      dev: false,
      onWarning: () => {},
      transport: wire.transport(client),
      sync: wire.sync,
    })
  const clients: Client[] = []
  // clients first..n-1 are tabs of one storage; client `first`, opened first, owns it
  const first = wire.tabs && tabs > 0 ? n - 1 - tabs : n
  const shared: Storage | undefined = first < n ? { ...memoryStorage(), tabs: wire.tabs!(`conv-${Math.random().toString(36).slice(2)}`) } : undefined
  for (let i = 0; i < n; i++) {
    const storage = i >= first ? shared! : memoryStorage()
    clients.push({ storage, store: await open(storage, i), offline: false })
  }
  const guard = <T>(promise: Promise<T>, what: string) => (wire.healTimeoutMs ? within(promise, what, wire.healTimeoutMs) : promise)
  try {
    for (const [index, a] of actions.entries()) {
      if (wire.beforeAction) await wire.beforeAction(index)
      if (a.kind === 'wait') await new Promise((r) => setTimeout(r, a.ms * (wire.waitScale ?? 1)))
      else if (a.kind === 'commit') clients[a.client]!.store.commit(...a.ops.map((o) => schema.events[o.name](o as never)))
      else if (a.kind === 'offline') {
        clients[a.client]!.offline = true
        clients[a.client]!.store.sync.pause()
      } else if (a.kind === 'online') {
        clients[a.client]!.offline = false
        clients[a.client]!.store.sync.resume()
      } else {
        const c = clients[a.client]!
        await c.store.close()
        c.store = await open(c.storage, a.client)
        if (c.offline) c.store.sync.pause()
      }
    }
    if (wire.beforeAction) await wire.beforeAction(actions.length)
    // Heal: faults off, everyone online; then every client must drain and catch up.
    const healed = wire.heal?.()
    if (healed) await healed
    for (const c of clients) c.store.sync.resume()
    await guard(Promise.all(clients.map((c) => c.store.sync.flush())), 'every client to flush')
    const head = (await backend.pull(storeId, 0, 1)).head
    await guard(Promise.all(clients.map((c) => untilHead(c.store, head))), `every client to reach head ${head}`)
    const upstream: { id: string; name: string; args: unknown }[] = []
    for (let since = 0; since < head; ) {
      const page = await backend.pull(storeId, since, 1000)
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
export function untilHead(store: Store<typeof schema>, head: number): Promise<void> {
  return new Promise((resolve) => {
    const stop = store.sync.status.subscribe((s) => {
      if (s.head >= head) {
        queueMicrotask(() => stop())
        resolve()
      }
    })
  })
}
