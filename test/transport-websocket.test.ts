import { TransportError, type TransportStatus } from 'tidelog'
import { createSyncServer, memoryBackend } from 'tidelog/server'
import { runTransportConformance } from 'tidelog/testing'
import { type WebSocketConstructor, websocketTransport } from 'tidelog/transports/websocket'
import { describe, expect, it } from 'vitest'
import { WebSocket, WebSocketServer } from 'ws'
import { serverTransportSetup } from './helpers/server.js'

runTransportConformance('websocketTransport', ({ backend }) =>
  serverTransportSetup(backend, (url, options) => websocketTransport({ url, WebSocket, ...options })),
)

describe('websocketTransport()', () => {
  it('accepts the ws package and the browser WebSocket as constructors (types)', () => {
    const fromWs: WebSocketConstructor = WebSocket
    const fromBrowser: WebSocketConstructor | undefined = (globalThis as { WebSocket?: typeof globalThis.WebSocket }).WebSocket
    expect(fromWs).toBeTypeOf('function')
    expect(fromBrowser === undefined || typeof fromBrowser === 'function').toBe(true)
  })

  it("throws a TransportError telling to pass { WebSocket } (e.g. from 'ws') when the runtime has none", () => {
    const global = globalThis as { WebSocket?: unknown }
    const saved = global.WebSocket
    delete global.WebSocket
    try {
      expect(() => websocketTransport({ url: 'http://127.0.0.1:1' })).toThrow(TransportError)
      expect(() => websocketTransport({ url: 'http://127.0.0.1:1' })).toThrow(/Pass a WebSocket constructor, e\.g\. from 'ws'/)
    } finally {
      if (saved !== undefined) global.WebSocket = saved
    }
  })

  it('throws a TransportError for a URL that is not http(s) or ws(s)', () => {
    expect(() => websocketTransport({ url: 'not a url', WebSocket })).toThrow(TransportError)
    expect(() => websocketTransport({ url: 'ftp://example.com', WebSocket })).toThrow(/http:\/\//)
  })

  it('accepts a ws:// base URL with a trailing slash', async () => {
    const backend = memoryBackend()
    const server = await createSyncServer({ backend, port: 0 })
    const transport = websocketTransport({ url: `ws://127.0.0.1:${server.port}/`, WebSocket })
    const online = new Promise<void>((resolve) => transport.connect({ storeId: 'ws-url', onEvents() {}, onStatus: (s) => s.state === 'online' && resolve() }))
    await online
    expect(await transport.pull({ storeId: 'ws-url', since: 0 })).toMatchObject({ type: 'pulled', head: 0 })
    await transport.close()
    await server.close()
  })

  it('drops a connection that stays silent for two heartbeat intervals and reconnects by itself', async () => {
    // a server that accepts and then never says anything, not even a ping
    const silent = new WebSocketServer({ port: 0, host: '127.0.0.1' })
    await new Promise((resolve) => silent.once('listening', resolve))
    let accepted = 0
    const secondConnection = new Promise<void>((resolve) => silent.on('connection', () => ++accepted === 2 && resolve()))
    const { port } = silent.address() as { port: number }
    const statuses: TransportStatus['state'][] = []
    const transport = websocketTransport({ url: `http://127.0.0.1:${port}`, WebSocket, heartbeatMs: 40 })
    await transport.connect({ storeId: 'silent', onEvents() {}, onStatus: (s) => statuses.push(s.state) })
    await secondConnection
    expect(statuses.slice(0, 3)).toEqual(['connecting', 'online', 'offline'])
    await transport.close()
    for (const client of silent.clients) client.terminate()
    await new Promise((resolve) => silent.close(resolve))
  })

  it('keeps an idle connection that hears the server keepalive', async () => {
    const backend = memoryBackend()
    const server = await createSyncServer({ backend, port: 0, pingIntervalMs: 10 })
    let frames = 0
    let heardEnough!: () => void
    const enough = new Promise<void>((resolve) => (heardEnough = resolve))
    // counts what the server sends, to wait for many heartbeat intervals without sleeping
    class CountingWebSocket extends WebSocket {
      constructor(...args: ConstructorParameters<typeof WebSocket>) {
        super(...args)
        this.on('message', () => ++frames === 20 && heardEnough())
      }
    }
    const statuses: TransportStatus['state'][] = []
    const transport = websocketTransport({ url: server.url, WebSocket: CountingWebSocket, heartbeatMs: 50 })
    await transport.connect({ storeId: 'idle', onEvents: () => expect.fail('keepalives are not events'), onStatus: (s) => statuses.push(s.state) })
    await enough
    expect(statuses).toEqual(['connecting', 'online'])
    await transport.close()
    await server.close()
  })
})
