import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo, Socket } from 'node:net'
import { createHttpHandler } from './http-handler.js'
import { type ResolvedLimits, resolveOptions, type SyncServerOptions } from './server-options.js'
import { attachWebSocket, webSocketSockets } from './websocket-handler.js'

export { createHttpHandler, type HttpHandler } from './http-handler.js'
export type { AuthenticateContext, ServerLimits, SyncServerOptions } from './server-options.js'
export { attachWebSocket, type WebSocketAttachment } from './websocket-handler.js'

/** A running sync server, as `createSyncServer` resolves it. */
export interface SyncServer {
  /** Base URL to hand to transports, e.g. 'http://127.0.0.1:8787'. */
  readonly url: string
  readonly port: number
  /** Closes WebSockets (1001), answers held long-polls, stops listening. The backend stays open: close it yourself. */
  close(): Promise<void>
}

interface ConnectionState {
  requests: number
  idleSince: number
  /** Closes the connection if no request arrives in time (slowloris: sockets that connect and say nothing). */
  deadline: ReturnType<typeof setTimeout> | undefined
}

/**
 * Keeps at most `maxConnections` connections open: at the limit, a new
 * connection closes the one idle the longest (no request in flight, not a
 * WebSocket), or is refused when none is idle. A connection that sends no
 * complete request headers within `headersTimeoutMs` of connecting, or of
 * its last answer, is closed. Idle sockets are what a flood of silent
 * connections is made of, so they give way to peers that talk.
 */
function guardConnections(server: Server, limits: ResolvedLimits) {
  const open = new Map<Socket, ConnectionState>()
  const expect = (socket: Socket, state: ConnectionState) => {
    clearTimeout(state.deadline)
    state.deadline = setTimeout(() => {
      if (state.requests === 0 && !webSocketSockets.has(socket)) socket.destroy()
    }, limits.headersTimeoutMs + limits.keepAliveTimeoutMs)
    state.deadline.unref()
  }
  server.on('connection', (socket: Socket) => {
    if (open.size >= limits.maxConnections) {
      let oldest: [Socket, ConnectionState] | undefined
      for (const entry of open) {
        const [idle, state] = entry
        if (state.requests === 0 && !webSocketSockets.has(idle) && (!oldest || state.idleSince < oldest[1].idleSince)) oldest = entry
      }
      if (!oldest) return socket.destroy()
      open.delete(oldest[0])
      clearTimeout(oldest[1].deadline)
      oldest[0].destroy()
    }
    const state: ConnectionState = { requests: 0, idleSince: Date.now(), deadline: undefined }
    open.set(socket, state)
    expect(socket, state)
    socket.once('close', () => {
      clearTimeout(state.deadline)
      open.delete(socket)
    })
  })
  server.on('request', (request: IncomingMessage, response: ServerResponse) => {
    const state = open.get(request.socket)
    if (!state) return
    state.requests++
    clearTimeout(state.deadline)
    response.once('close', () => {
      state.requests--
      state.idleSince = Date.now()
      if (state.requests === 0) expect(request.socket, state)
    })
  })
}

function urlHost(host: string): string {
  if (host === '0.0.0.0') return '127.0.0.1'
  if (host === '::') return '[::1]'
  return host.includes(':') ? `[${host}]` : host
}

/**
 * Starts one HTTP server that serves WebSocket /sync, POST /pull, POST /push,
 * long-poll GET /pull and GET /health over `backend`.
 * @example const server = await createSyncServer({ backend: memoryBackend(), port: 0 })
 */
export async function createSyncServer(options: SyncServerOptions): Promise<SyncServer> {
  const { limits } = resolveOptions(options)
  const host = options.host ?? '127.0.0.1'
  const handler = createHttpHandler(options)
  const server = createServer(
    {
      headersTimeout: Math.min(limits.headersTimeoutMs, limits.requestTimeoutMs),
      requestTimeout: limits.requestTimeoutMs,
      keepAliveTimeout: limits.keepAliveTimeoutMs,
      connectionsCheckingInterval: Math.min(1000, limits.headersTimeoutMs),
    },
    (request, response) => handler(request, response),
  )
  guardConnections(server, limits)
  const websockets = attachWebSocket(server, options)
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(options.port ?? 8787, host, () => {
      server.off('error', reject)
      resolve()
    })
  })
  const { port } = server.address() as AddressInfo
  let closing: Promise<void> | undefined
  return {
    url: `http://${urlHost(host)}:${port}`,
    port,
    close() {
      closing ??= (async () => {
        const stopped = new Promise<void>((resolve) => server.close(() => resolve()))
        await Promise.all([websockets.close(), handler.close()])
        server.closeIdleConnections()
        // requests still running get a moment to finish, then their connections are cut
        const cut = setTimeout(() => server.closeAllConnections(), 2000)
        await stopped
        clearTimeout(cut)
      })()
      return closing
    },
  }
}
