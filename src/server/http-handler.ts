import type { IncomingMessage, ServerResponse } from 'node:http'
import type { Socket } from 'node:net'
import { type ClientMessage, errorMessage, type ServerMessage } from '../protocol.js'
import { createInspector } from './inspector.js'
import {
  isAllowed,
  loggableUrl,
  originOf,
  originRefusal,
  type ResolvedOptions,
  resolveOptions,
  STATUS_OF,
  type SyncServerOptions,
  tokenOf,
} from './server-options.js'
import { answerRequest, errorAnswer, parseRequest, type SessionAnswer } from './session.js'
import { checkStaticDir, serveStaticFile } from './static-files.js'

/** A request handler for the HTTP routes; `close()` answers held long-polls and refuses new requests. */
export interface HttpHandler {
  (request: IncomingMessage, response: ServerResponse, next?: (error?: unknown) => void): void
  close(): Promise<void>
}

const ROUTES = 'tidelog serves POST /pull, POST /push, GET /pull?storeId=&since=&wait= (long-poll), GET /health and WebSocket /sync'

/** Reads a request body up to `limit` bytes; past it, stops reading and resolves 'too_large'. */
function readBody(request: IncomingMessage, limit: number): Promise<string | 'too_large'> {
  if (Number(request.headers['content-length']) > limit) return Promise.resolve('too_large')
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = []
    let size = 0
    const stop = () => {
      request.off('data', onData).off('end', onEnd).off('error', onError).off('close', onClose)
    }
    const onData = (chunk: Buffer) => {
      size += chunk.length
      if (size > limit) {
        stop()
        request.pause()
        resolve('too_large')
      } else chunks.push(chunk)
    }
    const onEnd = () => {
      stop()
      resolve(Buffer.concat(chunks).toString('utf8'))
    }
    const onError = (error: Error) => {
      stop()
      reject(error)
    }
    const onClose = () => onError(new Error('the client went away before sending the whole body'))
    request.on('data', onData).on('end', onEnd).on('error', onError).on('close', onClose)
  })
}

/** Turns a query parameter into a number when it is one, so that the protocol parser reports bad ones. */
function queryNumber(value: string | null): unknown {
  if (value === null) return undefined
  return /^\d+$/.test(value) ? Number(value) : value
}

/**
 * Requests of one connection, admitted `maxInFlight` at a time and only while
 * the connection's unsent answers stay under `maxBufferedBytes`: pipelined
 * requests from a peer that never reads wait (the socket paused, so the rest
 * stay in the kernel) instead of each building a page in memory.
 */
interface SocketGate {
  active: number
  waiting: (() => void)[]
  paused: boolean
  stalled: ReturnType<typeof setTimeout> | undefined
}

/**
 * Creates the handler of the HTTP routes (POST /pull, POST /push, long-poll
 * GET /pull, GET /health, and `staticDir` files) for users who run their own
 * `http.Server`; unknown routes go to `next` when given, else answer 404.
 * @example http.createServer(createHttpHandler({ backend })).listen(8787)
 */
export function createHttpHandler(options: SyncServerOptions): HttpHandler {
  const opts: ResolvedOptions = resolveOptions(options)
  checkStaticDir(opts.staticDir, opts.backend)
  const inspect = createInspector(opts)
  const { limits } = opts
  let closing = false
  const wakers = new Set<() => void>()
  const held = new Set<Promise<void>>()
  const gates = new WeakMap<Socket, SocketGate>()

  const send = (response: ServerResponse, status: number, text: string, close = false) => {
    if (response.headersSent || response.destroyed) return
    response.writeHead(status, {
      'content-type': 'application/json; charset=utf-8',
      'content-length': Buffer.byteLength(text),
      'cache-control': 'no-store',
      ...(close || closing ? { connection: 'close' } : {}),
    })
    response.end(text)
  }
  const answer = (response: ServerResponse, message: ServerMessage, close = false) =>
    send(response, message.type === 'error' ? STATUS_OF[message.code] : 200, JSON.stringify(message), close)
  const answerText = (response: ServerResponse, result: SessionAnswer) => send(response, result.code ? STATUS_OF[result.code] : 200, result.text)

  const gateOf = (socket: Socket): SocketGate => {
    let gate = gates.get(socket)
    if (!gate) {
      gate = { active: 0, waiting: [], paused: false, stalled: undefined }
      gates.set(socket, gate)
      socket.once('close', () => {
        clearTimeout(gate!.stalled)
        // requests still waiting for a slot have nobody left to answer: let them end
        for (const admit of gate!.waiting.splice(0)) admit()
      })
    }
    return gate
  }

  const runNext = (socket: Socket, gate: SocketGate) => {
    while (gate.active < limits.maxInFlight && gate.waiting.length > 0) {
      if (socket.writableLength > opts.maxBufferedBytes) {
        // the peer is not reading its answers: wait for it, drop it if it never does
        if (!gate.stalled) {
          gate.stalled = setTimeout(() => socket.destroy(), opts.stalledTimeoutMs)
          socket.once('drain', () => {
            clearTimeout(gate.stalled)
            gate.stalled = undefined
            runNext(socket, gate)
          })
        }
        break
      }
      gate.active++
      gate.waiting.shift()!()
    }
    const full = gate.waiting.length > 0 || gate.active >= limits.maxInFlight
    if (full !== gate.paused && !socket.destroyed) {
      gate.paused = full
      full ? socket.pause() : socket.resume()
    }
  }

  /**
   * Runs `work` once the connection may have another request in flight. A
   * request counts until its answer left for the socket: pipelined answers
   * wait in memory behind the ones before them, so "answered" is not enough.
   */
  const admitted = async (request: IncomingMessage, response: ServerResponse, work: () => Promise<void>) => {
    const socket = request.socket
    const gate = gateOf(socket)
    if (gate.waiting.length >= limits.maxInFlight * 4) {
      return answer(
        response,
        errorMessage('rate_limited', `More than ${limits.maxInFlight} requests in flight on this connection; wait for answers before sending more.`),
      )
    }
    await new Promise<void>((resolve) => {
      gate.waiting.push(resolve)
      runNext(socket, gate)
    })
    if (socket.destroyed) return
    let released = false
    const release = () => {
      if (released) return
      released = true
      gate.active--
      runNext(socket, gate)
    }
    response.once('finish', release).once('close', release)
    await work()
  }

  const allowed = async (response: ServerResponse, request: IncomingMessage, url: URL, storeId: string, rid?: string | number) => {
    try {
      if (await isAllowed(opts, storeId, tokenOf(request, url), request)) return true
      answer(response, errorMessage('unauthorized', `Not allowed to sync storeId "${storeId}": send a valid token as Authorization: Bearer <token>.`, rid))
    } catch (error) {
      answer(response, errorAnswer(error, 'authenticate', rid, opts.onError))
    }
    return false
  }

  const post = async (kind: 'pull' | 'push', request: IncomingMessage, response: ServerResponse, url: URL) => {
    // with ?storeId= the token is checked before a byte of the body is read
    const early = url.searchParams.get('storeId')
    if (early !== null) {
      const parsed = parseRequest({ v: 1, type: 'pull', storeId: early, since: 0 }, limits)
      if ('text' in parsed) return answerText(response, parsed)
      if (!(await allowed(response, request, url, early))) return
    }
    let body: string
    try {
      body = await readBody(request, limits.maxMessageBytes)
    } catch {
      return // the client went away mid-body: nobody is left to answer
    }
    if (body === 'too_large') {
      // close the connection: the rest of the body is never read
      return answer(response, errorMessage('too_large', `The message is larger than ${limits.maxMessageBytes} bytes; send smaller pushes.`), true)
    }
    const message = parseRequest(body, limits)
    if ('text' in message) return answerText(response, message)
    const rid = message.rid
    if (message.type !== kind) {
      return answer(
        response,
        errorMessage('invalid_message', `POST /${kind} takes a ${kind} message, not ${message.type}; send it to POST /${message.type}.`, rid),
      )
    }
    if (early !== null && message.storeId !== early) {
      return answer(
        response,
        errorMessage('invalid_message', `The body is for storeId "${message.storeId}" but the URL says "${early}"; send them the same.`, rid),
      )
    }
    if (early === null && !(await allowed(response, request, url, message.storeId, rid))) return
    answerText(response, await answerRequest(opts.backend, message, limits, opts.onError, `POST /${kind}`))
  }

  const longPoll = async (request: IncomingMessage, response: ServerResponse, url: URL) => {
    const q = url.searchParams
    const raw = {
      v: q.has('v') ? queryNumber(q.get('v')) : 1,
      type: 'pull',
      storeId: q.get('storeId') ?? undefined,
      since: queryNumber(q.get('since')),
      limit: queryNumber(q.get('limit')),
    }
    const message = parseRequest(raw, limits)
    if ('text' in message) return answerText(response, message)
    const waitParam = q.get('wait')
    if (waitParam !== null && !/^\d+(\.\d+)?$/.test(waitParam)) {
      return answer(response, errorMessage('invalid_message', `wait must be a number of seconds (at most ${opts.maxWaitSeconds}), got "${waitParam}".`))
    }
    if (message.type !== 'pull' || !(await allowed(response, request, url, message.storeId))) return
    const pull = message as ClientMessage & { type: 'pull' }
    const waitMs = Math.min(Number(waitParam ?? 0), opts.maxWaitSeconds) * 1000
    let wake!: () => void
    const woken = new Promise<void>((resolve) => (wake = resolve))
    // subscribe before the first pull, so that an append in between still wakes us
    const unsubscribe = opts.backend.subscribe(pull.storeId, (head) => head > pull.since && wake())
    const timer = setTimeout(wake, waitMs)
    wakers.add(wake)
    response.on('close', wake)
    try {
      let result = await answerRequest(opts.backend, pull, limits, opts.onError, 'GET /pull')
      if (result.page && result.page.events.length === 0 && waitMs > 0 && !closing) {
        await woken
        if (response.destroyed || response.writableEnded) return
        result = await answerRequest(opts.backend, pull, limits, opts.onError, 'GET /pull')
      }
      answerText(response, result)
    } finally {
      unsubscribe()
      clearTimeout(timer)
      wakers.delete(wake)
    }
  }

  const route = async (request: IncomingMessage, response: ServerResponse, next?: (error?: unknown) => void) => {
    const url = new URL(request.url ?? '/', 'http://localhost')
    const { pathname } = url
    const method = request.method ?? 'GET'
    const sync = pathname === '/pull' || pathname === '/push' || pathname === '/health' || pathname === '/inspect/events'
    if (sync && request.headers.origin !== undefined) {
      // CORS for pages of other origins (allowedOrigins): answers readable by them, and their preflights
      const { origin, verdict } = originOf(opts, request)
      if (verdict === 'allowed') {
        response.setHeader('access-control-allow-origin', origin!)
        response.setHeader('vary', 'Origin')
      }
      if (method === 'OPTIONS') {
        if (verdict !== 'allowed' && verdict !== 'same') return send(response, 403, JSON.stringify(errorMessage('unauthorized', originRefusal(origin!))))
        response.writeHead(204, {
          'access-control-allow-methods': 'GET, HEAD, POST',
          'access-control-allow-headers': 'authorization, content-type',
          'access-control-max-age': '600',
          'cache-control': 'no-store',
        })
        return void response.end()
      }
    }
    if (pathname === '/inspect' || pathname.startsWith('/inspect/')) return inspect(request, response, url)
    if (pathname === '/health') {
      if (method === 'GET' || method === 'HEAD') return send(response, 200, '{"ok":true}')
      response.setHeader('allow', 'GET, HEAD')
      return send(response, 405, JSON.stringify(errorMessage('invalid_message', `${method} /health is not served; use GET /health.`)))
    }
    if (pathname === '/pull' || pathname === '/push') {
      if (closing) return answer(response, errorMessage('internal', 'The server is shutting down; retry in a moment.'), true)
      if (method === 'POST') return admitted(request, response, () => post(pathname === '/pull' ? 'pull' : 'push', request, response, url))
      if (method === 'GET' && pathname === '/pull') {
        const poll = admitted(request, response, () => longPoll(request, response, url))
        held.add(poll)
        return poll.finally(() => held.delete(poll))
      }
      response.setHeader('allow', pathname === '/pull' ? 'GET, POST' : 'POST')
      return send(response, 405, JSON.stringify(errorMessage('invalid_message', `${method} ${pathname} is not served; ${ROUTES}.`)))
    }
    if (opts.staticDir && (await serveStaticFile(opts.staticDir, request, response, pathname))) return
    if (next) return next()
    send(response, 404, JSON.stringify(errorMessage('invalid_message', `No route ${method} ${pathname}; ${ROUTES}.`)))
  }

  const handler = ((request, response, next) => {
    route(request, response, next).catch((error) => {
      opts.onError(error, `${request.method} ${loggableUrl(request.url)}`)
      answer(response, errorMessage('internal', 'The server failed to handle this request; retry later.'))
    })
  }) as HttpHandler
  handler.close = async () => {
    closing = true
    for (const wake of wakers) wake()
    await Promise.allSettled([...held])
  }
  return handler
}
