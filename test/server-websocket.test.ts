import type { ConfirmedEvent, PendingEvent, ServerMessage } from 'tidelog'
import { createSyncServer, memoryBackend, type SyncServer, type SyncServerOptions } from 'tidelog/server'
import { afterEach, describe, expect, it } from 'vitest'
import { type ClientOptions, WebSocket } from 'ws'

let backend: ReturnType<typeof memoryBackend>
let server: SyncServer | undefined

async function start(options: Partial<SyncServerOptions> = {}) {
  backend = memoryBackend()
  server = await createSyncServer({ backend, port: 0, ...options })
  return server
}
afterEach(async () => {
  await server?.close()
  server = undefined
})

let n = 0
const batch = (count: number, bytes = 16): PendingEvent[] =>
  Array.from({ length: count }, () => {
    const i = ++n
    return { id: `w:${i}`, name: 'noted', args: { i, pad: 'x'.repeat(bytes) }, clientId: 'w', sessionId: 's', createdAt: i }
  })

function connect(url: string, storeId: string, options: ClientOptions = {}) {
  const socket = new WebSocket(`${url.replace('http', 'ws')}/sync?storeId=${storeId}`, options)
  socket.on('error', () => {})
  const closed = new Promise<number>((resolve) => socket.once('close', (code) => resolve(code)))
  const opened = new Promise<void>((resolve) => socket.once('open', () => resolve()))
  return { socket, closed, opened }
}

describe('sync server WebSocket liveness', () => {
  it('terminates a peer that stays silent for two ping intervals', async () => {
    const { url } = await start({ pingIntervalMs: 25 })
    // autoPong off: this peer answers no ping and sends nothing
    const peer = connect(url, 'silent', { autoPong: false })
    await peer.opened
    expect(await peer.closed).toBe(1006)
  })

  it('keeps a peer that answers pings', async () => {
    const { url } = await start({ pingIntervalMs: 10 })
    const peer = connect(url, 'alive')
    await peer.opened
    let pings = 0
    await new Promise<void>((resolve) => peer.socket.on('ping', () => ++pings === 10 && resolve()))
    expect(peer.socket.readyState).toBe(WebSocket.OPEN)
    peer.socket.close()
  })
})

describe('sync server WebSocket backpressure', () => {
  /** Pulls to the head on a raw socket, so that the server streams the storeId to it. */
  async function streaming(url: string, storeId: string) {
    const peer = connect(url, storeId)
    await peer.opened
    const events: ConfirmedEvent[] = []
    let onFrame = () => {}
    peer.socket.on('message', (data) => {
      const message = JSON.parse(String(data)) as ServerMessage
      if (message.type === 'events' || message.type === 'pulled') events.push(...message.events)
      onFrame()
    })
    peer.socket.send(JSON.stringify({ v: 1, rid: 1, type: 'pull', storeId, since: 0 }))
    await new Promise<void>((resolve) => (onFrame = resolve))
    return { ...peer, events, until: (done: () => boolean) => new Promise<void>((resolve) => (onFrame = () => done() && resolve())) }
  }

  // enough bytes to fill the loopback socket buffers several times over
  async function flood(storeId: string, pushes = 24) {
    for (let i = 0; i < pushes; i++) await backend.push(storeId, { parentSeq: i * 500, events: batch(500, 1000) })
    return pushes * 500
  }

  it('drops a consumer that stops reading while events keep coming', async () => {
    // the server's drop is seen through the connection's unsubscribe: the stuck peer itself reads nothing
    let dropped!: () => void
    const unsubscribed = new Promise<void>((resolve) => (dropped = resolve))
    const inner = memoryBackend()
    const watched = {
      ...inner,
      subscribe: (storeId: string, onHead: (head: number) => void) => {
        const unsubscribe = inner.subscribe(storeId, onHead)
        return () => (unsubscribe(), dropped())
      },
    }
    server = await createSyncServer({ backend: watched, port: 0, maxBufferedBytes: 64 * 1024, stalledTimeoutMs: 100 })
    backend = inner
    const peer = await streaming(server.url, 'stuck')
    peer.socket.pause()
    await flood('stuck')
    await unsubscribed
    peer.socket.resume()
    expect(await peer.closed).toBe(1006)
    expect(peer.events.length).toBeLessThan(12_000)
    // the server still serves everyone else: a first page, cut to the page byte budget
    const other = await streaming(server.url, 'stuck')
    expect(other.events.length).toBeGreaterThan(0)
    expect(other.events.map((e) => e.seq)).toEqual(Array.from({ length: other.events.length }, (_, i) => i + 1))
    other.socket.close()
  })

  it('holds the stream for a slow consumer and resumes it, in order and without gaps', async () => {
    const { url } = await start({ maxBufferedBytes: 64 * 1024, stalledTimeoutMs: 20_000 })
    const peer = await streaming(url, 'slow')
    peer.socket.pause()
    const total = await flood('slow')
    peer.socket.resume()
    await peer.until(() => peer.events.length >= total)
    expect(peer.events.map((e) => e.seq)).toEqual(Array.from({ length: total }, (_, i) => i + 1))
    peer.socket.close()
  })
})
