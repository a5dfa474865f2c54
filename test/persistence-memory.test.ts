import {
  type BootProgress,
  createStore,
  defineEvent,
  defineSchema,
  type LoadedLog,
  localTransport,
  memoryStorage,
  type Schema,
  SchemaError,
  type Storage,
  StorageLockedError,
  type Store,
  type StoreOptions,
  sql,
} from 'tidelog'
import { memoryBackend } from 'tidelog/server'
import { afterEach, describe, expect, it } from 'vitest'
import { freshStoreId, type Todo, type TodoSchema, todoEvents, todoIndexes, todoSchema, todoTables } from './helpers/todo-schema.js'
import { backendLog, converged, logOf, turn, within } from './helpers/wait.js'

const { todoCreated, todoCompleted, todoRenamed, kvSet, noteAdded, filterChanged } = todoSchema.events

const open: Store<any>[] = []
afterEach(async () => {
  await Promise.all(open.splice(0).map((s) => s.close()))
})
async function openStore<S extends Schema<any> = TodoSchema>(options: Partial<StoreOptions<S>> & { storage: Storage; storeId: string }) {
  const s = await createStore<S>({ schema: todoSchema as unknown as S, ...options })
  open.push(s)
  return s
}
async function closeStore(s: Store<any>) {
  open.splice(open.indexOf(s), 1)
  await s.close()
}

/** memoryStorage() with a record of what each boot loaded, and a switch that skips snapshots. */
function observedStorage() {
  const inner = memoryStorage()
  const loads: LoadedLog[] = []
  const o = {
    loads,
    snapshotsSaved: 0,
    skipSnapshots: false,
    storage: {
      name: 'observed-memory',
      async open(storeId, options) {
        const h = await inner.open(storeId, options)
        return {
          async load() {
            const loaded = await h.load()
            loads.push(loaded)
            return loaded
          },
          append: (records) => h.append(records),
          async saveSnapshot(snapshot) {
            if (o.skipSnapshots) return
            o.snapshotsSaved++
            await h.saveSnapshot(snapshot)
          },
          close: () => h.close(),
        }
      },
    } as Storage,
  }
  return o
}

/** Everything a reopened store must show as before. */
function everything(s: Store<any>) {
  return {
    todos: s.query(sql`SELECT * FROM todos ORDER BY id`).value,
    kv: s.query(sql`SELECT * FROM kv ORDER BY k`).value,
    notes: s.query(sql`SELECT * FROM notes ORDER BY id`).value,
    tags: s.query(sql`SELECT * FROM tags ORDER BY todo_id, tag`).value,
    ui: s.query(sql`SELECT * FROM ui ORDER BY k`).value,
    events: s.events(),
    pending: s.sync.status.value.pending,
    head: s.sync.status.value.head,
  }
}

const idNumber = (id: string) => Number(id.slice(id.lastIndexOf(':') + 1))

describe('memoryStorage(): restart on the same instance', () => {
  it('keeps state, events, pending events, clientId and the id counter', async () => {
    const storage = memoryStorage()
    const storeId = freshStoreId('restart')
    const s1 = await openStore({ storage, storeId })
    s1.commit(todoCreated({ id: 'a', text: 'milk' }), todoCreated({ id: 'b', text: 'eggs' }))
    s1.commit(todoCompleted({ id: 'a' }), kvSet({ k: 'x', v: '1' }), filterChanged({ filter: 'done' }))
    const last = s1.commit(noteAdded({ id: 'n', body: 'note' }))
    await last.persisted
    const before = everything(s1)
    const { clientId, sessionId } = s1
    await closeStore(s1)

    const s2 = await openStore({ storage, storeId })
    expect(s2.clientId).toBe(clientId)
    expect(s2.sessionId).not.toBe(sessionId)
    expect(everything(s2)).toEqual(before)
    expect(before.pending).toBe(5)
    const next = s2.commit(todoRenamed({ id: 'b', text: 'EGGS' }))
    expect(next.event.id).toBe(`${clientId}:7`) // 6 events so far, local ones included
    expect(before.events.map((e) => e.id)).not.toContain(next.event.id)
  })

  it('keeps confirmed and pending events apart, and syncs the pending ones after the reopen', async () => {
    const storage = memoryStorage()
    const backend = memoryBackend()
    const storeId = freshStoreId('pending')
    const s1 = await openStore({ storage, storeId, transport: localTransport(backend) })
    s1.commit(todoCreated({ id: 'a', text: 'milk' }), todoCreated({ id: 'b', text: 'eggs' }))
    await converged(backend, storeId, s1)
    s1.sync.pause()
    s1.commit(todoCompleted({ id: 'a' }))
    s1.commit(todoCreated({ id: 'c', text: 'bread' }))
    const before = everything(s1)
    expect(before.events.map((e) => e.seq)).toEqual([1, 2, null, null])
    await closeStore(s1)

    const offline = await openStore({ storage, storeId })
    expect(everything(offline)).toEqual(before)
    await closeStore(offline)

    const s2 = await openStore({ storage, storeId, transport: localTransport(backend) })
    const log = await converged(backend, storeId, s2)
    expect(log.map((e) => e.id)).toEqual(before.events.map((e) => e.id))
    expect(logOf(s2.events())).toEqual(logOf(log))
    expect(s2.query<Todo>(sql`SELECT id, completed FROM todos ORDER BY id`).value).toEqual([
      { id: 'a', completed: 1 },
      { id: 'b', completed: 0 },
      { id: 'c', completed: 0 },
    ])
  })

  it('syncs events committed with no transport once reopened with one', async () => {
    const storage = memoryStorage()
    const backend = memoryBackend()
    const storeId = freshStoreId('offline-first')
    const s1 = await openStore({ storage, storeId })
    const ids = [
      s1.commit(todoCreated({ id: 'a', text: 'milk' })),
      s1.commit(todoCreated({ id: 'b', text: 'eggs' }), filterChanged({ filter: 'all' })),
    ].flatMap((r) => r.events.filter((e) => e.name !== 'filterChanged').map((e) => e.id))
    await closeStore(s1)
    const s2 = await openStore({ storage, storeId, transport: localTransport(backend) })
    await converged(backend, storeId, s2)
    expect((await backendLog(backend, storeId)).map((e) => e.id)).toEqual(ids)
    expect(s2.query(sql`SELECT v FROM ui`).value).toEqual([{ v: 'all' }])
  })

  it('boots from the snapshot close() took plus the journal records after it', async () => {
    const o = observedStorage()
    const storeId = freshStoreId('snapshot')
    const progress: BootProgress[] = []
    const s1 = await openStore({ storage: o.storage, storeId, onProgress: (p) => progress.push(p) })
    s1.commit(todoCreated({ id: 'a', text: 'milk' }), filterChanged({ filter: 'x' }))
    s1.commit(kvSet({ k: 'k', v: '1' }))
    await closeStore(s1)
    expect(o.snapshotsSaved).toBe(1)
    expect(progress).toContainEqual({ phase: 'snapshot', done: 1, total: 1 })

    const s2 = await openStore({ storage: o.storage, storeId })
    expect(o.loads[1]!.snapshot).toBeDefined()
    expect(o.loads[1]!.records).toEqual([])
    s2.commit(todoCompleted({ id: 'a' }), kvSet({ k: 'k', v: '2' }))
    s2.commit(todoCreated({ id: 'b', text: 'eggs' }), filterChanged({ filter: 'y' }))
    const before = everything(s2)
    o.skipSnapshots = true // this close leaves its records in the journal only
    await closeStore(s2)

    const replayed: BootProgress[] = []
    const s3 = await openStore({ storage: o.storage, storeId, onProgress: (p) => replayed.push(p) })
    const loaded = o.loads[2]!
    expect(loaded.snapshot?.position).toBe(o.loads[1]!.snapshot!.position)
    expect(loaded.records.map((r) => r.t)).toEqual(['commit', 'commit'])
    expect(replayed).toContainEqual({ phase: 'replay', done: 2, total: 2 })
    expect(everything(s3)).toEqual(before)
    const next = s3.commit(noteAdded({ id: 'n', body: 'x' }))
    expect(idNumber(next.event.id)).toBe(8) // 7 events so far, local ones included
  })

  it('replays a journal of syncs, rebases and onConflict changes to the same state', async () => {
    const o = observedStorage()
    o.skipSnapshots = true // boot from the journal alone
    const backend = memoryBackend()
    const storeId = freshStoreId('journal')
    const a = await openStore({ storage: memoryStorage(), storeId, transport: localTransport(backend) })
    const onConflict: StoreOptions<TodoSchema>['onConflict'] = ({ local }) => [
      ...local.filter((e) => e.name !== 'kvSet').map((e) => (e.name === 'todoRenamed' ? { ...e, args: { ...(e.args as object), text: 'merged' } } : e)),
      todoSchema.events.noteAdded({ id: 'from-conflict', body: 'x' }),
    ]
    const b = await openStore({ storage: o.storage, storeId, transport: localTransport(backend), onConflict })
    a.commit(todoCreated({ id: 'x', text: 'start' }), kvSet({ k: 'k', v: 'start' }))
    b.commit(filterChanged({ filter: 'mine' }))
    await converged(backend, storeId, a, b)
    a.sync.pause()
    b.sync.pause()
    a.commit(todoRenamed({ id: 'x', text: 'A' }), kvSet({ k: 'k', v: 'A' }))
    b.commit(todoRenamed({ id: 'x', text: 'B' }))
    b.commit(kvSet({ k: 'k', v: 'B' }), todoCompleted({ id: 'x' }))
    a.sync.resume()
    await within(a.sync.flush(), 'a flush')
    b.sync.resume()
    await converged(backend, storeId, a, b)
    b.sync.pause()
    b.commit(todoCreated({ id: 'y', text: 'pending at close' }))
    const before = everything(b)
    expect(before.todos).toContainEqual({ id: 'x', text: 'merged', completed: 1 })
    expect(before.pending).toBe(1)
    await closeStore(b)

    const again = await openStore({ storage: o.storage, storeId })
    expect(o.loads.at(-1)!.snapshot).toBeUndefined()
    expect(everything(again)).toEqual(before)
    expect(o.snapshotsSaved).toBe(0)
  })

  it('replays a backend reset with re-push from the journal', async () => {
    const o = observedStorage()
    o.skipSnapshots = true
    const storeId = freshStoreId('reset-journal')
    const first = memoryBackend()
    let current = first
    const backend = {
      pull: (id: string, since: number, limit: number) => current.pull(id, since, limit),
      push: (id: string, request: Parameters<typeof first.push>[1]) => current.push(id, request),
      subscribe: (id: string, onHead: (head: number) => void) => current.subscribe(id, onHead),
      close: () => current.close(),
    }
    const s = await openStore({ storage: o.storage, storeId, transport: localTransport(backend) })
    s.commit(todoCreated({ id: 'a', text: 'milk' }), filterChanged({ filter: 'f' }))
    await converged(first, storeId, s)
    const second = memoryBackend()
    current = second
    s.commit(todoCreated({ id: 'b', text: 'eggs' }))
    await within(
      new Promise<void>((resolve) => {
        const stop = s.sync.status.subscribe((st) => st.state === 'error' && (queueMicrotask(() => stop()), resolve()))
      }),
      'the backend reset to be noticed',
    )
    await s.sync.resetToBackend({ repush: true })
    await converged(second, storeId, s)
    const before = everything(s)
    await closeStore(s)
    const again = await openStore({ storage: o.storage, storeId })
    expect(everything(again)).toEqual(before)
  })
})

describe('pending events after a reopen', () => {
  const withIndex = defineSchema({ tables: todoTables, indexes: [...todoIndexes, sql`CREATE INDEX kv_v ON kv(v)`], events: todoEvents() })

  it.each([
    ['a snapshot', 'snapshot'],
    ['the journal alone', 'journal'],
    ['a rebuild under a changed schema', 'rebuild'],
  ] as const)('can still be rolled back by a rebase after booting from %s (I2)', async (_what, mode) => {
    const o = observedStorage()
    o.skipSnapshots = mode === 'journal'
    const backend = memoryBackend()
    const storeId = freshStoreId('undo')
    const a = await openStore({ storage: memoryStorage(), storeId, transport: localTransport(backend) })
    const b = await openStore({ storage: o.storage, storeId, transport: localTransport(backend) })
    a.commit(todoCreated({ id: 'x', text: 'start' }), kvSet({ k: 'k', v: 'start' }), todoCreated({ id: 'gone', text: 'x' }))
    await converged(backend, storeId, a, b)
    b.sync.pause()
    b.commit(todoRenamed({ id: 'x', text: 'B' }), kvSet({ k: 'k', v: 'B' }), todoSchema.events.todoDeleted({ id: 'gone' }))
    b.commit(kvSet({ k: 'only-b', v: 'B' }), todoCreated({ id: 'y', text: 'B' }))
    await closeStore(b)
    a.commit(todoRenamed({ id: 'x', text: 'A' }), kvSet({ k: 'k', v: 'A' }))
    await within(a.sync.flush(), 'a flush')

    // b comes back and drops all its pending events: what is left must be exactly a's state
    const b2 = await openStore<Schema<any>>({
      storage: o.storage,
      storeId,
      schema: mode === 'rebuild' ? withIndex : todoSchema,
      transport: localTransport(backend),
      onConflict: () => [],
    })
    if (mode === 'snapshot') expect(o.loads.at(-1)!.snapshot).toBeDefined()
    if (mode === 'journal') expect(o.loads.at(-1)!.snapshot).toBeUndefined()
    await converged(backend, storeId, a, b2)
    const { events: _e1, ...stateA } = everything(a)
    const { events: _e2, ...stateB } = everything(b2)
    expect(stateB).toEqual({ ...stateA, ui: [] })
    expect(stateB.todos).toContainEqual({ id: 'gone', text: 'x', completed: 0 })
  })

  it('keep the I5 table rules after a reopen', async () => {
    const overlapping = defineSchema({
      tables: todoTables,
      events: {
        ...todoEvents(),
        todoDrafted: defineEvent<{ id: string }>({ local: true, materialize: ({ id }) => sql`INSERT INTO todos (id, text) VALUES (${id}, 'draft')` }),
      },
    })
    for (const skipSnapshots of [false, true]) {
      const o = observedStorage()
      o.skipSnapshots = skipSnapshots
      const storeId = freshStoreId('i5')
      const s1 = await openStore<typeof overlapping>({ storage: o.storage, storeId, schema: overlapping })
      s1.commit(overlapping.events.todoCreated({ id: 'a', text: 'milk' }))
      await closeStore(s1)
      const s2 = await openStore<typeof overlapping>({ storage: o.storage, storeId, schema: overlapping })
      expect(() => s2.commit(overlapping.events.todoDrafted({ id: 'b' }))).toThrow(SchemaError)
      expect(s2.query(sql`SELECT id FROM todos`).value).toEqual([{ id: 'a' }])
    }
  })
})

describe('createStore(): schema changes on reopen', () => {
  async function seeded(storage: Storage, storeId: string) {
    const backend = memoryBackend()
    const s = await openStore({ storage, storeId, transport: localTransport(backend) })
    s.commit(todoCreated({ id: 'a', text: 'milk' }), todoCreated({ id: 'b', text: 'eggs' }))
    s.commit(todoCompleted({ id: 'a' }))
    await converged(backend, storeId, s)
    s.sync.pause()
    s.commit(todoCreated({ id: 'c', text: 'bread' }), filterChanged({ filter: 'open' }))
    const before = everything(s)
    await closeStore(s) // takes a snapshot under the old schema
    return before
  }

  it('rebuilds the state from the eventlog when an index is added, reporting progress', async () => {
    const storage = memoryStorage()
    const storeId = freshStoreId('rebuild')
    const before = await seeded(storage, storeId)
    const withIndex = defineSchema({
      tables: todoTables,
      indexes: [...todoIndexes, sql`CREATE INDEX todos_text ON todos(text)`],
      events: todoEvents(),
    })
    expect(withIndex.hash).not.toBe(todoSchema.hash)
    const progress: BootProgress[] = []
    const s = await openStore<typeof withIndex>({ storage, storeId, schema: withIndex, onProgress: (p) => progress.push(p) })
    expect(progress[0]).toEqual({ phase: 'load', done: 0, total: 1 })
    const rebuild = progress.filter((p) => p.phase === 'rebuild')
    // from nothing to everything, counting at least the 3 confirmed events, never going back
    const total = rebuild[0]!.total
    expect(total).toBeGreaterThanOrEqual(3)
    expect(rebuild[0]).toEqual({ phase: 'rebuild', done: 0, total })
    expect(rebuild.at(-1)).toEqual({ phase: 'rebuild', done: total, total })
    expect(rebuild.every((p, i) => p.total === total && (i === 0 || p.done >= rebuild[i - 1]!.done))).toBe(true)
    expect(everything(s)).toEqual(before)
    // the new index exists in the rebuilt database
    expect(s.query(sql`SELECT name FROM sqlite_schema WHERE name = 'todos_text'`).value).toEqual([{ name: 'todos_text' }])
  })

  it('rebuilds with the new materializers when the schema version is bumped', async () => {
    const storage = memoryStorage()
    const storeId = freshStoreId('version')
    const before = await seeded(storage, storeId)
    const shouting = defineSchema({
      tables: todoTables,
      indexes: todoIndexes,
      version: 1,
      events: {
        ...todoEvents(),
        todoCreated: defineEvent<{ id: string; text: string }>({
          materialize: ({ id, text }) => sql`INSERT INTO todos (id, text) VALUES (${id}, ${text.toUpperCase()})`,
        }),
      },
    })
    const progress: BootProgress[] = []
    const s = await openStore<typeof shouting>({ storage, storeId, schema: shouting, onProgress: (p) => progress.push(p) })
    expect(progress.map((p) => p.phase)).toContain('rebuild')
    expect(s.query(sql`SELECT id, text, completed FROM todos ORDER BY id`).value).toEqual([
      { id: 'a', text: 'MILK', completed: 1 },
      { id: 'b', text: 'EGGS', completed: 0 },
      { id: 'c', text: 'BREAD', completed: 0 }, // pending events are re-materialized too
    ])
    expect(s.query(sql`SELECT v FROM ui`).value).toEqual([{ v: 'open' }]) // and local ones
    expect(s.events()).toEqual(before.events)
    expect(s.sync.status.value).toMatchObject({ pending: 1, head: 3 })
    const next = s.commit(shouting.events.todoCreated({ id: 'd', text: 'x' }))
    expect(idNumber(next.event.id)).toBe(6)
  })

  it('reuses the snapshot when the schema is equal', async () => {
    const o = observedStorage()
    const storeId = freshStoreId('same')
    await seeded(o.storage, storeId)
    const progress: BootProgress[] = []
    await openStore({
      storage: o.storage,
      storeId,
      schema: defineSchema({ tables: todoTables, indexes: todoIndexes, events: todoEvents() }),
      onProgress: (p) => progress.push(p),
    })
    expect(o.loads.at(-1)!.snapshot).toBeDefined()
    expect(progress.map((p) => p.phase)).not.toContain('rebuild')
  })
})

describe('createStore(): storage lock', () => {
  it('fails a second store on the same storage and storeId with StorageLockedError while the first is open', async () => {
    const storage = memoryStorage()
    const storeId = freshStoreId('lock')
    const first = await openStore({ storage, storeId })
    first.commit(todoCreated({ id: 'a', text: 'milk' }))
    const err = await createStore({ schema: todoSchema, storage, storeId }).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(StorageLockedError)
    expect((err as Error).name).toBe('StorageLockedError')
    expect((err as StorageLockedError).code).toBe('storage_locked')
    expect((err as Error).message).toMatch(/waitForLock/)
    // another storeId on the same storage is another log
    const other = await openStore({ storage, storeId: `${storeId}-other` })
    expect(other.events()).toEqual([])
    await closeStore(first)
    const second = await openStore({ storage, storeId })
    expect(second.query(sql`SELECT id FROM todos`).value).toEqual([{ id: 'a' }])
  })

  it('waits for the lock with { waitForLock: true }', async () => {
    const storage = memoryStorage()
    const storeId = freshStoreId('wait')
    const first = await openStore({ storage, storeId })
    first.commit(todoCreated({ id: 'a', text: 'milk' }))
    let opened = false
    const waiting = createStore({ schema: todoSchema, storage, storeId, waitForLock: true }).then((s) => {
      opened = true
      open.push(s)
      return s
    })
    await turn()
    expect(opened).toBe(false)
    await closeStore(first)
    const second = await within(waiting, 'the waiting store')
    expect(second.query(sql`SELECT id FROM todos`).value).toEqual([{ id: 'a' }])
  })

  it('is released when createStore() fails after opening the storage', async () => {
    const storage = memoryStorage()
    const storeId = freshStoreId('release')
    const broken = defineSchema({ tables: { t: sql`CREATE TABLE t (` }, events: {} })
    await expect(createStore({ schema: broken, storage, storeId })).rejects.toBeInstanceOf(SchemaError)
    const s = await openStore({ storage, storeId })
    expect(s.events()).toEqual([])
  })
})

describe('createStore() without a storage', () => {
  // what a store reports of its snapshots, with one due after every record
  async function snapshotPhases(storage: Storage | undefined) {
    const phases: string[] = []
    const s = await createStore({ schema: todoSchema, storeId: freshStoreId('volatile'), storage, snapshotEvery: 1, onProgress: (p) => phases.push(p.phase) })
    const receipts = [todoCreated({ id: 'a', text: 'milk' }), todoCreated({ id: 'b', text: 'eggs' })].map((e) => s.commit(e))
    await within(Promise.all(receipts.map((r) => r.persisted)), 'the receipts to be persisted')
    await new Promise((r) => setTimeout(r, 500)) // past the idle time before a due snapshot
    const rows = s.query<{ id: string }>(sql`SELECT id FROM todos ORDER BY id`).value
    await s.close()
    return { rows, snapshots: phases.filter((p) => p === 'snapshot').length }
  }

  it('keeps no snapshot (nothing could read it back), and its receipts are persisted at once', async () => {
    expect(await snapshotPhases(undefined)).toEqual({ rows: [{ id: 'a' }, { id: 'b' }], snapshots: 0 })
  })

  it('memoryStorage() passed explicitly keeps them, for a store reopened on it', async () => {
    const { rows, snapshots } = await snapshotPhases(memoryStorage())
    expect(rows).toEqual([{ id: 'a' }, { id: 'b' }])
    expect(snapshots).toBeGreaterThan(0)
  })
})
