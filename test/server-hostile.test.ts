import { mkdtemp, rm } from 'node:fs/promises'
import { type Socket, connect as tcpConnect } from 'node:net'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { type ConfirmedEvent, createStore, type PendingEvent, type ServerMessage, type SyncBackend } from 'tidelog'
import { createSyncServer, fileBackend, memoryBackend, type SyncServer } from 'tidelog/server'
import { httpTransport } from 'tidelog/transports/http'
import { websocketTransport } from 'tidelog/transports/websocket'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { WebSocket } from 'ws'
import { type HostileServer, healthMs, measurePullFlood, startHostileServer } from './fixtures/pull-flood.js'
import { todoSchema } from './helpers/todo-schema.js'
import { waitFor, within } from './helpers/wait.js'

// R6: hostile clients. Each case here crashed or exhausted the server before
// it had a shared session with limits: deep and huge events, byte-heavy
// pages, pull floods from peers that never read, silent and slow connections.

const _root = join(dirname(fileURLToPath(import.meta.url)), '..')
const MB = 1 << 20

// JSON.stringify recurses: deep values are written as text, the way an attacker would send them
const deepText = (depth: number) => '['.repeat(depth) + '1' + ']'.repeat(depth)
/** JSON of `message`, with each `deep(n)` placeholder spelled out as n nested arrays. */
const wire = (message: object) => JSON.stringify(message).replace(/"__deep__:(\d+)"/g, (_, n) => deepText(Number(n)))
const deep = (depth: number) => `__deep__:${depth}`
const event = (id: string, args: unknown): PendingEvent => ({
  id,
  name: 'noted',
  args: args as PendingEvent['args'],
  clientId: id.split(':')[0]!,
  sessionId: 's',
  createdAt: 1,
})

/** Counts events; `reached(n)` resolves once the count is at least n. */
function counter() {
  let count = 0
  const waiting: [number, () => void][] = []
  return {
    get count() {
      return count
    },
    inc() {
      count++
      for (const [n, resolve] of waiting) if (count >= n) resolve()
    },
    reached: (n: number) => (count >= n ? Promise.resolve() : new Promise<void>((resolve) => waiting.push([n, resolve]))),
  }
}

/** A raw WebSocket peer: sends frames, hands back answers (not live notifications) in order. */
async function peer(url: string, storeId: string) {
  const socket = new WebSocket(`${url.replace('http', 'ws')}/sync?storeId=${storeId}`)
  const answers: ServerMessage[] = []
  const notifications: ServerMessage[] = []
  let wake = () => {}
  socket.on('message', (data) => {
    const message = JSON.parse(String(data)) as ServerMessage
    ;(message.type === 'events' ? notifications : answers).push(message)
    wake()
  })
  const closed = new Promise<number>((resolve) => socket.on('close', (code) => resolve(code)))
  await new Promise((resolve, reject) => socket.once('open', resolve).once('error', reject))
  return {
    socket,
    notifications,
    closed,
    send: (message: object) => socket.send(wire({ v: 1, ...message })),
    async next(): Promise<ServerMessage> {
      while (answers.length === 0) await new Promise<void>((resolve) => (wake = resolve))
      return answers.shift()!
    },
  }
}

async function post(url: string, path: string, body: unknown) {
  const response = await fetch(url + path, { method: 'POST', body: wire(body as object), headers: { 'content-type': 'application/json' } })
  return { status: response.status, body: (await response.json()) as ServerMessage & Record<string, unknown> }
}

describe('sync server under hostile input (in process)', () => {
  let backend: ReturnType<typeof memoryBackend>
  let server: SyncServer
  const errors: string[] = []
  // a log written before pushes were checked: its first event cannot be serialized
  const legacy: SyncBackend = {
    pull: async (storeId, since, limit) => {
      if (storeId === 'oversized') {
        // stored before maxEventBytes existed: one event past the whole page budget
        const events: ConfirmedEvent[] = [
          { ...event('old:1', { text: 'z'.repeat(1_500_000) }), seq: 1 },
          { ...event('old:2', {}), seq: 2 },
        ]
        return { type: 'pulled', events: events.slice(since, since + limit), head: 2, backendId: 'legacy', more: since + limit < 2 }
      }
      if (storeId !== 'legacy') return backend.pull(storeId, since, limit)
      const events: ConfirmedEvent[] = [
        { ...event('old:1', JSON.parse(deepText(20_000))), seq: 1 },
        { ...event('old:2', { ok: true }), seq: 2 },
      ]
      return { type: 'pulled', events: events.slice(since, since + limit), head: 2, backendId: 'legacy', more: since + limit < 2 }
    },
    push: (storeId, request) => backend.push(storeId, request),
    subscribe: (storeId, onHead) => backend.subscribe(storeId, onHead),
    close: async () => {},
  }

  beforeAll(async () => {
    backend = memoryBackend()
    server = await createSyncServer({ backend: legacy, port: 0, onError: (_error, context) => errors.push(context) })
  })
  afterAll(async () => {
    await server.close()
    await backend.close()
  })

  it('refuses args nested deeper than maxDepth over WebSocket and HTTP, storing nothing', async () => {
    const p = await peer(server.url, 'poison')
    p.send({ rid: 1, type: 'push', storeId: 'poison', parentSeq: 0, events: [event('x:1', deep(4115))] })
    expect(await p.next()).toMatchObject({ rid: 1, type: 'error', code: 'invalid_message', message: expect.stringMatching(/nest deeper than 64/) })
    const http = await post(server.url, '/push', { v: 1, type: 'push', storeId: 'poison', parentSeq: 0, events: [event('x:1', deep(65))] })
    expect(http).toMatchObject({ status: 400, body: { code: 'invalid_message' } })
    // 64 levels are fine
    const ok = await post(server.url, '/push', { v: 1, type: 'push', storeId: 'poison', parentSeq: 0, events: [event('x:1', deep(63))] })
    expect(ok.body).toMatchObject({ type: 'pushed', firstSeq: 1 })
    p.send({ rid: 2, type: 'pull', storeId: 'poison', since: 0 })
    expect(await p.next()).toMatchObject({ rid: 2, type: 'pulled', head: 1 })
    p.socket.close()
  })

  it('refuses an event larger than maxEventBytes even inside an acceptable message', async () => {
    const big = event('x:2', { text: 'y'.repeat(300_000) })
    const http = await post(server.url, '/push', { v: 1, type: 'push', storeId: 'huge', parentSeq: 0, events: [big] })
    expect(http).toMatchObject({ status: 413, body: { code: 'too_large', message: expect.stringMatching(/at most 256000 bytes/) } })
    const p = await peer(server.url, 'huge')
    p.send({ rid: 1, type: 'push', storeId: 'huge', parentSeq: 0, events: [big] })
    expect(await p.next()).toMatchObject({ rid: 1, code: 'too_large' })
    expect((await backend.pull('huge', 0, 10)).head).toBe(0)
    p.socket.close()
  })

  it('answers an unservable stored event with an error naming its seq, and keeps serving', async () => {
    const p = await peer(server.url, 'legacy')
    p.send({ rid: 1, type: 'pull', storeId: 'legacy', since: 0 })
    expect(await p.next()).toMatchObject({ rid: 1, type: 'error', code: 'internal', message: expect.stringMatching(/stored event 1 cannot be serialized/) })
    // past it the log is served
    p.send({ rid: 2, type: 'pull', storeId: 'legacy', since: 1 })
    expect(await p.next()).toMatchObject({ rid: 2, type: 'pulled', head: 2, events: [{ seq: 2 }] })
    const http = await post(server.url, '/pull', { v: 1, type: 'pull', storeId: 'legacy', since: 0 })
    expect(http).toMatchObject({ status: 500, body: { code: 'internal' } })
    expect(errors.some((context) => /pull on legacy/.test(context))).toBe(true)
    expect(await healthMs(server.url)).toBeLessThan(1000)
    p.socket.close()
  })

  it('cuts pages to maxPageBytes, serves one larger event alone, and clients still catch up over WebSocket and HTTP', async () => {
    // 12 events of 200 KB: 2.4 MB of log, pushed 4 to a message
    for (let i = 0; i < 12; i += 4) {
      const events = Array.from({ length: 4 }, (_, k) => event(`w:${i + k + 1}`, { text: String(i + k).repeat(200_000 / String(i + k).length) }))
      expect((await post(server.url, '/push', { v: 1, type: 'push', storeId: 'heavy', parentSeq: i, events })).body).toMatchObject({ type: 'pushed' })
    }
    const p = await peer(server.url, 'heavy')
    p.send({ rid: 1, type: 'pull', storeId: 'heavy', since: 0 })
    const page = (await p.next()) as ServerMessage & { events: ConfirmedEvent[]; more: boolean }
    expect(page.more).toBe(true)
    expect(page.events.length).toBeGreaterThan(0)
    expect(Buffer.byteLength(JSON.stringify(page.events))).toBeLessThanOrEqual(1_000_000 + 2)
    p.socket.close()
    const alone = await post(server.url, '/pull', { v: 1, type: 'pull', storeId: 'oversized', since: 0 })
    expect(alone.status).toBe(200)
    expect(alone.body).toMatchObject({ type: 'pulled', head: 2, more: true, events: [{ seq: 1 }] })
    expect((alone.body.events as unknown[]).length).toBe(1)
    for (const transport of [websocketTransport({ url: server.url, WebSocket }), httpTransport({ url: server.url })]) {
      const store = await createStore({ schema: todoSchema, storeId: 'heavy', transport, onUnknownEvent: () => {} })
      await waitFor(store.sync.status, (status) => status.head === 12, 'a client to catch up on 12 events of 200 KB')
      await store.close()
    }
  })
})

describe('a pipelining peer that never reads', () => {
  it("waits in its connection's window, and once it goes away the server still closes promptly", async () => {
    const backend = memoryBackend()
    const events = Array.from({ length: 500 }, (_, i) => event(`p:${i + 1}`, { text: 'q'.repeat(1000) }))
    await backend.push('big', { parentSeq: 0, events })
    let pulls = 0
    const counting: SyncBackend = { ...backend, pull: (...args) => (pulls++, backend.pull(...args)) }
    const server = await createSyncServer({ backend: counting, port: 0, maxBufferedBytes: 64 * 1024 })
    const body = JSON.stringify({ v: 1, type: 'pull', storeId: 'big', since: 0 })
    const raw = tcpConnect(Number(new URL(server.url).port), '127.0.0.1')
    raw.on('error', () => {})
    await new Promise((resolve) => raw.once('connect', resolve))
    raw.pause()
    raw.write(`POST /pull HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n${body}`.repeat(200))
    // a few pages fill the socket; the other requests wait for the peer to read, without building their pages
    await within(
      new Promise<void>((resolve) => {
        const check = () => (pulls > 0 ? resolve() : setTimeout(check, 20))
        check()
      }),
      'the first pulls',
    )
    await new Promise((resolve) => setTimeout(resolve, 300))
    expect(pulls).toBeLessThan(20)
    raw.destroy()
    await within(server.close(), 'server.close() after the peer went away', 5000)
    await backend.close()
  })
})

describe('sync server under hostile load (child process)', () => {
  let server: HostileServer | undefined
  let url: string
  const start = async (events: number, bytes: number, limits: object = {}) => {
    server = await startHostileServer(events, bytes, limits)
    url = server.url
  }
  const alive = () => server!.alive()

  afterEach(() => {
    server?.kill()
  })

  it('bounds memory under pull floods from peers that never read, and /health stays fast', async () => {
    await start(3000, 1000) // 3 MB of log: every page is a full 1 MB
    // 5 WebSocket peers send 1,000 pulls each and stop reading; 2,000 pipelined HTTP pulls on a connection that never reads
    const { before, during, worst, probes, drop } = await measurePullFlood(server!)
    expect(alive()).toBe(true)
    expect(probes).toBeGreaterThan(5)
    expect(worst).toBeLessThan(1000)
    console.log(
      `pull flood: server RSS ${Math.round(before / MB)} MB before, ${Math.round(during / MB)} MB during; slowest /health ${Math.round(worst)} ms over ${probes} probes`,
    )
    expect(during - before).toBeLessThan(300 * MB)
    drop()
  }, 30_000)

  it('keeps /health answering under a flood of silent connections, closing the idle ones', async () => {
    await start(0, 0, { maxConnections: 100, headersTimeoutMs: 1000, keepAliveTimeoutMs: 500 })
    const port = Number(new URL(url).port)
    const sockets: Socket[] = []
    const closedByServer = counter()
    for (let i = 0; i < 300; i++) {
      const s = tcpConnect(port, '127.0.0.1')
      s.on('error', () => {})
      s.on('close', () => closedByServer.inc())
      sockets.push(s)
    }
    await Promise.all(sockets.map((s) => new Promise((resolve) => (s.once('connect', resolve), s.once('close', resolve)))))
    expect(await healthMs(url)).toBeLessThan(1000)
    // at the limit, the longest-idle connections made room: at most 100 of ours are still open
    await within(closedByServer.reached(200), '200 of 300 idle sockets closed', 15_000)
    // and the rest go once they have said nothing for the header timeout
    await within(closedByServer.reached(300), 'all 300 idle sockets closed', 15_000)
    expect(await healthMs(url)).toBeLessThan(1000)
    expect(alive()).toBe(true)
  }, 40_000)

  it('drops bodies that never end after the request timeout', async () => {
    await start(0, 0, { requestTimeoutMs: 1000 })
    const port = Number(new URL(url).port)
    const closed = counter()
    const tickers: ReturnType<typeof setInterval>[] = []
    for (let i = 0; i < 50; i++) {
      const s = tcpConnect(port, '127.0.0.1', () => {
        s.write('POST /push HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n')
        tickers.push(setInterval(() => s.writable && s.write('1\r\n \r\n'), 100))
      })
      s.on('error', () => {})
      s.on('close', () => closed.inc())
    }
    await within(closed.reached(50), 'all 50 slow bodies dropped', 15_000)
    for (const t of tickers) clearInterval(t)
    expect(await healthMs(url)).toBeLessThan(1000)
    expect(alive()).toBe(true)
  }, 40_000)
})

describe('poison across a restart (file backend)', () => {
  it('refuses a poison push, and after a restart the store serves as before', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'tidelog-hostile-'))
    try {
      let backend = fileBackend({ dir })
      let server = await createSyncServer({ backend, port: 0 })
      const refused = await post(server.url, '/push', { v: 1, type: 'push', storeId: 'p', parentSeq: 0, events: [event('x:1', deep(4115))] })
      expect(refused.status).toBe(400)
      expect((await post(server.url, '/push', { v: 1, type: 'push', storeId: 'p', parentSeq: 0, events: [event('x:1', { fine: 1 })] })).body).toMatchObject({
        type: 'pushed',
      })
      await server.close()
      await backend.close()
      backend = fileBackend({ dir })
      server = await createSyncServer({ backend, port: 0 })
      const p = await peer(server.url, 'p')
      p.send({ rid: 1, type: 'pull', storeId: 'p', since: 0 })
      expect(await p.next()).toMatchObject({ type: 'pulled', head: 1, events: [{ id: 'x:1' }] })
      p.socket.close()
      await server.close()
      await backend.close()
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  })
})
