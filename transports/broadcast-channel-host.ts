/**
 * The host side of the BroadcastChannel mapping: a server session
 * (src/server/session.ts) per client on one channel. Message shapes and
 * invariants B1–B3 are described in broadcast-channel-client.ts.
 */
import { randomId } from '../src/ids.js'
import { createServerSession, type ServerSession } from '../src/server/session.js'
import type { SyncBackend } from '../src/transport.js'
import { type HostSends, routed } from './broadcast-channel-messages.js'

/** Options of `hostBroadcastChannel`. */
export interface HostBroadcastChannelOptions {
  /** BroadcastChannel name the clients use. */
  channel: string
  backend: SyncBackend
  /** Fencing epoch stamped on every answer; hosts taking over a log use increasing epochs. Default 0. */
  epoch?: number
  /** A client not heard from (requests or heartbeat pings) for this long is forgotten. Default 180 000 ms. */
  clientTtlMs?: number
}

/** A running host; `close()` tells its clients it left. */
export interface BroadcastChannelHost {
  readonly hostId: string
  readonly epoch: number
  close(): Promise<void>
}

interface Client {
  session: ServerSession
  seen: number
}

/**
 * Answers protocol requests arriving on a BroadcastChannel from a backend, for
 * a worker, a Node process or the tab elected by `host: 'auto'`.
 * @example const host = hostBroadcastChannel({ channel: 'todos', backend: memoryBackend() })
 */
export function hostBroadcastChannel(options: HostBroadcastChannelOptions): BroadcastChannelHost {
  const { backend, epoch = 0, clientTtlMs = 180_000 } = options
  const hostId = randomId()
  const bc = new BroadcastChannel(options.channel)
  const clients = new Map<string, Client>()
  let live = true

  const send = (to: string, msg: HostSends) => {
    if (live) bc.postMessage({ ...msg, from: hostId, to, epoch })
  }
  const forget = (id: string) => {
    clients.get(id)?.session.close()
    clients.delete(id)
  }
  const stop = () => {
    live = false
    for (const id of [...clients.keys()]) forget(id)
    clearInterval(sweeper)
    bc.close()
  }

  const clientOf = (id: string): Client => {
    let client = clients.get(id)
    if (!client) {
      // the channel has no buffer to fill: every send is taken (true), so no backpressure applies
      const session = createServerSession({
        backend,
        label: 'BroadcastChannel host',
        wire: {
          send: (text) => {
            send(id, JSON.parse(text) as HostSends)
            return true
          },
        },
        onError: (error, context) => console.error(`tidelog broadcast-channel host: ${context}: ${(error as Error)?.message ?? error}`),
      })
      client = { session, seen: 0 }
      clients.set(id, client)
    }
    client.seen = Date.now()
    return client
  }

  // B3 holds per client: each session keeps its own cursor; forgotten clients learn it from the next heartbeat
  const sweeper = setInterval(
    () => {
      const now = Date.now()
      for (const [id, c] of clients) if (now - c.seen > clientTtlMs) forget(id)
    },
    Math.min(clientTtlMs, 60_000),
  )
  ;(sweeper as { unref?: () => void }).unref?.()

  bc.onmessage = (event: MessageEvent) => {
    const m = routed(event.data)
    if (!live || m === undefined || m.from === hostId) return
    if (m.type === 'host') {
      if ('epoch' in m && typeof m.epoch === 'number' && m.epoch > epoch) stop() // B2
      return
    }
    if (m.to !== hostId && !(m.to === '*' && m.type === 'ping')) return
    if (m.type === 'ping') {
      const client = clients.get(m.from)
      if (client) client.seen = Date.now()
      return send(m.from, { v: 1, type: 'host', streaming: client?.session.streaming ?? false })
    }
    if (m.type === 'bye') return forget(m.from)
    const { from: _from, to: _to, ...message } = m
    clientOf(m.from).session.receive(message)
  }
  send('*', { v: 1, type: 'host' })

  return {
    hostId,
    epoch,
    async close() {
      send('*', { v: 1, type: 'bye' })
      if (live) stop()
    },
  }
}
