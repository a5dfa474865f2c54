import {
  BackendResetError,
  ConflictDroppedError,
  type ConflictInfo,
  createStore,
  defineEvent,
  defineSchema,
  localTransport,
  type MaterializeError,
  type Schema,
  type Store,
  StoreClosedError,
  type StoredEvent,
  type StoreOptions,
  type SyncBackend,
  type SyncStatus,
  sql,
  TidelogError,
  TransportError,
} from 'tidelog'
import { memoryBackend } from 'tidelog/server'
import { afterEach, describe, expect, it } from 'vitest'
import { freshStoreId, type Todo, type TodoSchema, todoEvents, todoIndexes, todoSchema, todoTables } from './helpers/todo-schema.js'
import { type Deferred, deferred, swappableBackend, type TransportCall, wrapTransport } from './helpers/transports.js'
import { backendLog, converged, logOf, waitFor, within } from './helpers/wait.js'

const { todoCreated, todoCompleted, todoRenamed, kvSet, noteAdded, filterChanged } = todoSchema.events

const open: Store<any>[] = []
afterEach(async () => {
  await Promise.all(open.splice(0).map((s) => s.close()))
})

/** A store on `backend` (through localTransport unless a transport is given). */
async function client<S extends Schema<any> = TodoSchema>(backend: SyncBackend, storeId: string, options: Partial<StoreOptions<S>> = {}): Promise<Store<S>> {
  const s = await createStore<S>({ schema: todoSchema as unknown as S, storeId, transport: localTransport(backend), ...options })
  open.push(s)
  return s
}

/** Every state table, for comparing clients. */
function stateOf(s: Store<any>) {
  return {
    todos: s.query<Todo>(sql`SELECT * FROM todos ORDER BY id`).value,
    kv: s.query(sql`SELECT * FROM kv ORDER BY k`).value,
    notes: s.query(sql`SELECT * FROM notes ORDER BY id`).value,
    tags: s.query(sql`SELECT * FROM tags ORDER BY todo_id, tag`).value,
  }
}

/** Records every status value a store goes through. */
function statusTrail(s: Store<any>) {
  const trail: SyncStatus[] = []
  const unsubscribe = s.sync.status.subscribe((v) => trail.push(v))
  return { trail, states: () => trail.map((t) => t.state), unsubscribe }
}

describe('store.sync with localTransport + memoryBackend', () => {
  it('status stays synced while the engine re-checks with nothing to push (no flicker)', async () => {
    const backend = memoryBackend()
    const storeId = freshStoreId('flicker')
    let pulled = deferred<void>()
    const t = wrapTransport(localTransport(backend), {
      async pull(request, inner) {
        const res = await inner.pull(request)
        queueMicrotask(() => pulled.resolve())
        return res
      },
    })
    const s = await client(backend, storeId, { transport: t })
    await s.commit(todoCreated({ id: 'a', text: 'milk' })).confirmed
    await s.sync.flush()
    await waitFor(s.sync.status, (st) => st.state === 'synced')
    const trail = statusTrail(s)
    pulled = deferred<void>()
    // a local event wakes the engine once it is durable; there is nothing to push
    await s.commit(filterChanged({ filter: 'done' })).persisted
    await within(pulled.promise, 'the engine to re-check')
    expect(trail.states().filter((x) => x !== 'synced')).toEqual([])
    trail.unsubscribe()
  })

  it('makes two stores converge on the same log and state (I3)', async () => {
    const backend = memoryBackend()
    const storeId = freshStoreId('sync')
    const a = await client(backend, storeId)
    const b = await client(backend, storeId)
    a.commit(todoCreated({ id: 'a', text: 'milk' }))
    b.commit(todoCreated({ id: 'b', text: 'eggs' }), kvSet({ k: 'x', v: 'b' }))
    a.commit(todoCompleted({ id: 'b' }), noteAdded({ id: 'n', body: 'from a' }))
    const log = await converged(backend, storeId, a, b)
    expect(log).toHaveLength(5)
    expect(a.events().map((e) => e.seq)).toEqual([1, 2, 3, 4, 5])
    expect(logOf(a.events())).toEqual(logOf(log))
    expect(logOf(b.events())).toEqual(logOf(log))
    expect(stateOf(a)).toEqual(stateOf(b))
    expect(stateOf(a).todos.map((t) => t.id)).toEqual(['a', 'b'])
  })

  it('pulls before it pushes, and pushes on its confirmed head (S1)', async () => {
    const backend = memoryBackend()
    const storeId = freshStoreId('s1')
    const a = await client(backend, storeId)
    a.commit(todoCreated({ id: 'a', text: 'milk' }), todoCreated({ id: 'b', text: 'eggs' }), todoCompleted({ id: 'a' }))
    await converged(backend, storeId, a)
    await a.close()

    const t = wrapTransport(localTransport(backend))
    const b = await client(backend, storeId, { transport: t })
    b.commit(todoRenamed({ id: 'b', text: 'EGGS' }))
    b.commit(todoCreated({ id: 'c', text: 'bread' }))
    await converged(backend, storeId, b)
    expect(t.calls[0]).toMatchObject({ op: 'pull', since: 0, head: 3 })
    const pushes = t.calls.filter((c) => c.op === 'push')
    expect(pushes.length).toBeGreaterThan(0)
    expect(pushes[0]).toMatchObject({ parentSeq: 3, result: 'pushed' })
    // every push is based on the head the client had confirmed
    for (const p of pushes) expect(p.result).toBe('pushed')
    expect(b.query(sql`SELECT id, text, completed FROM todos ORDER BY id`).value).toEqual([
      { id: 'a', text: 'milk', completed: 1 },
      { id: 'b', text: 'EGGS', completed: 0 },
      { id: 'c', text: 'bread', completed: 0 },
    ])
  })

  it('rebases offline commits and converges on the backend order', async () => {
    const backend = memoryBackend()
    const storeId = freshStoreId('rebase')
    const a = await client(backend, storeId)
    const b = await client(backend, storeId)
    a.commit(todoCreated({ id: 'x', text: 'shared' }))
    await converged(backend, storeId, a, b)
    a.sync.pause()
    b.sync.pause()
    a.commit(todoCreated({ id: 'a1', text: 'a' }), kvSet({ k: 'who', v: 'a' }))
    a.commit(todoRenamed({ id: 'x', text: 'by a' }))
    b.commit(todoCreated({ id: 'b1', text: 'b' }))
    b.commit(kvSet({ k: 'who', v: 'b' }), todoCompleted({ id: 'x' }))
    a.sync.resume()
    b.sync.resume()
    const log = await converged(backend, storeId, a, b)
    expect(logOf(a.events())).toEqual(logOf(log))
    expect(logOf(b.events())).toEqual(logOf(log))
    expect(stateOf(a)).toEqual(stateOf(b))
    // each client's events keep their own order inside the total order
    const ids = log.map((e) => e.id)
    for (const [s, count] of [
      [a, 4],
      [b, 3],
    ] as const) {
      const own = ids.filter((id) => id.startsWith(`${s.clientId}:`))
      expect(own).toEqual(
        s
          .events()
          .filter((e) => e.clientId === s.clientId)
          .map((e) => e.id),
      )
      expect(own.map((id) => Number(id.split(':')[1]))).toEqual(Array.from({ length: count }, (_, i) => i + 1))
    }
    const x = stateOf(a).todos.find((t) => t.id === 'x')
    expect(x).toMatchObject({ text: 'by a', completed: 1 })
  })

  it('rebases after a rejected push and pushes again at once (S2, S3)', async () => {
    const backend = memoryBackend()
    const storeId = freshStoreId('s2')
    const a = await client(backend, storeId)
    let gate: { reached: Deferred; release: Deferred } | undefined
    let muted = false
    const t = wrapTransport(localTransport(backend), {
      async pull(request, inner) {
        const res = await inner.pull(request)
        const g = gate
        if (g) {
          gate = undefined
          g.reached.resolve()
          await g.release.promise // answer with what was true before a's push
        }
        return res
      },
      onEvents(events, head, deliver) {
        if (!muted) deliver(events, head)
      },
    })
    const seen: ConflictInfo[] = []
    const b = await client(backend, storeId, { transport: t, onConflict: (info) => (seen.push(info), info.local) })
    await converged(backend, storeId, a, b)
    const trail = statusTrail(b)

    const held = { reached: deferred(), release: deferred() }
    gate = held
    muted = true
    const rb = b.commit(todoCreated({ id: 'b1', text: 'b' }), kvSet({ k: 'who', v: 'b' }))
    await within(held.reached.promise, "b's pull")
    const ra = a.commit(todoCreated({ id: 'a1', text: 'a' }), kvSet({ k: 'who', v: 'a' }))
    await within(ra.confirmed, 'a confirmed')
    muted = false
    held.release.resolve()

    await expect(within(rb.confirmed, 'b confirmed')).resolves.toBe(4)
    const log = await converged(backend, storeId, a, b)
    const pushes = t.calls.filter((c) => c.op === 'push')
    expect(pushes.map((p) => [p.parentSeq, p.result])).toEqual([
      [0, 'rejected'],
      [2, 'pushed'],
    ])
    // the rebase ran onConflict with the surviving local events on top of upstream
    expect(seen).toHaveLength(1)
    expect(seen[0]!.local.map((e) => e.id)).toEqual(rb.events.map((e) => e.id))
    expect(seen[0]!.upstream.map((e) => [e.seq, e.id])).toEqual(ra.events.map((e, i) => [i + 1, e.id]))
    expect(trail.states()).not.toContain('error')
    trail.unsubscribe()
    expect(logOf(b.events())).toEqual(logOf(log))
    expect(stateOf(a)).toEqual(stateOf(b))
    expect(stateOf(b).kv).toEqual([{ k: 'who', v: 'b' }])
  })

  it('lets the write later in the total order win on every client (last write wins)', async () => {
    const backend = memoryBackend()
    const storeId = freshStoreId('lww')
    const a = await client(backend, storeId)
    const b = await client(backend, storeId)
    a.commit(todoCreated({ id: 'x', text: 'start' }), kvSet({ k: 'k', v: 'start' }))
    await converged(backend, storeId, a, b)
    a.sync.pause()
    b.sync.pause()
    a.commit(todoRenamed({ id: 'x', text: 'A' }), kvSet({ k: 'k', v: 'A' }))
    b.commit(todoRenamed({ id: 'x', text: 'B' }), kvSet({ k: 'k', v: 'B' }))
    a.sync.resume()
    await within(a.sync.flush(), 'a flush')
    b.sync.resume()
    const log = await converged(backend, storeId, a, b)
    expect(log.at(-1)!.clientId).toBe(b.clientId)
    for (const s of [a, b]) {
      expect(s.queryOne<Todo>(sql`SELECT text FROM todos WHERE id = 'x'`).value).toEqual({ text: 'B' })
      expect(s.queryOne(sql`SELECT v FROM kv WHERE k = 'k'`).value).toEqual({ v: 'B' })
    }
  })
  it('pulls a long log page by page on first sync', async () => {
    const backend = memoryBackend()
    const storeId = freshStoreId('pages')
    // 2 500 events straight into the backend: more than two pull pages
    for (let batch = 0; batch < 5; batch++) {
      const events = Array.from({ length: 500 }, (_, i) => {
        const n = batch * 500 + i
        return { id: `seed:${n + 1}`, name: 'noteAdded', args: { id: `n${n}`, body: 'x' }, clientId: 'seed', sessionId: 's', createdAt: 0 }
      })
      expect((await backend.push(storeId, { parentSeq: batch * 500, events })).type).toBe('pushed')
    }
    const t = wrapTransport(localTransport(backend))
    const s = await client(backend, storeId, { transport: t })
    s.commit(todoCreated({ id: 'a', text: 'milk' }))
    const log = await converged(backend, storeId, s)
    expect(log).toHaveLength(2501)
    expect(t.calls.filter((c): c is Extract<TransportCall, { op: 'pull' }> => c.op === 'pull' && c.since < 2500).map((c) => c.since)).toEqual([0, 1000, 2000])
    expect(s.query(sql`SELECT count(*) AS n FROM notes`).value).toEqual([{ n: 2500 }])
    expect(s.events().at(-1)).toMatchObject({ seq: 2501, name: 'todoCreated' })
  })

  it('drops a pending event that no longer applies after a rebase; its receipt rejects with MaterializeError', async () => {
    const backend = memoryBackend()
    const storeId = freshStoreId('no-longer')
    const a = await client(backend, storeId)
    const warnings: string[] = []
    const b = await client(backend, storeId, { onWarning: (m) => warnings.push(m) })
    a.sync.pause()
    b.sync.pause()
    a.commit(todoCreated({ id: 'x', text: 'from a' }), todoCreated({ id: 'z', text: 'from a' }))
    const clash = b.commit(todoCreated({ id: 'x', text: 'from b' })) // same primary key
    const lateReader = b.commit(todoCreated({ id: 'z', text: 'from b' })) // its `confirmed` is read only afterwards
    const fine = b.commit(todoCreated({ id: 'y', text: 'from b' }))
    const clashConfirmed = clash.confirmed
    a.sync.resume()
    await within(a.sync.flush(), 'a flush')
    b.sync.resume()
    const log = await converged(backend, storeId, a, b)
    const err = await clashConfirmed.catch((e: unknown) => e)
    expect((err as Error).name).toBe('MaterializeError')
    expect((err as MaterializeError).eventId).toBe(clash.event.id)
    await expect(fine.confirmed).resolves.toBe(3)
    // a receipt read after the drop names the same cause, and the app heard of it through onWarning
    const late = await lateReader.confirmed.catch((e: unknown) => e)
    expect((late as Error).name).toBe('MaterializeError')
    expect(warnings.filter((w) => w.includes(clash.event.id) || w.includes(lateReader.event.id))).toHaveLength(2)
    expect(log.map((e) => e.id)).toEqual([a.events()[0]!.id, a.events()[1]!.id, fine.event.id])
    expect(stateOf(b)).toEqual(stateOf(a))
    expect(b.queryOne(sql`SELECT text FROM todos WHERE id = 'x'`).value).toEqual({ text: 'from a' })
  })
})

describe('StoreOptions.onConflict', () => {
  /** a and b share a synced row, then both change it offline; a gets in first. */
  async function conflict(onConflict: StoreOptions<TodoSchema>['onConflict']) {
    const backend = memoryBackend()
    const storeId = freshStoreId('conflict')
    const a = await client(backend, storeId)
    const b = await client(backend, storeId, { onConflict })
    a.commit(todoCreated({ id: 'x', text: 'start' }), kvSet({ k: 'k', v: 'start' }))
    await converged(backend, storeId, a, b)
    a.sync.pause()
    b.sync.pause()
    const ra = a.commit(todoRenamed({ id: 'x', text: 'A' }), kvSet({ k: 'k', v: 'A' }))
    const rename = b.commit(todoRenamed({ id: 'x', text: 'B' }))
    const set = b.commit(kvSet({ k: 'k', v: 'B' }))
    const note = b.commit(noteAdded({ id: 'n', body: 'b' }))
    a.sync.resume()
    await within(a.sync.flush(), 'a flush')
    return { backend, storeId, a, b, ra, rename, set, note }
  }

  it('receives the surviving local events and the upstream events', async () => {
    const seen: ConflictInfo[] = []
    const { backend, storeId, a, b, ra, rename, set, note } = await conflict((info) => (seen.push(structuredClone(info)), info.local))
    b.sync.resume()
    await converged(backend, storeId, a, b)
    expect(seen).toHaveLength(1)
    const { local, upstream } = seen[0]!
    expect(local.map((e) => e.id)).toEqual([rename.event.id, set.event.id, note.event.id])
    expect(local[0]).toMatchObject({ name: 'todoRenamed', args: { id: 'x', text: 'B' }, clientId: b.clientId, sessionId: b.sessionId })
    expect(local[0]).not.toHaveProperty('seq')
    expect(upstream.map((e) => ({ seq: e.seq, id: e.id, name: e.name }))).toEqual([
      { seq: 3, id: ra.events[0]!.id, name: 'todoRenamed' },
      { seq: 4, id: ra.events[1]!.id, name: 'kvSet' },
    ])
  })

  it('can drop events: their receipts reject with ConflictDroppedError and they are never sent', async () => {
    const { backend, storeId, a, b, rename, set, note } = await conflict(({ local }) => local.filter((e) => e.name === 'noteAdded'))
    const renameConfirmed = rename.confirmed // read before the rebase
    b.sync.resume()
    const log = await converged(backend, storeId, a, b)
    const err = await renameConfirmed.catch((e: unknown) => e)
    expect(err).toBeInstanceOf(ConflictDroppedError)
    expect((err as Error).name).toBe('ConflictDroppedError')
    expect((err as ConflictDroppedError).eventId).toBe(rename.event.id)
    expect((err as Error).message).toBe(`Event ${rename.event.id} was dropped by onConflict; it will not be synced.`)
    // read only after the drop, too
    await expect(set.confirmed).rejects.toMatchObject({ name: 'ConflictDroppedError' })
    await expect(note.confirmed).resolves.toBe(5)
    expect(log.map((e) => e.id)).not.toContain(rename.event.id)
    expect(log.map((e) => e.id)).not.toContain(set.event.id)
    // the dropped writes were undone (I2): b shows a's values, also in the WITHOUT ROWID table
    expect(stateOf(b)).toEqual(stateOf(a))
    expect(b.queryOne(sql`SELECT text FROM todos WHERE id = 'x'`).value).toEqual({ text: 'A' })
    expect(b.queryOne(sql`SELECT v FROM kv WHERE k = 'k'`).value).toEqual({ v: 'A' })
    expect(logOf(b.events())).toEqual(logOf(log))
  })

  it('can rewrite args and add new events', async () => {
    const { backend, storeId, a, b, rename, note } = await conflict(({ local, upstream }) => [
      ...local.map((e) => (e.name === 'todoRenamed' ? { ...e, args: { ...(e.args as object), text: `B after ${upstream.length}` } } : e)),
      todoSchema.events.tagAdded({ todoId: 'x', tag: 'merged' }),
    ])
    b.sync.resume()
    const log = await converged(backend, storeId, a, b)
    const renamed = log.find((e) => e.id === rename.event.id)!
    expect(renamed.args).toEqual({ id: 'x', text: 'B after 2' })
    await expect(rename.confirmed).resolves.toBe(renamed.seq)
    await expect(note.confirmed).resolves.toBe(log.find((e) => e.id === note.event.id)!.seq)
    const added = log.at(-1)!
    expect(added).toMatchObject({ name: 'tagAdded', clientId: b.clientId, args: { todoId: 'x', tag: 'merged' } })
    expect(new Set(log.map((e) => e.id)).size).toBe(log.length)
    for (const s of [a, b]) {
      expect(s.queryOne(sql`SELECT text FROM todos WHERE id = 'x'`).value).toEqual({ text: 'B after 2' })
      expect(s.query(sql`SELECT tag FROM tags`).value).toEqual([{ tag: 'merged' }])
    }
    // a new id from b's counter that does not collide with b's other events
    b.sync.pause()
    const next = b.commit(noteAdded({ id: 'n2', body: 'later' }))
    expect(log.map((e) => e.id)).not.toContain(next.event.id)
  })
})

describe('store.sync: retries and gaps', () => {
  it('does not duplicate events when a push answer is lost and retried (I4, S4)', async () => {
    const backend = memoryBackend()
    const storeId = freshStoreId('retry')
    let lose = true
    const t = wrapTransport(localTransport(backend), {
      async push(request, inner) {
        const res = await inner.push(request) // the backend appends...
        if (lose && res.type === 'pushed') {
          lose = false
          throw new TransportError('connection lost before the answer arrived') // ...but the answer is lost
        }
        return res
      },
    })
    const s = await client(backend, storeId, { transport: t })
    const trail = statusTrail(s)
    const r1 = s.commit(todoCreated({ id: 'a', text: 'milk' }), todoCreated({ id: 'b', text: 'eggs' }))
    const r2 = s.commit(todoCompleted({ id: 'a' }))
    const log = await converged(backend, storeId, s)
    expect(lose).toBe(false)
    expect(log.map((e) => e.id)).toEqual([...r1.events, ...r2.events].map((e) => e.id))
    expect(new Set(log.map((e) => e.id)).size).toBe(log.length)
    expect(logOf(s.events())).toEqual(logOf(log))
    await expect(r1.confirmed).resolves.toBe(2)
    await expect(r2.confirmed).resolves.toBe(3)
    // the failure was reported (S4), then sync recovered
    const failed = trail.trail.find((st) => st.state === 'error')
    expect(failed?.error?.name).toBe('TransportError')
    expect(trail.states().at(-1)).toBe('synced')
    expect(s.sync.status.value.error).toBeUndefined()
    trail.unsubscribe()
  })

  it('pulls again when a live notification was lost (S3: gap detection)', async () => {
    const backend = memoryBackend()
    const storeId = freshStoreId('gap')
    const a = await client(backend, storeId)
    let dropOne = true
    const dropped = deferred<number>()
    const t = wrapTransport(localTransport(backend), {
      onEvents(events, head, deliver) {
        if (dropOne && events.length) {
          dropOne = false
          dropped.resolve(events[0]!.seq)
          return
        }
        deliver(events, head)
      },
    })
    const b = await client(backend, storeId, { transport: t })
    await converged(backend, storeId, a, b)
    a.commit(todoCreated({ id: 'a', text: 'milk' }))
    expect(await within(dropped.promise, 'the lost notification')).toBe(1)
    expect(b.sync.status.value.head).toBe(0)
    a.commit(todoCreated({ id: 'b', text: 'eggs' })) // arrives as seq 2 at head 0: a gap
    const log = await converged(backend, storeId, a, b)
    expect(log).toHaveLength(2)
    expect(logOf(b.events())).toEqual(logOf(log))
    expect(stateOf(b)).toEqual(stateOf(a))
  })
})

describe('store.sync', () => {
  it('status goes connecting → syncing → synced and reports pending and head', async () => {
    const backend = memoryBackend()
    const storeId = freshStoreId('status')
    const connected = deferred()
    const t = wrapTransport(localTransport(backend), {
      async connect(handlers, inner) {
        await connected.promise
        return inner.connect(handlers)
      },
    })
    const s = await client(backend, storeId, { transport: t })
    const trail = statusTrail(s)
    expect(s.sync.status.value).toEqual({ state: 'connecting', pending: 0, head: 0 })
    s.commit(todoCreated({ id: 'a', text: 'milk' }), filterChanged({ filter: 'all' }))
    expect(s.sync.status.value).toMatchObject({ state: 'connecting', pending: 1, head: 0 }) // local events are not pending
    connected.resolve()
    await waitFor(s.sync.status, (st) => st.state === 'synced', 'synced')
    expect(s.sync.status.value).toEqual({ state: 'synced', pending: 0, head: 1 })
    const states = trail.states()
    expect(states[0]).toBe('connecting')
    expect(states.indexOf('syncing')).toBeGreaterThan(0)
    expect(states.at(-1)).toBe('synced')

    s.sync.pause()
    await waitFor(s.sync.status, (st) => st.state === 'offline', 'offline')
    s.commit(todoCompleted({ id: 'a' }))
    s.commit(todoRenamed({ id: 'a', text: 'MILK' }))
    expect(s.sync.status.value).toMatchObject({ state: 'offline', pending: 2, head: 1 })
    s.sync.resume()
    await waitFor(s.sync.status, (st) => st.state === 'synced' && st.pending === 0, 'synced again')
    expect(s.sync.status.value).toEqual({ state: 'synced', pending: 0, head: 3 })
    trail.unsubscribe()
  })

  it('status is offline without a transport and counts pending events', async () => {
    const s = await createStore({ schema: todoSchema, storeId: freshStoreId('offline') })
    open.push(s)
    s.commit(todoCreated({ id: 'a', text: 'milk' }))
    expect(s.sync.status.value).toEqual({ state: 'offline', pending: 1, head: 0 })
    const err = await s.sync.flush().catch((e: unknown) => e)
    expect(err).toBeInstanceOf(TidelogError)
    expect((err as TidelogError).code).toBe('no_transport')
    s.sync.pause() // harmless without a transport
    s.sync.resume()
  })

  it('flush() resolves once every pending event is confirmed', async () => {
    const backend = memoryBackend()
    const storeId = freshStoreId('flush')
    const s = await client(backend, storeId)
    await expect(s.sync.flush()).resolves.toBeUndefined() // nothing pending
    const receipts = [
      s.commit(todoCreated({ id: 'a', text: 'milk' })),
      s.commit(todoCreated({ id: 'b', text: 'eggs' }), filterChanged({ filter: 'x' })),
      s.commit(todoCompleted({ id: 'a' }), todoCompleted({ id: 'b' })),
    ]
    await within(s.sync.flush(), 'flush')
    expect(s.sync.status.value.pending).toBe(0)
    expect(s.events().map((e) => e.seq)).toEqual([1, 2, 3, 4])
    expect(await Promise.all(receipts.map((r) => r.confirmed))).toEqual([1, 2, 4])
    expect((await backendLog(backend, storeId)).map((e) => e.id)).toEqual(s.events().map((e) => e.id))
  })

  it('flush() rejects with StoreClosedError when the store closes first', async () => {
    const backend = memoryBackend()
    const s = await client(backend, freshStoreId('flush-close'))
    s.sync.pause()
    s.commit(todoCreated({ id: 'a', text: 'milk' }))
    const flushing = s.sync.flush()
    await s.close()
    await expect(flushing).rejects.toBeInstanceOf(StoreClosedError)
  })

  it('pause() keeps commits pending and ignores upstream; resume() syncs both ways', async () => {
    const backend = memoryBackend()
    const storeId = freshStoreId('pause')
    const heard = deferred()
    const t = wrapTransport(localTransport(backend), {
      onEvents(events, head, deliver) {
        heard.resolve()
        deliver(events, head)
      },
    })
    const a = await client(backend, storeId, { transport: t })
    const b = await client(backend, storeId)
    await converged(backend, storeId, a, b)
    a.sync.pause()
    await waitFor(a.sync.status, (st) => st.state === 'offline', 'offline')
    const ra = a.commit(todoCreated({ id: 'a', text: 'milk' }))
    b.commit(todoCreated({ id: 'b', text: 'eggs' }))
    await within(b.sync.flush(), 'b flush')
    await within(heard.promise, 'a live notification reaching a')
    expect(a.sync.status.value).toMatchObject({ state: 'offline', head: 0, pending: 1 })
    expect((await backendLog(backend, storeId)).map((e) => e.id)).toEqual([b.events()[0]!.id])
    expect(a.query(sql`SELECT id FROM todos`).value).toEqual([{ id: 'a' }])
    a.sync.resume()
    await expect(within(ra.confirmed, 'a confirmed')).resolves.toBe(2)
    await converged(backend, storeId, a, b)
    expect(stateOf(a)).toEqual(stateOf(b))
  })
})

describe('StoreOptions.onUnknownEvent: unknown event names', () => {
  const newerSchema = defineSchema({
    tables: todoTables,
    indexes: todoIndexes,
    events: {
      ...todoEvents(),
      todoStarred: defineEvent<{ id: string }>({ materialize: ({ id }) => sql`INSERT INTO notes (id, body) VALUES (${'star-' + id}, 'starred')` }),
      todoArchived: defineEvent<{ id: string }>({ materialize: ({ id }) => sql`DELETE FROM todos WHERE id = ${id}` }),
    },
  })

  it('are kept in the log, synced on, not materialized, and reported once per name', async () => {
    const backend = memoryBackend()
    const storeId = freshStoreId('unknown')
    const unknown: StoredEvent[] = []
    const older = await client(backend, storeId, { onUnknownEvent: (e) => unknown.push(e) })
    const newer = await client<typeof newerSchema>(backend, storeId, { schema: newerSchema })
    const ev = newerSchema.events
    newer.commit(ev.todoCreated({ id: 'a', text: 'milk' }), ev.todoStarred({ id: 'a' }))
    newer.commit(ev.todoStarred({ id: 'b' }), ev.todoArchived({ id: 'a' }), ev.todoCreated({ id: 'c', text: 'bread' }))
    await converged(backend, storeId, older, newer)

    expect(older.events().map((e) => e.name)).toEqual(['todoCreated', 'todoStarred', 'todoStarred', 'todoArchived', 'todoCreated'])
    expect(unknown.map((e) => e.name)).toEqual(['todoStarred', 'todoArchived'])
    expect(unknown[0]).toMatchObject({ name: 'todoStarred', seq: 2, args: { id: 'a' } })
    // not materialized on the older client
    expect(older.query(sql`SELECT id FROM todos ORDER BY id`).value).toEqual([{ id: 'a' }, { id: 'c' }])
    expect(older.query(sql`SELECT * FROM notes`).value).toEqual([])
    expect(newer.query(sql`SELECT id FROM todos ORDER BY id`).value).toEqual([{ id: 'c' }])

    // the older client keeps syncing on top of them, also through a rebase
    newer.sync.pause()
    older.sync.pause()
    newer.commit(ev.todoStarred({ id: 'c' }))
    older.commit(todoCompleted({ id: 'c' }))
    newer.sync.resume()
    await within(newer.sync.flush(), 'newer flush')
    older.sync.resume()
    const log = await converged(backend, storeId, older, newer)
    expect(logOf(older.events())).toEqual(logOf(log))
    expect(unknown).toHaveLength(2)

    // a newer client that syncs later materializes them from the backend's copy
    const later = await client<typeof newerSchema>(backend, storeId, { schema: newerSchema })
    await converged(backend, storeId, later)
    expect(later.query(sql`SELECT id FROM notes ORDER BY id`).value).toEqual([{ id: 'star-a' }, { id: 'star-b' }, { id: 'star-c' }])
    expect(stateOf(later)).toEqual(stateOf(newer))
  })
})

describe('rebase rollback (I2) with more SQLite features', () => {
  /** b commits offline, a gets in first, b rebases; returns both stores once converged. */
  async function raced<S extends Schema<any>>(schema: S, bOffline: (b: Store<S>) => void, aOnline: (a: Store<S>) => void) {
    const backend = memoryBackend()
    const storeId = freshStoreId('i2')
    const a = await client<S>(backend, storeId, { schema })
    const b = await client<S>(backend, storeId, { schema })
    await converged(backend, storeId, a, b)
    b.sync.pause()
    bOffline(b)
    aOnline(a)
    await within(a.sync.flush(), 'a flush')
    b.sync.resume()
    await converged(backend, storeId, a, b)
    return { a, b }
  }

  // BUG: rolling back a pending INSERT runs "DELETE FROM todos ...", which fires the schema's own
  // AFTER DELETE trigger, while the trigger's earlier write is also undone from the undo log:
  // the counter is decremented twice, and b ends with n = 2 for 3 todos (a has n = 3).
  it('undoes writes made by schema triggers exactly once', async () => {
    const schema = defineSchema({
      tables: {
        todos: todoTables.todos,
        stats: sql`CREATE TABLE stats (k TEXT PRIMARY KEY, n INTEGER NOT NULL)`,
      },
      indexes: [
        sql`INSERT INTO stats VALUES ('todos', 0)`,
        sql`CREATE TRIGGER todos_ins AFTER INSERT ON todos BEGIN UPDATE stats SET n = n + 1 WHERE k = 'todos'; END`,
        sql`CREATE TRIGGER todos_del AFTER DELETE ON todos BEGIN UPDATE stats SET n = n - 1 WHERE k = 'todos'; END`,
      ],
      events: { todoCreated: todoEvents().todoCreated },
    })
    const { a, b } = await raced(
      schema,
      (b) => b.commit(schema.events.todoCreated({ id: 'b1', text: 'b' }), schema.events.todoCreated({ id: 'b2', text: 'b' })),
      (a) => a.commit(schema.events.todoCreated({ id: 'a1', text: 'a' })),
    )
    for (const s of [a, b]) {
      expect(s.queryOne(sql`SELECT count(*) AS c FROM todos`).value).toEqual({ c: 3 })
      expect(s.queryOne(sql`SELECT n FROM stats`).value).toEqual({ n: 3 })
    }
  })

  // BUG: sqlite_sequence is not covered by the undo log, so a rolled-back AUTOINCREMENT insert
  // still advances the sequence: a has ids 1 (a's) and 2 (b's), b has 2 (a's) and 3 (b's).
  it('gives AUTOINCREMENT rows the same ids on every client', async () => {
    const schema = defineSchema({
      tables: { items: sql`CREATE TABLE items (id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL)` },
      events: { itemAdded: defineEvent<{ name: string }>({ materialize: ({ name }) => sql`INSERT INTO items (name) VALUES (${name})` }) },
    })
    const { a, b } = await raced(
      schema,
      (b) => b.commit(schema.events.itemAdded({ name: 'from b' })),
      (a) => a.commit(schema.events.itemAdded({ name: 'from a' })),
    )
    const items = sql`SELECT id, name FROM items ORDER BY id`
    expect(a.query(items).value).toEqual([
      { id: 1, name: 'from a' },
      { id: 2, name: 'from b' },
    ])
    expect(b.query(items).value).toEqual(a.query(items).value)
  })
})

describe('store.sync.resetToBackend(): backend reset (S5)', () => {
  async function resetScenario() {
    const first = memoryBackend()
    const backend = swappableBackend(first)
    const storeId = freshStoreId('reset')
    const a = await client(backend, storeId)
    const b = await client(first, storeId)
    a.commit(todoCreated({ id: 'a1', text: 'a' }), filterChanged({ filter: 'mine' }))
    b.commit(todoCreated({ id: 'b1', text: 'b' }))
    a.commit(todoCreated({ id: 'a2', text: 'a' }))
    await converged(first, storeId, a, b)
    const fresh = memoryBackend()
    backend.current = fresh // same storeId, a new log with a new backendId
    const pending = a.commit(todoCreated({ id: 'a3', text: 'a' }))
    const status = await waitFor(a.sync.status, (st) => st.state === 'error', 'the reset to be noticed')
    return { a, fresh, storeId, pending, status }
  }

  it('stops sync with BackendResetError when the backendId changes', async () => {
    const { a, fresh, storeId, status } = await resetScenario()
    expect(status.error).toBeInstanceOf(BackendResetError)
    expect(status.error!.name).toBe('BackendResetError')
    expect((status.error as BackendResetError).code).toBe('backend_reset')
    expect(status.error!.message).toMatch(/resetToBackend/)
    expect(status.pending).toBe(1)
    // nothing was pushed onto the new log
    expect(await backendLog(fresh, storeId)).toEqual([])
    expect(a.query(sql`SELECT id FROM todos ORDER BY id`).value).toEqual([{ id: 'a1' }, { id: 'a2' }, { id: 'a3' }, { id: 'b1' }])
  })

  it("resetToBackend({ repush: true }) pushes this client's own events onto the new log", async () => {
    const { a, fresh, storeId, pending } = await resetScenario()
    const pendingConfirmed = pending.confirmed // read before the reset
    await a.sync.resetToBackend({ repush: true })
    const log = await converged(fresh, storeId, a)
    expect(log.map((e) => (e.args as { id: string }).id)).toEqual(['a1', 'a2', 'a3'])
    expect(log.every((e) => e.clientId === a.clientId)).toBe(true)
    expect(logOf(a.events())).toEqual(logOf(log))
    expect(a.query(sql`SELECT id FROM todos ORDER BY id`).value).toEqual([{ id: 'a1' }, { id: 'a2' }, { id: 'a3' }])
    expect(a.query(sql`SELECT v FROM ui`).value).toEqual([{ v: 'mine' }]) // local events survive
    expect(a.sync.status.value).toEqual({ state: 'synced', pending: 0, head: 3 })
    await expect(within(pendingConfirmed, 'confirmed of the re-pushed event')).resolves.toBe(3)
  })

  // BUG (minor): a receipt read only after a reset + re-push looks for its event above
  // the head it was committed at; re-pushed onto the new log it got a lower seq, so the
  // receipt rejects with ConflictDroppedError although the event was confirmed.
  it('a receipt first read after the re-push resolves with the new seq', async () => {
    const { a, fresh, storeId, pending } = await resetScenario()
    await a.sync.resetToBackend({ repush: true })
    await converged(fresh, storeId, a)
    await expect(within(pending.confirmed, 'confirmed read after the re-push')).resolves.toBe(3)
  })

  // BUG: events dropped by resetToBackend({ repush: false }) leave a receipt read before the
  // reset pending until close(), while the same receipt read after the reset rejects at once.
  it('resetToBackend({ repush: false }) settles the receipts of the dropped events', async () => {
    const { a, fresh, storeId, pending } = await resetScenario()
    const confirmed = pending.confirmed
    await a.sync.resetToBackend({ repush: false })
    await converged(fresh, storeId, a)
    await expect(within(confirmed, "the dropped event's receipt", 500)).rejects.toBeInstanceOf(TidelogError)
    await expect(confirmed).rejects.toMatchObject({
      name: 'ConflictDroppedError',
      message: expect.stringContaining('dropped by sync.resetToBackend({ repush: false })'),
    })
  })

  it("resetToBackend({ repush: false }) adopts the new log and drops this client's events", async () => {
    const { a, fresh, storeId, pending } = await resetScenario()
    const todos = a.query(sql`SELECT id FROM todos`)
    const seen: unknown[] = []
    const unsubscribe = todos.subscribe((v) => seen.push(v))
    await a.sync.resetToBackend({ repush: false })
    expect(seen.at(-1)).toEqual([]) // live queries follow the reset
    unsubscribe()
    await converged(fresh, storeId, a)
    expect(await backendLog(fresh, storeId)).toEqual([])
    expect(a.events()).toEqual([])
    expect(a.query(sql`SELECT id FROM todos`).value).toEqual([])
    expect(a.query(sql`SELECT v FROM ui`).value).toEqual([{ v: 'mine' }])
    await expect(pending.confirmed).rejects.toBeInstanceOf(TidelogError)
  })
})

describe('store.sync.flush(): liveness (S2)', () => {
  /**
   * Two busy clients commit and sync every couple of ms while `slow` (paused, holding pending events)
   * resumes, until it drained them; the busy clients stop however that ends.
   */
  async function drainUnderLoad(busy: Store[], slow: Store, what: string, commit: (p: Store, n: number, i: number) => void) {
    await underLoad(busy, commit, () => {
      slow.sync.resume()
      return within(slow.sync.flush(), what, 20_000)
    })
  }

  /** Runs `during` once the busy clients commit and sync every couple of ms; they stop however it ends. */
  async function underLoad<T>(busy: Store[], commit: (p: Store, n: number, i: number) => void, during: () => Promise<T>): Promise<T> {
    let stop = false
    let rounds = 0
    const warm = deferred()
    const producers = busy.map(async (p, n) => {
      let i = 0
      while (!stop) {
        commit(p, n, i++)
        await p.sync.flush()
        if (++rounds === 20) warm.resolve()
        await new Promise((resolve) => setTimeout(resolve, 2)) // load generation: a commit every couple of ms
      }
    })
    try {
      await within(warm.promise, 'the busy clients to get going')
      return await during()
    } finally {
      stop = true
      await Promise.all(producers)
    }
  }
  it('drains 200 pending events while two other clients commit and sync every couple of ms', async () => {
    const backend = memoryBackend()
    const storeId = freshStoreId('live')
    const busy = [await client(backend, storeId), await client(backend, storeId)]
    const slow = await client(backend, storeId)
    slow.sync.pause()
    const receipts = []
    for (let i = 0; i < 200; i++) receipts.push(slow.commit(kvSet({ k: `slow-${i % 20}`, v: String(i) })))
    await drainUnderLoad(busy, slow, 'the slow client to drain its 200 pending events', (p, n, i) =>
      p.commit(noteAdded({ id: `p${n}-${i}`, body: 'x' }), kvSet({ k: `slow-${(i + 1) % 20}`, v: `busy ${n}` })),
    )
    const log = await converged(backend, storeId, ...busy, slow)
    const slowIds = log.filter((e) => e.clientId === slow.clientId).map((e) => e.id)
    expect(slowIds).toEqual(receipts.map((r) => r.event.id))
    expect(log.length).toBeGreaterThanOrEqual(200 + 2 * 20)
    expect(new Set(log.map((e) => e.id)).size).toBe(log.length)
    expect(stateOf(slow)).toEqual(stateOf(busy[0]!))
    expect(stateOf(slow)).toEqual(stateOf(busy[1]!))
  })

  it('drains 200 pending events over a transport with latency while others commit every couple of ms', async () => {
    const backend = memoryBackend()
    const storeId = freshStoreId('live-latency')
    const busy = [await client(backend, storeId), await client(backend, storeId)]
    const turn = () => new Promise((resolve) => setImmediate(resolve))
    const slowWire = wrapTransport(localTransport(backend), {
      // a request leaves when it is sent (as a socket write does), its answer comes back a few turns later
      async pull(request, inner) {
        const res = inner.pull(request)
        await turn()
        await turn()
        return res
      },
      async push(request, inner) {
        const res = inner.push(request)
        await turn()
        await turn()
        return res
      },
    })
    const slow = await client(backend, storeId, { transport: slowWire })
    slow.sync.pause()
    for (let i = 0; i < 200; i++) slow.commit(kvSet({ k: `slow-${i % 20}`, v: String(i) }))
    await drainUnderLoad(busy, slow, 'the slow client to drain its 200 pending events despite latency', (p, n, i) =>
      p.commit(kvSet({ k: `slow-${i % 20}`, v: `busy ${n}` })),
    )
    await converged(backend, storeId, ...busy, slow)
    expect(stateOf(slow)).toEqual(stateOf(busy[0]!))
  })

  /**
   * A transport on which every push finds the head moved (`busy` commits and syncs first) while `state.on`;
   * `before` runs at each push, given how many there were.
   */
  function outrun(backend: SyncBackend, busy: Store, before: (pushes: number) => unknown) {
    const state = { on: true, pushes: 0 }
    const wire = wrapTransport(localTransport(backend), {
      async push(request, inner) {
        await before(++state.pushes)
        if (state.on) {
          busy.commit(kvSet({ k: `busy-${state.pushes % 20}`, v: String(state.pushes) }))
          await busy.sync.flush()
        }
        return inner.push(request)
      },
    })
    return { wire, state }
  }

  it('tells the app when its pushes keep losing for seconds (with onConflict it waits for the head to hold still), and when they get in again', async () => {
    const backend = memoryBackend()
    const storeId = freshStoreId('live-starving')
    const busy = await client(backend, storeId)
    // a round trip yields to the event loop, as a socket's does
    const { wire, state } = outrun(backend, busy, () => new Promise((resolve) => setImmediate(resolve)))
    const warnings: string[] = []
    const starving = deferred()
    const far = await client(backend, storeId, {
      transport: wire,
      onConflict: ({ local }) => local,
      onWarning: (m) => {
        warnings.push(m)
        if (m.includes('lost the race')) starving.resolve()
      },
    })
    const mine = far.commit(kvSet({ k: 'far', v: 'x' }))
    await within(starving.promise, 'the warning that pushes keep losing', 20_000)
    expect(warnings).toEqual([
      expect.stringMatching(
        /^\d+ pushes in a row \(\d+\.\d s\) lost the race: other clients commit faster than this one can pull, rebase and push\. With onConflict it pushes at the head only .* It keeps trying\.$/,
      ),
    ])
    expect(Number(/^(\d+)/.exec(warnings[0]!)![1])).toBeGreaterThanOrEqual(20)
    // once the others let the head hold still, it gets in, and says so
    state.on = false
    await within(mine.confirmed, 'the far client to get in')
    expect(warnings).toHaveLength(2)
    expect(warnings[1]).toMatch(/^Pushes get in again, after \d+ lost races in \d+\.\d s\.$/)
    await converged(backend, storeId, busy, far)
  })

  it('leaves the event loop a turn between pushes on a long losing streak, even over a transport that answers at once', async () => {
    const backend = memoryBackend()
    const storeId = freshStoreId('live-spin')
    const busy = await client(backend, storeId)
    // set by the first timer to run; a client that never yields pushes thousands of times before it, and is stopped
    let ticked = false
    let spun = false
    // no pause anywhere: the other client's commit and the answers all settle in microtasks
    const { wire, state } = outrun(backend, busy, (pushes) => {
      if (!ticked && pushes > 5000) {
        spun = true
        throw new Error('the push loop never yielded to the event loop')
      }
    })
    const far = await client(backend, storeId, { transport: wire, onConflict: ({ local }) => local, onWarning: () => {} })
    setTimeout(() => (ticked = true), 0)
    const mine = far.commit(kvSet({ k: 'far', v: 'x' }))
    // a timer gets its turn while the far client keeps losing
    await new Promise((resolve) => setTimeout(resolve, 200))
    expect(spun).toBe(false)
    expect(state.pushes).toBeGreaterThan(20)
    expect(far.sync.status.value.pending).toBe(1)
    state.on = false
    await within(mine.confirmed, 'the far client to get in')
    await converged(backend, storeId, busy, far)
  })

  it('gets in over a 20 ms round trip while others commit every couple of ms (the head never holds still that long)', async () => {
    const backend = memoryBackend()
    const storeId = freshStoreId('live-rtt')
    const busy = [await client(backend, storeId), await client(backend, storeId)]
    const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))
    const farWire = wrapTransport(localTransport(backend), {
      // 10 ms to the backend, 10 ms back, live events 10 ms late
      onEvents(events, head, deliver) {
        setTimeout(() => deliver(events, head), 10)
      },
      async pull(request, inner) {
        await sleep(10)
        const res = await inner.pull(request)
        await sleep(10)
        return res
      },
      async push(request, inner) {
        await sleep(10)
        const res = await inner.push(request)
        await sleep(10)
        return res
      },
    })
    const far = await client(backend, storeId, { transport: farWire })
    far.sync.pause()
    const receipts = []
    for (let i = 0; i < 200; i++) receipts.push(far.commit(kvSet({ k: `slow-${i % 20}`, v: String(i) })))
    await drainUnderLoad(busy, far, 'the far client to drain its 200 pending events', (p, n, i) => p.commit(kvSet({ k: `slow-${i % 20}`, v: `busy ${n}` })))
    const log = await converged(backend, storeId, ...busy, far)
    expect(log.filter((e) => e.clientId === far.clientId).map((e) => e.id)).toEqual(receipts.map((r) => r.event.id))
    expect(new Set(log.map((e) => e.id)).size).toBe(log.length)
    for (const r of receipts) await expect(r.confirmed).resolves.toBeGreaterThan(0)
    // it got in with anyHead pushes, appended past the head they were sent on (which had moved by the time they arrived)
    const landed = farWire.calls.filter((c) => c.op === 'push' && c.result === 'pushed')
    expect(
      landed.some((c) => c.op === 'push' && c.firstSeq! > c.parentSeq + 1),
      JSON.stringify(landed),
    ).toBe(true)
    expect(stateOf(far)).toEqual(stateOf(busy[0]!))
    expect(stateOf(far)).toEqual(stateOf(busy[1]!))
  })

  it("recovers at once when an anyHead push whose answer was lost lands after the retry's pull (rejected, not invalid_message)", async () => {
    const backend = memoryBackend()
    const storeId = freshStoreId('late-push')
    const busy = await client(backend, storeId)
    let pushes = 0
    let late: (() => Promise<unknown>) | undefined
    const t = wrapTransport(localTransport(backend), {
      async push(request, inner) {
        pushes++
        if (pushes <= 2) {
          // two lost races: the next push asks for anyHead
          busy.commit(noteAdded({ id: `busy-${pushes}`, body: 'x' }))
          await busy.sync.flush()
        }
        if (pushes === 3) {
          expect(request.anyHead).toBe(true)
          // this request reaches the backend only after the retry's pull, and its answer never comes back
          late = () => inner.push(request)
          slow.commit(kvSet({ k: 'later', v: 'committed while the push was lost' }))
          throw new TransportError('connection lost before the answer arrived')
        }
        if (late) {
          const landing = late
          late = undefined
          await landing()
        }
        return inner.push(request)
      },
    })
    const slow: Store = await client(backend, storeId, { transport: t, sync: { minBackoffMs: 5, maxBackoffMs: 20 } })
    await converged(backend, storeId, busy, slow)
    slow.sync.pause()
    const receipts = [1, 2, 3].map((i) => slow.commit(kvSet({ k: `k${i}`, v: String(i) })))
    const trail = statusTrail(slow)
    slow.sync.resume()
    await within(slow.sync.flush(), 'the slow client to get every event in', 5_000)
    const log = await converged(backend, storeId, busy, slow)
    const ids = log.map((e) => e.id)
    for (const r of receipts) expect(ids.filter((id) => id === r.event.id)).toHaveLength(1)
    // the fourth push (the three events that had landed meanwhile and the new one) was answered rejected: a pull, then the new one alone
    const answers = t.calls.filter((c) => c.op === 'push').map((c) => (c.op === 'push' ? `${c.result} ${c.ids.length}` : ''))
    expect(answers).toEqual(['rejected 3', 'rejected 3', 'threw 3', 'rejected 4', 'pushed 1'])
    expect(trail.states().filter((s) => s === 'error')).toHaveLength(1) // the lost answer only
    trail.unsubscribe()
    expect(stateOf(slow)).toEqual(stateOf(busy))
  })

  /** A slow client whose first pushes lose: before push n is forwarded, `race(n)` lets the busy client get in. */
  async function racing(storeId: string, backend: SyncBackend, race: (busy: Store, n: number) => void) {
    const busy = await client(backend, storeId)
    const t = wrapTransport(localTransport(backend), {
      async push(request, inner) {
        race(busy, t.calls.filter((c) => c.op === 'push').length)
        await busy.sync.flush()
        return inner.push(request)
      },
    })
    const slow = await client(backend, storeId, { transport: t })
    await converged(backend, storeId, busy, slow)
    slow.sync.pause()
    return { busy, slow, t }
  }

  it('an own event that lands (anyHead) where it no longer applies is skipped everywhere, and its receipt says so', async () => {
    const backend = memoryBackend()
    const storeId = freshStoreId('skipped')
    const { busy, slow, t } = await racing(storeId, backend, (busy, n) => {
      if (n <= 2) busy.commit(noteAdded({ id: `busy-${n}`, body: 'x' }))
      // the anyHead push lands after a todo with the same id, which it was never rebased onto
      if (n === 3) busy.commit(todoCreated({ id: 'dup', text: 'busy' }))
    })
    const receipt = slow.commit(todoCreated({ id: 'dup', text: 'slow' }))
    slow.sync.resume()
    await within(slow.sync.flush(), 'the slow client to settle its event')
    const log = await converged(backend, storeId, busy, slow)
    const pushes = t.calls.filter((c) => c.op === 'push')
    expect(pushes.map((c) => c.result)).toEqual(['rejected', 'rejected', 'pushed'])
    expect(pushes[2]!.firstSeq).toBe(pushes[2]!.parentSeq + 2)
    expect(log.filter((e) => e.id === receipt.event.id)).toHaveLength(1)
    const error = await receipt.confirmed.then(
      () => undefined,
      (e: MaterializeError) => e,
    )
    expect(error?.name).toBe('MaterializeError')
    expect(error?.message).toMatch(/landed after events it was not rebased onto, and every client skips it/)
    expect(slow.query(sql`SELECT id, text FROM todos`).value).toEqual([{ id: 'dup', text: 'busy' }])
    expect(stateOf(slow)).toEqual(stateOf(busy))
    expect(slow.sync.status.value).toMatchObject({ state: 'synced', pending: 0 })
  })

  it('never sends an event its rebase dropped, however many races it lost', async () => {
    const backend = memoryBackend()
    const storeId = freshStoreId('dropped-unsent')
    const { busy, slow, t } = await racing(storeId, backend, (busy, n) => {
      if (n === 1) busy.commit(noteAdded({ id: 'busy-1', body: 'x' }))
      if (n === 2) busy.commit(todoCreated({ id: 'x', text: 'busy' }))
      if (n === 3) busy.commit(todoSchema.events.todoDeleted({ id: 'x' }))
    })
    const receipt = slow.commit(todoCreated({ id: 'x', text: 'slow' }))
    slow.sync.resume()
    await expect(receipt.confirmed).rejects.toMatchObject({ name: 'MaterializeError' })
    await within(slow.sync.flush(), 'the slow client to settle')
    const log = await converged(backend, storeId, busy, slow)
    // two losses, then the rebase onto busy's todo dropped it: there was nothing left to push
    expect(t.calls.filter((c) => c.op === 'push').map((c) => c.result)).toEqual(['rejected', 'rejected'])
    expect(log.some((e) => e.id === receipt.event.id)).toBe(false)
    expect(stateOf(slow)).toEqual(stateOf(busy))
  })

  it('never pushes onto a new incarnation of the log, anyHead or not: the push names the backendId it is based on', async () => {
    const old = memoryBackend()
    const swap = swappableBackend(old)
    const storeId = freshStoreId('reincarnated')
    const fresh = memoryBackend()
    for (let i = 0; i < 10; i++)
      await fresh.push(storeId, {
        parentSeq: i,
        events: [{ id: `other:${i + 1}`, name: 'noteAdded', args: { id: `o${i}`, body: 'x' }, clientId: 'other', sessionId: 's', createdAt: 1 }],
      })
    const busy = await client(old, storeId)
    let pushes = 0
    const t = wrapTransport(localTransport(swap), {
      async pull(request, inner) {
        const res = await inner.pull(request)
        if (pushes === 2) swap.current = fresh // wiped and refilled past this client's head while the answer travels
        return res
      },
      async push(request, inner) {
        if (++pushes <= 2) {
          busy.commit(noteAdded({ id: `busy-${pushes}`, body: 'x' }))
          await busy.sync.flush()
        }
        return inner.push(request)
      },
    })
    const slow = await client(swap, storeId, { transport: t })
    await converged(old, storeId, busy, slow)
    slow.sync.pause()
    slow.commit(noteAdded({ id: 'slow-1', body: 'x' }))
    slow.sync.resume()
    const status = await waitFor(slow.sync.status, (s) => s.error instanceof BackendResetError, 'BackendResetError')
    expect(status.pending).toBe(1)
    const sent = t.calls.filter((c) => c.op === 'push')
    expect(sent.map((c) => c.result)).toEqual(['rejected', 'rejected', 'rejected'])
    expect((await backendLog(fresh, storeId)).map((e) => e.id)).toEqual(Array.from({ length: 10 }, (_, i) => `other:${i + 1}`))
  })

  it('pushes again right after each rejection, without backoff, and after two asks to be appended on any head', async () => {
    const backend = memoryBackend()
    const storeId = freshStoreId('race')
    // another client gets in between this client's pull and each of its first three pushes
    const { busy, slow, t } = await racing(storeId, backend, (busy, n) => {
      if (n <= 3) busy.commit(noteAdded({ id: `busy-${n}`, body: 'x' }))
    })
    const receipts = []
    for (let i = 0; i < 200; i++) receipts.push(slow.commit(kvSet({ k: `k${i % 20}`, v: String(i) })))
    const trail = statusTrail(slow)
    slow.sync.resume()
    await within(slow.sync.flush(), 'the slow client to get in')
    const log = await converged(backend, storeId, busy, slow)
    const pushes = t.calls.filter((c) => c.op === 'push')
    // two losses at the head, then the push asks for anyHead and lands on the head the other client had moved on
    expect(pushes.map((p) => p.result)).toEqual(['rejected', 'rejected', 'pushed'])
    expect(pushes[2]!.firstSeq).toBe(pushes[2]!.parentSeq + 2)
    expect(pushes.every((p) => p.ids.length === 200)).toBe(true) // one batch, not one event at a time
    expect(trail.states()).not.toContain('error') // a rejection is data: no backoff
    trail.unsubscribe()
    expect(log.slice(-200).map((e) => e.id)).toEqual(receipts.map((r) => r.event.id))
    await expect(receipts[199]!.confirmed).resolves.toBe(log.length)
    expect(stateOf(slow)).toEqual(stateOf(busy))
  })
})
