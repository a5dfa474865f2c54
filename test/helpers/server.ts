import type { SyncBackend, Transport } from 'tidelog'
import { createSyncServer } from 'tidelog/server'
import type { TransportConformanceSetup, TransportKitOptions } from 'tidelog/testing'
import { WebSocket } from 'ws'

/** The token `serverTransportSetup`'s server refuses. */
export const REFUSED_TOKEN = 'refused-token'

/**
 * The `runTransportConformance` setup for a transport that talks to the sync
 * server: the kit's backend behind a server on a random port, which the kit
 * can stop and start again on the same port; the server refuses
 * `REFUSED_TOKEN`, which `refusedTransport` presents.
 */
export async function serverTransportSetup(
  backend: SyncBackend,
  makeTransport: (url: string, options: TransportKitOptions & { token?: string }) => Transport,
): Promise<TransportConformanceSetup> {
  const authenticate = ({ token }: { token: string | undefined }) => token !== REFUSED_TOKEN
  let server = await createSyncServer({ backend, port: 0, authenticate })
  const { port, url } = server
  return {
    transport: (options) => makeTransport(url, options),
    refusedTransport: (options) => makeTransport(url, { ...options, token: REFUSED_TOKEN }),
    stopServer: () => server.close(),
    startServer: async () => {
      server = await createSyncServer({ backend, port, authenticate })
    },
    teardown: () => server.close(),
  }
}

/** The HTTP status a WebSocket upgrade to `url` gets (101 when it is let in). */
export function upgradeStatus(url: string, headers: Record<string, string> = {}): Promise<number> {
  const socket = new WebSocket(url, { headers })
  socket.on('error', () => {})
  return new Promise((resolve) => {
    socket.on('open', () => {
      resolve(101)
      socket.close()
    })
    socket.on('unexpected-response', (request, response) => {
      resolve(response.statusCode!)
      request.destroy()
    })
  })
}
