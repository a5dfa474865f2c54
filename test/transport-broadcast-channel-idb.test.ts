import 'fake-indexeddb/auto'
import { createStore as createKeyvalStore, get } from 'idb-keyval'
import { createStore, type PendingEvent, type Store, sql } from 'tidelog'
import { runBackendConformance } from 'tidelog/testing'
import { broadcastChannelTransport, hostBroadcastChannel, type LockManagerLike } from 'tidelog/transports/broadcast-channel'
import { describe, expect, it } from 'vitest'
import { indexedDbBackend } from '../src/backends/indexeddb.js'
import { freshStoreId, type Todo, todoSchema } from './helpers/todo-schema.js'
import { backendLog, converged, logOf, within } from './helpers/wait.js'

const fresh = (prefix: string) => `${prefix}-${Math.random().toString(36).slice(2, 10)}`
const event = (clientId: string, n: number): PendingEvent => ({ id: `${clientId}:${n}`, name: 'noted', args: { n }, clientId, sessionId: 's', createdAt: n })

const dbNames = new WeakMap<object, string>()
runBackendConformance(
  'indexedDbBackend',
  () => {
    const name = fresh('tidelog-idb-backend')
    const backend = indexedDbBackend({ name })
    dbNames.set(backend, name)
    return backend
  },
  {
    reopen: async (closed) => {
      const backend = indexedDbBackend({ name: dbNames.get(closed)! })
      dbNames.set(backend, dbNames.get(closed)!)
      return backend
    },
  },
)

/** Web Locks as `host: 'auto'` uses them: exclusive per name, granted in request order, held until the callback settles, abortable while waiting. */
function fakeLocks(): LockManagerLike {
  const held = new Set<string>()
  const queues = new Map<string, (() => void)[]>()
  return {
    request(name, options, callback) {
      return new Promise((resolve, reject) => {
        const queue = queues.get(name) ?? (queues.set(name, []), queues.get(name)!)
        const grant = () => {
          held.add(name)
          Promise.resolve()
            .then(() => callback({ name }))
            .then(resolve, reject)
            .finally(() => {
              held.delete(name)
              queue.shift()?.()
            })
        }
        if (!held.has(name)) return grant()
        queue.push(grant)
        options.signal?.addEventListener('abort', () => {
          const i = queue.indexOf(grant)
          if (i >= 0) queue.splice(i, 1), reject(new DOMException('The request was aborted.', 'AbortError'))
        })
      })
    },
  }
}

describe('indexedDbBackend()', () => {
  it('keeps events, ids and backendId across a new instance on the same database', async () => {
    const name = fresh('tidelog-idb-durable')
    const first = indexedDbBackend({ name })
    const pushed = await first.push('s', { parentSeq: 0, events: [event('a', 1), event('a', 2)] })
    await first.close()
    const second = indexedDbBackend({ name })
    try {
      const page = await second.pull('s', 0, 10)
      expect(page).toMatchObject({ head: 2, more: false, backendId: (pushed as { backendId: string }).backendId })
      expect(page.events.map((e) => e.id)).toEqual(['a:1', 'a:2'])
      expect(await second.push('s', { parentSeq: 0, events: [event('a', 1), event('a', 2)] })).toMatchObject({ type: 'pushed', firstSeq: 1 })
      expect(await second.push('s', { parentSeq: 2, events: [event('b', 1)] })).toMatchObject({ type: 'pushed', firstSeq: 3, head: 3 })
    } finally {
      await second.close()
    }
  })

  it('refuses writes from an instance whose epoch a newer claim overtook, and reports the newer epoch', async () => {
    const name = fresh('tidelog-idb-fence')
    const fenced: number[] = []
    const older = indexedDbBackend({ name, onFenced: (epoch) => fenced.push(epoch) })
    const newer = indexedDbBackend({ name })
    try {
      expect(await older.claimEpoch()).toBe(1)
      expect(await older.push('s', { parentSeq: 0, events: [event('a', 1)] })).toMatchObject({ type: 'pushed' })
      expect(await newer.claimEpoch()).toBe(2)
      await expect(older.push('s', { parentSeq: 1, events: [event('a', 2)] })).rejects.toMatchObject({ name: 'StorageError' })
      expect(fenced).toEqual([2])
      expect(await newer.push('s', { parentSeq: 1, events: [event('b', 1)] })).toMatchObject({ type: 'pushed', firstSeq: 2 })
      expect((await newer.pull('s', 0, 10)).events.map((e) => e.id)).toEqual(['a:1', 'b:1'])
    } finally {
      await older.close()
      await newer.close()
    }
  })
})

describe('epoch fencing over the channel', () => {
  it("ignores a stale host's answers, announcements and events once a newer epoch was seen (B1)", async () => {
    const channel = fresh('tidelog-bc-fence')
    const name = fresh('tidelog-idb-fence')
    const backend = indexedDbBackend({ name })
    await backend.push('s', { parentSeq: 0, events: [event('real', 1)] })
    const host = hostBroadcastChannel({ channel, backend, epoch: await backend.claimEpoch() })
    const notified: string[] = []
    const transport = broadcastChannelTransport({ channel })
    await transport.connect({ storeId: 's', onEvents: (events) => notified.push(...events.map((e) => e.id)), onStatus() {} })
    expect((await transport.pull({ storeId: 's', since: 0 })).head).toBe(1) // epoch 1 is now the newest the client saw
    // a stale host that never learnt it was replaced: it announces itself and answers every request, first, with epoch 0
    const stale = new BroadcastChannel(channel)
    const bogus = { ...event('stale', 1), seq: 1 }
    const base = (to: string) => ({ v: 1, from: 'stale-host', to, epoch: 0 })
    stale.onmessage = (e: MessageEvent) => {
      const m = e.data
      if (m.type !== 'pull' && m.type !== 'push') return
      stale.postMessage({ ...base(m.from), rid: m.rid, type: 'pulled', events: [bogus], head: 1, backendId: 'stale', more: false })
      stale.postMessage({ ...base(m.from), rid: m.rid, type: 'pushed', firstSeq: 99, head: 99, backendId: 'stale' })
      stale.postMessage({ ...base(m.from), type: 'events', storeId: 's', events: [{ ...bogus, seq: 2 }], head: 2 })
    }
    stale.postMessage({ ...base('*'), type: 'host' })
    try {
      for (let i = 0; i < 3; i++) {
        const page = await transport.pull({ storeId: 's', since: 0 })
        expect(page.events.map((e) => e.id)).toEqual(['real:1'])
        expect(page.backendId).not.toBe('stale')
      }
      expect(await transport.push({ storeId: 's', parentSeq: 1, events: [event('c', 1)] })).toMatchObject({ type: 'pushed', firstSeq: 2 })
      expect(await transport.pull({ storeId: 's', since: 0 })).toMatchObject({ head: 2 })
      expect(notified.filter((id) => id.startsWith('stale'))).toEqual([])
    } finally {
      await transport.close()
      stale.close()
      await host.close()
      await backend.close()
    }
  })
})

describe("broadcastChannelTransport({ host: 'auto' })", () => {
  it('refuses to start without Web Locks', async () => {
    const transport = broadcastChannelTransport({ channel: fresh('tidelog-bc'), host: 'auto' })
    await expect(transport.connect({ storeId: 's', onEvents() {}, onStatus() {} })).rejects.toMatchObject({ name: 'TransportError', retryable: false })
    await transport.close()
  })

  it('elects one tab as host; when it closes the next takes over the same log, no event lost, and clients continue', async () => {
    const channel = fresh('tidelog-bc-auto')
    const locks = fakeLocks()
    const storeId = freshStoreId('auto')
    const reader = indexedDbBackend({ name: `tidelog-host:${channel}` })
    const tabs: Store<typeof todoSchema>[] = []
    const open = () => createStore({ schema: todoSchema, storeId, transport: broadcastChannelTransport({ channel, host: 'auto', locks }) })
    try {
      // tab A asks first and hosts; B and C wait for the lock and act as clients
      for (let i = 0; i < 3; i++) tabs.push(await open())
      const [a, b, c] = tabs as [Store<typeof todoSchema>, Store<typeof todoSchema>, Store<typeof todoSchema>]
      a.commit(todoSchema.events.todoCreated({ id: 'a', text: 'from the host tab' }))
      b.commit(todoSchema.events.todoCreated({ id: 'b', text: 'from B' }))
      c.commit(todoSchema.events.todoCreated({ id: 'c', text: 'from C' }))
      const before = await converged(reader, storeId, a, b, c)
      expect(before).toHaveLength(3)

      await within(a.close(), 'tab A to close')
      tabs.shift()
      // B got the lock: it now hosts (epoch 2) and is its own client; C follows it
      b.commit(todoSchema.events.todoCompleted({ id: 'c' }))
      c.commit(todoSchema.events.todoRenamed({ id: 'a', text: 'renamed after the takeover' }))
      const after = await converged(reader, storeId, b, c)
      expect(await get('epoch', createKeyvalStore(`tidelog-host:${channel}`, 'log'))).toBe(2) // B claimed the log after A
      expect(after).toHaveLength(5)
      expect(logOf(after.slice(0, 3))).toEqual(logOf(before))
      expect(after.map((e) => e.seq)).toEqual([1, 2, 3, 4, 5])
      for (const s of [b, c]) expect(logOf(s.events())).toEqual(logOf(after))
      expect(c.query<Todo>(sql`SELECT * FROM todos ORDER BY id`).value).toEqual(b.query<Todo>(sql`SELECT * FROM todos ORDER BY id`).value)

      // a tab opened after the takeover finds every event in IndexedDB
      const d = await open()
      tabs.push(d)
      const all = await converged(reader, storeId, b, c, d)
      expect(logOf(d.events())).toEqual(logOf(all))
      expect(await backendLog(reader, storeId)).toHaveLength(5)
    } finally {
      for (const s of tabs) await s.close()
      await reader.close()
    }
  })
})

describe('indexedDbBackend on a full disk', () => {
  it('fails a push with a StorageError that names the error even when it has no message, stores nothing, and works once there is room', async () => {
    const name = fresh('tidelog-idb-full')
    const backend = indexedDbBackend({ name })
    const put = IDBObjectStore.prototype.put
    try {
      expect(await backend.push('s', { parentSeq: 0, events: [event('a', 1)] })).toMatchObject({ type: 'pushed', firstSeq: 1, head: 1 })
      // browsers report a full quota as a QuotaExceededError with an empty message
      IDBObjectStore.prototype.put = () => {
        throw new DOMException('', 'QuotaExceededError')
      }
      const failed = await backend.push('s', { parentSeq: 1, events: [event('a', 2)] }).catch((e: Error) => e)
      expect(failed).toMatchObject({ name: 'StorageError' })
      expect((failed as Error).message).toBe(`IndexedDB "${name}": push failed: QuotaExceededError. Check that IndexedDB is available and not full.`)
      IDBObjectStore.prototype.put = put
      expect(await backend.pull('s', 0, 10)).toMatchObject({ head: 1, events: [{ seq: 1, id: 'a:1' }] })
      expect(await backend.push('s', { parentSeq: 1, events: [event('a', 2)] })).toMatchObject({ type: 'pushed', firstSeq: 2, head: 2 })
    } finally {
      IDBObjectStore.prototype.put = put
      await backend.close()
    }
  })
})
