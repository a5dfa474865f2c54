import { type IncomingMessage, type Server, STATUS_CODES } from 'node:http'
import type { Duplex } from 'node:stream'
import { WebSocketServer } from 'ws'
import { errorMessage, isValidStoreId, type ServerMessage, STORE_ID_RULE } from '../protocol.js'
import { isAllowed, originOf, originRefusal, resolveOptions, type SyncServerOptions, tokenOf } from './server-options.js'
import { errorAnswer } from './session.js'
import { type SyncConnection, serveConnection } from './sync-connection.js'

/** What `attachWebSocket` returns: a handle to close every WebSocket it accepted. */
export interface WebSocketAttachment {
  /** Stops accepting upgrades and closes every connection (1001), terminating peers that do not answer. */
  close(): Promise<void>
}

/** Sockets serving a WebSocket peer; a connection limit never closes them to make room. */
export const webSocketSockets = new WeakSet<object>()

// ws sets this as its own limit; a frame whose header declares more is refused before its payload is buffered (and answered too_large + 4413, see sync-connection.ts)
const SLACK_BYTES = 64 * 1024

function refuse(socket: Duplex, status: number, body: ServerMessage) {
  const text = JSON.stringify(body)
  socket.once('finish', () => socket.destroy())
  socket.end(
    `HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\nConnection: close\r\nContent-Type: application/json; charset=utf-8\r\n` +
      `Content-Length: ${Buffer.byteLength(text)}\r\n\r\n${text}`,
  )
}

/**
 * Serves WebSocket `/sync?storeId=` on an existing `http.Server`. The token
 * is checked in the upgrade handler, so a refused peer gets HTTP 401 and never
 * a socket. Upgrades on other paths are left to other listeners.
 * @example const ws = attachWebSocket(httpServer, { backend }); ... await ws.close()
 */
export function attachWebSocket(server: Server, options: SyncServerOptions): WebSocketAttachment {
  const opts = resolveOptions(options)
  // up to maxMessageBytes + slack, an oversized message gets a readable too_large error and close 4413
  const wss = new WebSocketServer({
    noServer: true,
    maxPayload: opts.limits.maxMessageBytes + Math.min(opts.limits.maxMessageBytes, SLACK_BYTES),
    perMessageDeflate: false,
  })
  const connections = new Set<SyncConnection>()
  let closing = false

  const timer = setInterval(() => {
    const now = Date.now()
    for (const connection of connections) connection.tick(now)
  }, opts.pingIntervalMs)
  timer.unref()

  async function accept(request: IncomingMessage, socket: Duplex, head: Buffer, url: URL) {
    const onError = () => socket.destroy()
    socket.on('error', onError)
    if (closing) return refuse(socket, 503, errorMessage('internal', 'The server is shutting down; reconnect in a moment.'))
    const storeId = url.searchParams.get('storeId')
    if (!isValidStoreId(storeId)) {
      return refuse(socket, 400, errorMessage('invalid_message', `Connect to /sync?storeId=<id>, where id is ${STORE_ID_RULE}`))
    }
    // with allowedOrigins set, a page of another origin must be listed (a page cannot forge its Origin)
    const { origin, verdict } = originOf(opts, request)
    let allowed = opts.allowedOrigins === undefined || verdict !== 'refused'
    try {
      allowed &&= await isAllowed(opts, storeId, tokenOf(request, url, true), request)
    } catch (error) {
      return refuse(socket, 500, errorAnswer(error, 'authenticate', undefined, opts.onError))
    }
    if (!allowed) {
      const refusal = errorMessage(
        'unauthorized',
        verdict === 'refused' && opts.allowedOrigins !== undefined
          ? originRefusal(origin!)
          : `Not allowed to sync storeId "${storeId}": send a valid token (Authorization: Bearer <token>, or ?token= from browsers).`,
      )
      // a browser's WebSocket never sees the status of a refused upgrade (only close 1006), so a
      // browser (it always sends Origin) is let in just to be told: the error, then close 4401
      if (request.headers.origin === undefined || closing || socket.destroyed) return refuse(socket, 401, refusal)
      socket.off('error', onError)
      return wss.handleUpgrade(request, socket, head, (ws) => {
        ws.on('error', () => {})
        ws.send(JSON.stringify(refusal), () => ws.close(4401, 'unauthorized'))
        setTimeout(() => ws.terminate(), 1000).unref()
      })
    }
    if (closing || socket.destroyed) return socket.destroy()
    socket.off('error', onError)
    webSocketSockets.add(socket)
    wss.handleUpgrade(request, socket, head, (ws) => {
      const connection = serveConnection(ws, storeId, opts)
      connections.add(connection)
      ws.once('close', () => connections.delete(connection))
    })
  }

  const onUpgrade = (request: IncomingMessage, socket: Duplex, head: Buffer) => {
    const url = new URL(request.url ?? '/', 'http://localhost')
    if (url.pathname !== '/sync') {
      if (server.listenerCount('upgrade') === 1) {
        refuse(socket, 404, errorMessage('invalid_message', 'WebSocket connections are served on /sync?storeId=<id>.'))
      }
      return
    }
    accept(request, socket, head, url).catch((error) => {
      opts.onError(error, 'WebSocket upgrade')
      socket.destroy()
    })
  }
  server.on('upgrade', onUpgrade)

  return {
    async close() {
      closing = true
      clearInterval(timer)
      server.off('upgrade', onUpgrade)
      await Promise.all([...connections].map((connection) => connection.close(1001, 'server shutting down')))
      wss.close()
    },
  }
}
