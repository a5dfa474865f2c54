import { backoffDelay } from '../src/backoff.js'
import { TransportError } from '../src/errors.js'
import type { ErrorMessage, PullRequest, PullResponse, PushRequest, PushResponse } from '../src/protocol.js'
import { createRequestTable } from '../src/request-table.js'
import { type Transport, type TransportHandlers, transportRules } from '../src/transport.js'
import { expectType, protocolError, resolveToken, routeUrl, type TokenSource } from './shared.js'

export type { TokenSource } from './shared.js'

/** The part of the WebSocket API the transport uses; the browser's WebSocket and the `ws` package both fit. */
export interface WebSocketLike {
  readonly readyState: number
  onopen: ((event: any) => void) | null
  onmessage: ((event: any) => void) | null
  onclose: ((event: any) => void) | null
  onerror: ((event: any) => void) | null
  send(data: string): void
  close(code?: number, reason?: string): void
}

/** A WebSocket constructor: `globalThis.WebSocket` in browsers, `WebSocket` from 'ws' in Node. */
export type WebSocketConstructor = new (url: string, ...rest: any[]) => WebSocketLike

/** Options of `websocketTransport`. */
export interface WebSocketTransportOptions {
  /** The sync server's base URL, `http://…` (as `server.url` gives it) or `ws://…`; `/sync` is appended. */
  url: string
  token?: TokenSource
  /** The WebSocket constructor; default: the global one, and under Node 'ws' when there is none. `WebSocket` from 'ws' also lets the token travel as a header. */
  WebSocket?: WebSocketConstructor
  /** Silence for two of these intervals counts as a dead connection. Keep it at least the server's ping interval. Default 30_000. */
  heartbeatMs?: number
  /** A request without an answer after this long rejects with a retryable TransportError. Default 30_000. */
  requestTimeoutMs?: number
}

// `ws` can send headers (so the token stays out of URLs and logs); browsers cannot.
const isWsPackage = (ctor: WebSocketConstructor) => typeof (ctor.prototype as { ping?: unknown })?.ping === 'function'

/**
 * Syncs over one WebSocket per store, reconnecting by itself with backoff;
 * live events arrive as the server streams them.
 * @example websocketTransport({ url: server.url, WebSocket }) // WebSocket from 'ws' in Node
 */
export function websocketTransport(options: WebSocketTransportOptions): Transport {
  const Ctor = options.WebSocket ?? (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket
  if (!Ctor) {
    throw new TransportError(
      "websocketTransport: this runtime has no global WebSocket. Pass a WebSocket constructor, e.g. from 'ws': import { WebSocket } from 'ws'; websocketTransport({ url, WebSocket }) (under Node, tidelog/transports/websocket does that by itself).",
      { retryable: false },
    )
  }
  routeUrl(options.url, '/sync', 'ws') // fail now on a malformed URL, not on every reconnect
  const heartbeatMs = options.heartbeatMs ?? 30_000
  const requestTimeoutMs = options.requestTimeoutMs ?? 30_000
  // data: the answer types the request expects
  const inFlight = createRequestTable<readonly string[]>({
    timeoutMs: requestTimeoutMs,
    timeoutError: (expect) =>
      new TransportError(`websocketTransport: no answer (${expect.join(' or ')}) within ${requestTimeoutMs} ms; the request may still be applied, retry it.`),
  })
  let handlers: TransportHandlers | undefined
  let socket: WebSocketLike | undefined
  let online = false
  let closed = false
  const rules = transportRules('websocketTransport')
  let attempt = 0
  let heard = false // anything from the server since the last heartbeat tick
  let retryTimer: ReturnType<typeof setTimeout> | undefined
  let heartbeat: ReturnType<typeof setInterval> | undefined

  const retryLater = () => {
    if (!closed) retryTimer = setTimeout(() => void dial(), backoffDelay(attempt++))
  }

  // `s` is the socket that went away; events of sockets already replaced are ignored.
  const lost = (s: WebSocketLike, error: TransportError) => {
    if (socket !== s) return
    socket = undefined
    online = false
    clearInterval(heartbeat)
    inFlight.rejectAll(error)
    handlers?.onStatus({ state: 'offline', error })
    retryLater()
  }

  // Answers go to their request by rid; an error without one is about the connection itself.
  const receive = (data: unknown, onConnectionError: (error: TransportError) => void) => {
    heard = true
    if (typeof data !== 'string') return
    let message: { type?: unknown; rid?: unknown; events?: unknown; head?: unknown }
    try {
      message = JSON.parse(data)
    } catch {
      return
    }
    if (message.type === 'events') {
      // empty batches are the server's keepalive
      if (Array.isArray(message.events) && message.events.length > 0) handlers?.onEvents(message.events, Number(message.head))
      return
    }
    const request = inFlight.take(message.rid)
    if (!request) {
      if (message.type === 'error') onConnectionError(protocolError(message as ErrorMessage))
      return
    }
    if (message.type === 'error') return request.reject(protocolError(message as ErrorMessage))
    try {
      request.resolve(expectType(message, request.data, 'request'))
    } catch (error) {
      request.reject(error as Error)
    }
  }

  async function dial(): Promise<void> {
    if (closed || !handlers) return
    const { storeId, onStatus } = handlers
    onStatus({ state: 'connecting' })
    let s: WebSocketLike
    try {
      const token = await resolveToken(options.token)
      if (closed) return
      const withHeader = isWsPackage(Ctor!) && token !== undefined
      const url = routeUrl(options.url, '/sync', 'ws', { storeId, token: withHeader ? undefined : token })
      s = withHeader ? new Ctor!(url, { headers: { authorization: `Bearer ${token}` } }) : new Ctor!(url)
    } catch (error) {
      const failure = new TransportError(`websocketTransport: could not open a connection: ${(error as Error).message}`, { cause: error })
      onStatus({ state: 'offline', error: failure })
      return retryLater()
    }
    socket = s
    // why the server refused or ended the connection, when it said so
    let refusal: TransportError | undefined
    return new Promise<void>((settle) => {
      s.onopen = () => {
        if (socket !== s) return
        online = true
        attempt = 0
        heard = true
        // counted in ticks, not ms, so that a late timer cannot drop a live connection
        let silentTicks = 0
        heartbeat = setInterval(() => {
          silentTicks = heard ? 0 : silentTicks + 1
          heard = false
          if (silentTicks < 2) return
          lost(s, new TransportError(`websocketTransport: nothing heard from the server for ${2 * heartbeatMs} ms; reconnecting.`))
          const ws = s as WebSocketLike & { terminate?: () => void }
          ws.terminate ? ws.terminate() : ws.close()
        }, heartbeatMs)
        onStatus({ state: 'online' })
        settle()
      }
      s.onmessage = (event: { data: unknown }) => {
        if (socket === s) receive(event.data, (error) => (refusal = error))
      }
      ;(s as { on?: (event: string, fn: () => void) => void }).on?.('ping', () => (heard = true))
      s.onerror = (event: { message?: string }) => {
        const message = event?.message ?? ''
        if (/\b401\b/.test(message)) {
          refusal ??= new TransportError('websocketTransport: the server refused the token (401); the token is asked again on the next attempt.', {
            protocolCode: 'unauthorized',
          })
        } else if (message) refusal ??= new TransportError(`websocketTransport: ${message}`)
      }
      s.onclose = (event: { code?: number; reason?: string }) => {
        const why = `connection closed (${event?.code ?? 'no code'}${event?.reason ? `: ${event.reason}` : ''})`
        lost(s, refusal ?? new TransportError(`websocketTransport: ${why}; reconnecting by itself.`))
        settle()
      }
    })
  }

  const request = <T>(message: object, expect: readonly string[]): Promise<T> => {
    const s = socket
    if (closed || !s || !online) return Promise.reject(rules.cannotSend(closed))
    const { rid, answer } = inFlight.open<T>(expect)
    try {
      s.send(JSON.stringify({ v: 1, rid, ...message }))
    } catch (error) {
      inFlight.take(rid)?.reject(new TransportError(`websocketTransport: could not send: ${(error as Error).message}`, { cause: error }))
    }
    return answer
  }

  return {
    async connect(h) {
      rules.checkConnect(closed, handlers !== undefined)
      handlers = h
      await dial()
    },
    pull: (req: PullRequest) => request<PullResponse>({ type: 'pull', ...req }, ['pulled']),
    push: (req: PushRequest) => request<PushResponse>({ type: 'push', ...req }, ['pushed', 'rejected']),
    async close() {
      if (closed) return
      closed = true
      clearTimeout(retryTimer)
      clearInterval(heartbeat)
      inFlight.rejectAll(new TransportError('websocketTransport was closed; the request was not answered.', { retryable: false }))
      const s = socket
      socket = undefined
      online = false
      if (s && s.readyState <= 1) s.close(1000, 'client closed')
      handlers?.onStatus({ state: 'offline' })
    },
  }
}
