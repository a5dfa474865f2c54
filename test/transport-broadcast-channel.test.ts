import { signal } from '@preact/signals-core'
import { createStore, type PendingEvent, type Store, sql, type TransportStatus } from 'tidelog'
import { runTransportConformance } from 'tidelog/testing'
import { broadcastChannelTransport, hostBroadcastChannel } from 'tidelog/transports/broadcast-channel'
import { describe, expect, it } from 'vitest'
import { memoryBackend } from '../src/backends/memory.js'
import { freshStoreId, type Todo, todoSchema } from './helpers/todo-schema.js'
import { converged, logOf, waitFor, within } from './helpers/wait.js'

const freshChannel = () => `tidelog-bc-${Math.random().toString(36).slice(2, 10)}`

runTransportConformance('broadcastChannelTransport', ({ backend }) => {
  const channel = freshChannel()
  let host = hostBroadcastChannel({ channel, backend })
  return {
    transport: (options) => broadcastChannelTransport({ channel, ...options }),
    stopServer: () => host.close(),
    startServer: async () => {
      host = hostBroadcastChannel({ channel, backend })
    },
    teardown: () => host.close(),
  }
})

/** A raw peer on the channel, to talk to a host the way no well-behaved client would. */
function rawPeer(channel: string) {
  const bc = new BroadcastChannel(channel)
  const received: Record<string, any>[] = []
  const waiters = new Set<() => void>()
  bc.onmessage = (e: MessageEvent) => {
    received.push(e.data)
    for (const w of waiters) w()
  }
  return {
    id: 'raw-peer',
    received,
    post: (msg: Record<string, unknown>) => bc.postMessage({ from: 'raw-peer', ...msg }),
    next: (pred: (m: Record<string, any>) => boolean) =>
      within(
        new Promise<Record<string, any>>((resolve) => {
          const check = () => {
            const m = received.find(pred)
            if (m) waiters.delete(check), resolve(m)
          }
          waiters.add(check)
          check()
        }),
        'a message on the channel',
      ),
    close: () => bc.close(),
  }
}

const event = (clientId: string, n: number): PendingEvent => ({ id: `${clientId}:${n}`, name: 'noted', args: { n }, clientId, sessionId: 's', createdAt: n })

describe('hostBroadcastChannel()', () => {
  it('answers a malformed request with an invalid_message error addressed to its sender', async () => {
    const channel = freshChannel()
    const backend = memoryBackend()
    const peer = rawPeer(channel)
    const host = hostBroadcastChannel({ channel, backend })
    try {
      peer.post({ v: 1, type: 'push', rid: 7, storeId: 's', parentSeq: 0, events: [{ id: 'x' }], to: host.hostId })
      const answer = await peer.next((m) => m.rid === 7)
      expect(answer).toMatchObject({ type: 'error', code: 'invalid_message', retryable: false, from: host.hostId, to: 'raw-peer', epoch: 0 })
      peer.post({ v: 2, type: 'pull', rid: 8, storeId: 's', since: 0, to: host.hostId })
      expect(await peer.next((m) => m.rid === 8)).toMatchObject({ type: 'error', code: 'unsupported_version' })
      expect((await backend.pull('s', 0, 10)).head).toBe(0)
    } finally {
      peer.close()
      await host.close()
    }
  })

  it('ignores requests addressed to another host', async () => {
    const channel = freshChannel()
    const backend = memoryBackend()
    const peer = rawPeer(channel)
    const host = hostBroadcastChannel({ channel, backend })
    try {
      peer.post({ v: 1, type: 'push', rid: 1, storeId: 's', parentSeq: 0, events: [event('p', 1)], to: 'someone-else' })
      peer.post({ v: 1, type: 'pull', rid: 2, storeId: 's', since: 0, to: host.hostId })
      // the host reads one sender's messages in order: had it taken the push, this pull would see it
      expect(await peer.next((m) => m.rid === 2)).toMatchObject({ type: 'pulled', head: 0 })
      expect(peer.received.some((m) => m.rid === 1)).toBe(false)
    } finally {
      peer.close()
      await host.close()
    }
  })

  it('stops answering once it hears a host with a higher epoch (B2)', async () => {
    const channel = freshChannel()
    const backend = memoryBackend()
    const peer = rawPeer(channel)
    const stale = hostBroadcastChannel({ channel, backend, epoch: 1 })
    const fresh = { current: undefined as ReturnType<typeof hostBroadcastChannel> | undefined }
    try {
      peer.post({ v: 1, type: 'pull', rid: 1, storeId: 's', since: 0, to: stale.hostId })
      expect(await peer.next((m) => m.rid === 1)).toMatchObject({ type: 'pulled', epoch: 1, from: stale.hostId })
      const newer = (fresh.current = hostBroadcastChannel({ channel, backend, epoch: 2 })) // announces itself
      peer.post({ v: 1, type: 'pull', rid: 2, storeId: 's', since: 0, to: newer.hostId })
      await peer.next((m) => m.rid === 2)
      const mark = peer.received.length
      peer.post({ v: 1, type: 'pull', rid: 3, storeId: 's', since: 0, to: stale.hostId })
      peer.post({ v: 1, type: 'ping', to: stale.hostId })
      // two round trips through the newer host give the stale one every chance to show itself
      for (const rid of [4, 5]) {
        peer.post({ v: 1, type: 'pull', rid, storeId: 's', since: 0, to: newer.hostId })
        await peer.next((m) => m.rid === rid)
      }
      expect(peer.received.slice(mark).filter((m) => m.from === stale.hostId)).toEqual([])
    } finally {
      peer.close()
      await stale.close()
      await fresh.current?.close()
    }
  })
})

describe('broadcastChannelTransport()', () => {
  it('reports offline when no host answers, fails requests retryably, and goes online when a host starts', async () => {
    const channel = freshChannel()
    const status = signal<TransportStatus['state'][]>([])
    const transport = broadcastChannelTransport({ channel, requestTimeoutMs: 100 })
    await transport.connect({ storeId: 's', onEvents() {}, onStatus: (s) => (status.value = [...status.value, s.state]) })
    expect(status.value).toEqual(['connecting', 'offline'])
    const error = await transport.pull({ storeId: 's', since: 0 }).catch((e) => e)
    expect(error).toMatchObject({ name: 'TransportError', retryable: true })
    const backend = memoryBackend()
    const host = hostBroadcastChannel({ channel, backend })
    try {
      await waitFor(status, (s) => s.at(-1) === 'online', 'status online')
      expect((await transport.pull({ storeId: 's', since: 0 })).head).toBe(0)
    } finally {
      await transport.close()
      await host.close()
    }
  })

  it("rejects a request the host answers with an error with that error's code, retryability and channel", async () => {
    const channel = freshChannel()
    const backend = memoryBackend()
    const host = hostBroadcastChannel({ channel, backend })
    const transport = broadcastChannelTransport({ channel })
    try {
      await transport.connect({ storeId: 's', onEvents() {}, onStatus() {} })
      const malformed = [{ id: 'x' }] as unknown as PendingEvent[]
      const error = await transport.push({ storeId: 's', parentSeq: 0, events: malformed }).catch((e) => e)
      expect(error).toMatchObject({ name: 'TransportError', protocolCode: 'invalid_message', code: 'invalid_message', retryable: false })
      expect(error.message).toContain(`The broadcast-channel host on "${channel}" answered invalid_message:`)
      expect((await backend.pull('s', 0, 10)).head).toBe(0)
    } finally {
      await transport.close()
      await host.close()
    }
  })

  it('moves to a host that announces itself with a higher epoch and ignores the older one (B1)', async () => {
    const channel = freshChannel()
    const [oldLog, newLog] = [memoryBackend(), memoryBackend()]
    await oldLog.push('s', { parentSeq: 0, events: [event('old', 1)] })
    const status = signal<TransportStatus['state'][]>([])
    const older = hostBroadcastChannel({ channel, backend: oldLog, epoch: 1 })
    const transport = broadcastChannelTransport({ channel })
    let newer: ReturnType<typeof hostBroadcastChannel> | undefined
    try {
      await transport.connect({ storeId: 's', onEvents() {}, onStatus: (s) => (status.value = [...status.value, s.state]) })
      expect((await transport.pull({ storeId: 's', since: 0 })).backendId).toBe(oldLog.backendId)
      newer = hostBroadcastChannel({ channel, backend: newLog, epoch: 2 })
      // the engine is told offline then online, so that it pulls and the new host streams to it
      await waitFor(status, (s) => s.length >= 4, 'a reconnect')
      expect(status.value).toEqual(['connecting', 'online', 'offline', 'online'])
      expect((await transport.pull({ storeId: 's', since: 0 })).backendId).toBe(newLog.backendId)
    } finally {
      await transport.close()
      await older.close()
      await newer?.close()
    }
  })
})

describe('createStore() over broadcastChannelTransport', () => {
  it('converges three stores through one host', async () => {
    const channel = freshChannel()
    const backend = memoryBackend()
    const host = hostBroadcastChannel({ channel, backend })
    const storeId = freshStoreId('bc')
    const stores: Store<typeof todoSchema>[] = []
    try {
      for (let i = 0; i < 3; i++) stores.push(await createStore({ schema: todoSchema, storeId, transport: broadcastChannelTransport({ channel }) }))
      const [a, b, c] = stores as [Store<typeof todoSchema>, Store<typeof todoSchema>, Store<typeof todoSchema>]
      a.commit(todoSchema.events.todoCreated({ id: 'a', text: 'milk' }))
      b.commit(todoSchema.events.todoCreated({ id: 'b', text: 'eggs' }))
      c.commit(todoSchema.events.todoCreated({ id: 'c', text: 'bread' }), todoSchema.events.todoCompleted({ id: 'a' }))
      b.commit(todoSchema.events.todoRenamed({ id: 'c', text: 'rye bread' }))
      const log = await converged(backend, storeId, a, b, c)
      expect(log).toHaveLength(5)
      for (const s of stores) expect(logOf(s.events())).toEqual(logOf(log))
      const rows = stores.map((s) => s.query<Todo>(sql`SELECT * FROM todos ORDER BY id`).value)
      expect(rows[1]).toEqual(rows[0])
      expect(rows[2]).toEqual(rows[0])
      // live notifications keep flowing after the initial sync
      a.commit(todoSchema.events.todoDeleted({ id: 'b' }))
      await waitFor(c.sync.status, (st) => st.head === 6, 'c to receive seq 6')
      expect(c.queryOne<Todo>(sql`SELECT * FROM todos WHERE id = ${'b'}`).value).toBeUndefined()
    } finally {
      await Promise.all(stores.map((s) => s.close()))
      await host.close()
    }
  })
})
