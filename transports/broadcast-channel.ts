/**
 * PROTOCOL.md over a BroadcastChannel: the transport, with the optional host
 * election of `host: 'auto'`. Message shapes and invariants B1–B3 are in
 * broadcast-channel-client.ts; the host side is broadcast-channel-host.ts.
 */
import { TransportError } from '../src/errors.js'
import type { Transport } from '../src/transport.js'
import { type BroadcastChannelClientOptions, broadcastChannelClient } from './broadcast-channel-client.js'
import { hostBroadcastChannel } from './broadcast-channel-host.js'
import { campaignForHost, type LockManagerLike } from './tab-election.js'

export type { BroadcastChannelHost, HostBroadcastChannelOptions } from './broadcast-channel-host.js'
export { broadcastTabLinks, type TabLinkOptions } from './tab-link.js'
export type { LockManagerLike }
export { hostBroadcastChannel }

/** Options of `broadcastChannelTransport`. */
export interface BroadcastChannelTransportOptions extends BroadcastChannelClientOptions {
  /**
   * `'auto'`: tabs elect one host among themselves with Web Locks; its log lives in IndexedDB, and
   * nothing reaches a sync server (the server-less setup). Without it, a host runs elsewhere.
   */
  host?: 'auto'
  /** Web Locks for `host: 'auto'`; default `navigator.locks`. */
  locks?: LockManagerLike
}

/**
 * Connects a store to a host on a BroadcastChannel (same-origin tabs, workers,
 * Node worker_threads). With `host: 'auto'`, one tab hosts and the others are
 * its clients; when that tab closes, the next one takes over the same log.
 * @example createStore({ schema, transport: broadcastChannelTransport({ channel: 'todos', host: 'auto' }) })
 */
export function broadcastChannelTransport(options: BroadcastChannelTransportOptions): Transport {
  if (options.host !== 'auto') return broadcastChannelClient(options)
  const { channel } = options
  return broadcastChannelClient(options, (onError) => {
    const locks = options.locks ?? globalThis.navigator?.locks
    if (!locks)
      throw new TransportError(
        "broadcastChannelTransport: host: 'auto' needs Web Locks (navigator.locks); pass options.locks, or run hostBroadcastChannel() yourself",
        { retryable: false },
      )
    return campaignForHost({ channel, locks, serve: (backend, epoch) => hostBroadcastChannel({ channel, backend, epoch }), onError })
  })
}
