import { backoffDelay } from '../src/backoff.js'
import { TransportError } from '../src/errors.js'
import type { ConfirmedEvent, ErrorMessage, PullRequest, PullResponse, PushRequest, PushResponse } from '../src/protocol.js'
import { type Transport, type TransportHandlers, transportRules } from '../src/transport.js'
import { expectType, protocolError, resolveToken, routeUrl, type TokenSource } from './shared.js'

export type { TokenSource } from './shared.js'

/** Options of `httpTransport`. */
export interface HttpTransportOptions {
  /** The sync server's base URL (`server.url`); `/pull`, `/push` and `/health` are found on it. */
  url: string
  token?: TokenSource
  /** A fetch implementation; default `globalThis.fetch`. */
  fetch?: typeof globalThis.fetch
  /** How long one long-poll asks the server to hold (the server caps it). Default 25. */
  waitSeconds?: number
  /** A request (besides the long-poll's hold) without an answer after this long rejects with a retryable TransportError. Default 30_000. */
  requestTimeoutMs?: number
}

/**
 * Syncs over plain HTTP: POST /pull and /push for requests, and a long-poll
 * loop (GET /pull?wait=) for live events once a pull reached the head. Works
 * wherever fetch does, also through proxies that drop WebSockets.
 * @example httpTransport({ url: 'https://sync.example.com', token: () => getToken() })
 */
export function httpTransport(options: HttpTransportOptions): Transport {
  const serverOrigin = new URL(routeUrl(options.url, '/pull', 'http')).origin // fails now on a malformed URL
  // a page of another origin is also refused as a network error when the server does not list it (CORS)
  const page = (globalThis as { location?: { origin?: string } }).location?.origin
  const crossOrigin =
    page && page !== 'null' && serverOrigin !== page
      ? ` (this page, ${page}, is on another origin than the server: the server must list it, allowedOrigins / tidelog serve --allow-origin ${page})`
      : ''
  const doFetch = options.fetch ?? ((input, init) => globalThis.fetch(input, init))
  // at least 1 s: a long-poll that does not hold would spin
  const waitSeconds = Math.max(1, options.waitSeconds ?? 25)
  const requestTimeoutMs = options.requestTimeoutMs ?? 30_000
  const aborts = new Set<AbortController>()
  let handlers: TransportHandlers | undefined
  let token: Promise<string | undefined> | undefined
  let online = false
  let closed = false
  let attempt = 0
  let probeTimer: ReturnType<typeof setTimeout> | undefined
  let cursor = 0 // last seq the engine has been given, by a page that reached the head or by the long-poll
  let polling = false

  const rules = transportRules('httpTransport')

  const setOnline = () => {
    if (online || closed) return
    online = true
    attempt = 0
    clearTimeout(probeTimer)
    probeTimer = undefined
    handlers?.onStatus({ state: 'online' })
  }

  // A request could not reach the server: report offline once, ask the token again later, probe /health with backoff.
  const setOffline = (error: TransportError) => {
    if (closed) return
    token = undefined
    cursor = 0 // like a new WebSocket connection: live events restart with the next pull that reaches the head
    if (online) {
      online = false
      handlers?.onStatus({ state: 'offline', error })
    }
    probeTimer ??= setTimeout(() => void probe(), backoffDelay(attempt++))
  }

  async function call(
    method: 'GET' | 'POST',
    route: string,
    query: Record<string, string | number | undefined>,
    body: object | undefined,
    timeoutMs: number,
  ): Promise<unknown> {
    if (closed) throw rules.closed()
    const abort = new AbortController()
    aborts.add(abort)
    const timer = setTimeout(() => abort.abort(), timeoutMs)
    let status: number
    let text: string
    try {
      token ??= resolveToken(options.token)
      const bearer = await token
      const headers: Record<string, string> = body ? { 'content-type': 'application/json' } : {}
      if (bearer !== undefined) headers.authorization = `Bearer ${bearer}`
      const response = await doFetch(routeUrl(options.url, route, 'http', query), {
        method,
        headers,
        body: body && JSON.stringify({ v: 1, ...body }),
        signal: abort.signal,
      })
      status = response.status
      text = await response.text()
    } catch (cause) {
      if (closed) throw rules.closed()
      const timedOut = abort.signal.aborted
      const error = new TransportError(
        `httpTransport: ${timedOut ? `no answer within ${timeoutMs} ms` : `cannot reach the sync server: ${(cause as Error).message}${crossOrigin}`}.`,
        { cause },
      )
      setOffline(error)
      throw error
    } finally {
      clearTimeout(timer)
      aborts.delete(abort)
    }
    let answer: { type?: unknown }
    try {
      answer = JSON.parse(text)
    } catch {
      throw new TransportError(`httpTransport: the server answered ${status} without a protocol message.`, { retryable: status >= 500 })
    }
    if (status === 401) token = undefined // ask for a fresh token next time
    if (answer?.type === 'error') throw protocolError(answer as ErrorMessage)
    setOnline()
    return answer
  }

  async function probe(): Promise<void> {
    probeTimer = undefined
    if (closed || online) return
    handlers?.onStatus({ state: 'connecting' })
    try {
      // a probe is small: a short timeout, so that a request stuck on a connection the server closed is retried soon
      await call('GET', '/health', {}, undefined, Math.min(requestTimeoutMs, 3000))
    } catch (error) {
      if (closed || online) return
      handlers?.onStatus({ state: 'offline', error: error as Error })
      probeTimer ??= setTimeout(() => void probe(), backoffDelay(attempt++))
    }
  }

  // Delivers what the server has past `cursor`, then asks it to hold until there is more.
  async function poll() {
    if (polling) return
    polling = true
    try {
      while (!closed && handlers) {
        const query = { storeId: handlers.storeId, since: cursor, wait: waitSeconds }
        const page = expectType<PullResponse>(await call('GET', '/pull', query, undefined, requestTimeoutMs + waitSeconds * 1000), ['pulled'], 'long-poll')
        // a pull answered meanwhile may have moved the cursor past part of this page
        const fresh = page.events.filter((e: ConfirmedEvent) => e.seq > cursor)
        if (fresh.length === 0) continue
        cursor = fresh[fresh.length - 1]!.seq
        handlers.onEvents(fresh, page.head)
      }
    } catch (error) {
      // the engine pulls again once online, which restarts the loop
      if (!closed) setOffline(error instanceof TransportError ? error : new TransportError(String(error), { cause: error }))
    } finally {
      polling = false
    }
  }

  return {
    async connect(h) {
      rules.checkConnect(closed, handlers !== undefined)
      handlers = h
      await probe()
    },
    async pull(request: PullRequest): Promise<PullResponse> {
      const page = expectType<PullResponse>(
        await call('POST', '/pull', { storeId: request.storeId }, { type: 'pull', ...request }, requestTimeoutMs),
        ['pulled'],
        'pull',
      )
      if (!page.more) {
        cursor = Math.max(cursor, request.since + page.events.length)
        void poll()
      }
      return page
    },
    async push(request: PushRequest): Promise<PushResponse> {
      return expectType<PushResponse>(
        await call('POST', '/push', { storeId: request.storeId }, { type: 'push', ...request }, requestTimeoutMs),
        ['pushed', 'rejected'],
        'push',
      )
    },
    async close() {
      if (closed) return
      closed = true
      clearTimeout(probeTimer)
      for (const abort of aborts) abort.abort()
      handlers?.onStatus({ state: 'offline' })
    },
  }
}
