import { WebSocket } from 'ws'
import type { Transport } from 'tidelog'
import { createSyncServer, memoryBackend } from 'tidelog/server'

/**
 * The `runTransportConformance` setup for a transport that talks to the sync
 * server: a memory backend behind a server on a random port, which the kit can
 * stop and start again on the same port.
 */
export async function serverTransportSetup(makeTransport: (url: string) => Transport) {
  const backend = memoryBackend()
  let server = await createSyncServer({ backend, port: 0 })
  const { port, url } = server
  return {
    backend,
    transport: () => makeTransport(url),
    stopServer: () => server.close(),
    startServer: async () => {
      server = await createSyncServer({ backend, port })
    },
    teardown: async () => {
      await server.close()
      await backend.close()
    },
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
