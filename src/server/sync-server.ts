import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { createHttpHandler } from './http-handler.js'
import { resolveOptions, type SyncServerOptions } from './server-options.js'
import { attachWebSocket } from './websocket-handler.js'

export { createHttpHandler, type HttpHandler } from './http-handler.js'
export { attachWebSocket, type WebSocketAttachment } from './websocket-handler.js'
export type { AuthenticateContext, ServerLimits, SyncServerOptions } from './server-options.js'

/** A running sync server, as `createSyncServer` resolves it. */
export interface SyncServer {
  /** Base URL to hand to transports, e.g. 'http://127.0.0.1:8787'. */
  readonly url: string
  readonly port: number
  /** Closes WebSockets (1001), answers held long-polls, stops listening. The backend stays open: close it yourself. */
  close(): Promise<void>
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
  resolveOptions(options)
  const host = options.host ?? '127.0.0.1'
  const handler = createHttpHandler(options)
  const server = createServer((request, response) => handler(request, response))
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
