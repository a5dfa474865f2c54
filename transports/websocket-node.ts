// `tidelog/transports/websocket` under Node (the package's `node` export
// condition): the same transport, with `WebSocket` from 'ws' as the default
// when the runtime has no global WebSocket (Node 20). Browser bundles resolve
// the plain transports/websocket.ts and never see 'ws'.
import { WebSocket as WsWebSocket } from 'ws'
import type { Transport } from '../src/transport.js'
import { type WebSocketConstructor, type WebSocketTransportOptions, websocketTransport as withConstructor } from './websocket.js'

export type { TokenSource, WebSocketConstructor, WebSocketLike, WebSocketTransportOptions } from './websocket.js'

/**
 * Syncs over one WebSocket per store, reconnecting by itself with backoff.
 * In Node it needs nothing more than the URL: without a global WebSocket it uses 'ws'.
 * @example websocketTransport({ url: 'http://127.0.0.1:8787' })
 */
export function websocketTransport(options: WebSocketTransportOptions): Transport {
  const global = (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket
  return withConstructor({ ...options, WebSocket: options.WebSocket ?? global ?? (WsWebSocket as unknown as WebSocketConstructor) })
}
