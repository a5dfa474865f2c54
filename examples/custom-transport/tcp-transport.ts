// The client half of a custom transport: NDJSON over TCP to `serveTcp`.
// It holds no sync logic. It connects and reconnects with backoff, keeps a
// request table with timeouts, rejects what is in flight when the connection
// drops, reports online/offline, and treats a server silent for two heartbeat
// intervals as dead.
import { connect as dialTcp, type Socket } from 'node:net'
import {
  backoffDelay,
  createRequestTable,
  type PullRequest,
  type PullResponse,
  type PushRequest,
  type PushResponse,
  type Transport,
  TransportError,
  type TransportHandlers,
  transportRules,
} from 'tidelog'

/** Options of `tcpTransport`. */
export interface TcpTransportOptions {
  port: number
  /** Default '127.0.0.1'. */
  host?: string
  /** Sent in the hello; the server may refuse it (`unauthorized`). */
  token?: string
  /** A request without an answer after this long rejects with a retryable TransportError. Default 30_000. */
  requestTimeoutMs?: number
  /** Silence for two of these intervals counts as a dead server. Keep it at least the server's keepaliveMs. Default 15_000. */
  heartbeatMs?: number
}

interface ServerLine {
  type?: unknown
  rid?: unknown
  events?: unknown
  head?: unknown
  code?: unknown
  message?: unknown
  retryable?: unknown
}

const errorOf = (m: ServerLine) =>
  new TransportError(`tcpTransport: the server answered ${String(m.code)}: ${String(m.message)}`, {
    retryable: m.retryable === true,
    protocolCode: String(m.code),
  })

/**
 * Syncs one store over one TCP connection to `serveTcp`.
 * @example createStore({ schema, transport: tcpTransport({ port: 9000, token }) })
 */
export function tcpTransport(options: TcpTransportOptions): Transport {
  const requestTimeoutMs = options.requestTimeoutMs ?? 30_000
  const heartbeatMs = options.heartbeatMs ?? 15_000
  // data: the answer types the request expects
  const requests = createRequestTable<readonly string[]>({
    timeoutMs: requestTimeoutMs,
    timeoutError: (expect) => new TransportError(`tcpTransport: no answer (${expect.join(' or ')}) within ${requestTimeoutMs} ms; retry.`),
  })
  let handlers: TransportHandlers | undefined
  let socket: Socket | undefined
  let online = false
  let closed = false
  // the lifecycle rules and messages every transport shares: closed stays closed, one store per transport
  const rules = transportRules('tcpTransport')
  let attempt = 0
  let retryTimer: ReturnType<typeof setTimeout> | undefined

  const retryLater = () => {
    if (!closed) retryTimer = setTimeout(() => void dial(), backoffDelay(attempt++))
  }

  /** One connection attempt; resolves once it is online or has failed (connect() awaits the first). */
  const dial = () =>
    new Promise<void>((settle) => {
      if (closed || !handlers) return settle()
      const { storeId, onStatus, onEvents } = handlers
      onStatus({ state: 'connecting' })
      const s = dialTcp({ host: options.host ?? '127.0.0.1', port: options.port })
      socket = s
      s.setEncoding('utf8')
      s.setNoDelay(true)
      let reason: TransportError | undefined // why the server ended it, when it said so
      let heard = true
      let silentTicks = 0
      let buffer = ''
      // counted in ticks, not ms, so that a late timer cannot drop a live connection
      const heartbeat = setInterval(() => {
        silentTicks = heard ? 0 : silentTicks + 1
        heard = false
        if (silentTicks >= 2) {
          reason = new TransportError(`tcpTransport: nothing heard from the server for ${2 * heartbeatMs} ms; reconnecting.`)
          s.destroy()
        }
      }, heartbeatMs)

      const receive = (m: ServerLine) => {
        if (m.type === 'welcome') {
          online = true
          attempt = 0
          onStatus({ state: 'online' })
          return settle()
        }
        if (m.type === 'events') {
          // an empty batch is the server's keepalive
          if (Array.isArray(m.events) && m.events.length > 0) onEvents(m.events, Number(m.head))
          return
        }
        const request = requests.take(m.rid)
        if (!request) {
          if (m.type === 'error') reason = errorOf(m) // about the connection itself, e.g. unauthorized
          return
        }
        if (m.type === 'error') return request.reject(errorOf(m))
        if (typeof m.type !== 'string' || !request.data.includes(m.type)) {
          return request.reject(
            new TransportError(`tcpTransport: the server answered ${String(m.type)}, expected ${request.data.join(' or ')}.`, { retryable: false }),
          )
        }
        const { v: _v, rid: _rid, ...answer } = m as ServerLine & { v?: unknown }
        request.resolve(answer)
      }

      s.on('connect', () => s.write(`${JSON.stringify({ v: 1, type: 'hello', storeId, token: options.token })}\n`))
      s.on('data', (chunk: string) => {
        heard = true
        buffer += chunk
        for (let end = buffer.indexOf('\n'); end >= 0; end = buffer.indexOf('\n')) {
          const text = buffer.slice(0, end)
          buffer = buffer.slice(end + 1)
          try {
            receive(JSON.parse(text))
          } catch {
            // a line that is not JSON is ignored; its request times out
          }
        }
      })
      s.on('error', (error) => (reason ??= new TransportError(`tcpTransport: ${error.message}`, { cause: error })))
      s.on('close', () => {
        clearInterval(heartbeat)
        if (socket !== s) return settle()
        socket = undefined
        online = false
        const error = reason ?? new TransportError('tcpTransport: the server closed the connection; reconnecting.')
        requests.rejectAll(error) // in flight on this connection: never answered now
        if (!closed) onStatus({ state: 'offline', error })
        retryLater()
        settle()
      })
    })

  const request = <T>(message: PullRequest | PushRequest, type: 'pull' | 'push', expect: readonly string[]): Promise<T> => {
    if (closed || !socket || !online) return Promise.reject(rules.cannotSend(closed))
    const { rid, answer } = requests.open<T>(expect)
    socket.write(`${JSON.stringify({ v: 1, type, rid, ...message })}\n`)
    return answer
  }

  return {
    async connect(h) {
      rules.checkConnect(closed, handlers !== undefined)
      handlers = h
      await dial()
    },
    pull: (r: PullRequest) => request<PullResponse>(r, 'pull', ['pulled']),
    push: (r: PushRequest) => request<PushResponse>(r, 'push', ['pushed', 'rejected']),
    async close() {
      if (closed) return
      closed = true
      clearTimeout(retryTimer)
      requests.rejectAll(rules.closed())
      online = false
      socket?.destroy()
      socket = undefined
      handlers?.onStatus({ state: 'offline' })
    },
  }
}
