// examples/custom-transport: an NDJSON-over-TCP transport whose server half is
// createServerSession from tidelog/server passes the transport kit.
import { connect, createServer, type Socket } from 'node:net'
import type { TransportStatus } from 'tidelog'
import { memoryBackend } from 'tidelog/server'
import { runTransportConformance } from 'tidelog/testing'
import { describe, expect, it } from 'vitest'
import { serveTcp, type TcpServer } from '../examples/custom-transport/tcp-server.js'
import { tcpTransport } from '../examples/custom-transport/tcp-transport.js'

const REFUSED = 'refused-token'

runTransportConformance('tcpTransport (examples/custom-transport)', async ({ backend }) => {
  const authenticate = (_storeId: string, token: string | undefined) => token !== REFUSED
  let server = await serveTcp({ backend, port: 0, authenticate })
  const { port } = server
  return {
    transport: ({ requestTimeoutMs }) => tcpTransport({ port, requestTimeoutMs }),
    refusedTransport: ({ requestTimeoutMs }) => tcpTransport({ port, requestTimeoutMs, token: REFUSED }),
    stopServer: () => server.close(),
    startServer: async () => {
      server = await serveTcp({ backend, port, authenticate })
    },
    teardown: () => server.close(),
  }
})

/** Lines a raw client received, and a way to wait for a count of them. */
function rawClient(port: number) {
  const socket: Socket = connect({ port, host: '127.0.0.1' })
  socket.setEncoding('utf8')
  const lines: Record<string, any>[] = []
  let buffer = ''
  let waiter: (() => void) | undefined
  socket.on('data', (chunk: string) => {
    buffer += chunk
    for (let end = buffer.indexOf('\n'); end >= 0; end = buffer.indexOf('\n')) {
      lines.push(JSON.parse(buffer.slice(0, end)))
      buffer = buffer.slice(end + 1)
    }
    waiter?.()
  })
  const until = (done: () => boolean, what: string) =>
    new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no ${what} within 10 s (got ${lines.length} lines)`)), 10_000)
      waiter = () => done() && (clearTimeout(timer), resolve())
      waiter()
    })
  return { socket, lines, until, send: (m: object) => socket.write(`${JSON.stringify({ v: 1, ...m })}\n`) }
}

describe('examples/custom-transport', () => {
  it('holds live events back while the client does not read, and delivers all of them in order once it does', async () => {
    const backend = memoryBackend()
    const server: TcpServer = await serveTcp({ backend, port: 0 })
    const client = rawClient(server.port)
    try {
      client.send({ type: 'hello', storeId: 'slow-reader' })
      await client.until(() => client.lines.some((l) => l.type === 'welcome'), 'welcome')
      client.send({ type: 'pull', rid: 1, storeId: 'slow-reader', since: 0 })
      await client.until(() => client.lines.some((l) => l.rid === 1), 'pull answer')
      client.socket.pause()
      const text = 'x'.repeat(10_000)
      const total = 2000 // 20 MB of events
      for (let head = 0; head < total; head += 100) {
        const events = Array.from({ length: 100 }, (_, i) => ({
          id: `w:${head + i}`,
          name: 'noted',
          args: { text },
          clientId: 'w',
          sessionId: 's',
          createdAt: head + i,
        }))
        await backend.push('slow-reader', { parentSeq: head, events })
      }
      // watch the server's buffer for a while: it holds about a page (1 MB) past the socket's high-water mark, never the 20 MB pushed
      let most = 0
      for (let i = 0; i < 40; i++) {
        most = Math.max(most, server.bufferedBytes())
        await new Promise((resolve) => setTimeout(resolve, 10))
      }
      expect(most, 'bytes buffered for a client that does not read').toBeGreaterThan(16_384)
      expect(most, 'bytes buffered for a client that does not read').toBeLessThan(2_500_000)
      client.socket.resume()
      const seqs = () => client.lines.filter((l) => l.type === 'events').flatMap((l) => l.events.map((e: { seq: number }) => e.seq))
      await client.until(() => seqs().length >= total, `${total} streamed events`)
      expect(seqs()).toEqual(Array.from({ length: total }, (_, i) => i + 1))
    } finally {
      client.socket.destroy()
      await server.close()
      await backend.close()
    }
  })

  it('answers a refused token with an unauthorized error and closes the connection', async () => {
    const backend = memoryBackend()
    const server = await serveTcp({ backend, port: 0, authenticate: () => false })
    const client = rawClient(server.port)
    try {
      const closed = new Promise((resolve) => client.socket.on('close', resolve))
      client.send({ type: 'hello', storeId: 's', token: 'nope' })
      client.send({ type: 'pull', rid: 1, storeId: 's', since: 0 })
      await closed
      expect(client.lines).toEqual([expect.objectContaining({ type: 'error', code: 'unauthorized' })])
    } finally {
      await server.close()
      await backend.close()
    }
  })

  it('drops a server that stays silent for two heartbeat intervals and dials again', async () => {
    // accepts and never says anything, not even the welcome
    const sockets = new Set<Socket>()
    let accepted = 0
    let second!: () => void
    const secondConnection = new Promise<void>((resolve) => (second = resolve))
    const silent = createServer((s) => {
      sockets.add(s)
      if (++accepted === 2) second()
    })
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve))
    const statuses: TransportStatus[] = []
    const transport = tcpTransport({ port: (silent.address() as { port: number }).port, heartbeatMs: 40 })
    await transport.connect({ storeId: 'silent', onEvents() {}, onStatus: (s) => statuses.push(s) })
    await secondConnection
    expect(statuses.slice(0, 2).map((s) => s.state)).toEqual(['connecting', 'offline'])
    expect(statuses[1]!.error?.message).toMatch(/nothing heard from the server for 80 ms/)
    await transport.close()
    for (const s of sockets) s.destroy()
    await new Promise((resolve) => silent.close(resolve))
  })
})
