import type { IncomingMessage, ServerResponse } from 'node:http'
import { errorMessage, MAX_PULL_LIMIT, parseClientMessage, toPending, type ServerMessage } from '../protocol.js'
import { errorAnswer, isAllowed, resolveOptions, ridOf, STATUS_OF, tokenOf, type ResolvedOptions, type SyncServerOptions } from './server-options.js'
import { serveStaticFile } from './static-files.js'

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
 * Creates the handler of the HTTP routes (POST /pull, POST /push, long-poll
 * GET /pull, GET /health, and `staticDir` files) for users who run their own
 * `http.Server`; unknown routes go to `next` when given, else answer 404.
 * @example http.createServer(createHttpHandler({ backend })).listen(8787)
 */
export function createHttpHandler(options: SyncServerOptions): HttpHandler {
  const opts: ResolvedOptions = resolveOptions(options)
  let closing = false
  const wakers = new Set<() => void>()
  const held = new Set<Promise<void>>()

  const send = (response: ServerResponse, status: number, body: unknown, close = false) => {
    if (response.headersSent || response.destroyed) return
    const text = JSON.stringify(body)
    response.writeHead(status, {
      'content-type': 'application/json; charset=utf-8',
      'content-length': Buffer.byteLength(text),
      'cache-control': 'no-store',
      ...(close || closing ? { connection: 'close' } : {}),
    })
    response.end(text)
  }
  const answer = (response: ServerResponse, message: ServerMessage, close = false) =>
    send(response, message.type === 'error' ? STATUS_OF[message.code] : 200, message, close)

  const allowed = async (response: ServerResponse, request: IncomingMessage, url: URL, storeId: string, rid?: string | number) => {
    try {
      if (await isAllowed(opts, storeId, tokenOf(request, url), request)) return true
      answer(response, errorMessage('unauthorized', `Not allowed to sync storeId "${storeId}": send a valid token as Authorization: Bearer <token>.`, rid))
    } catch (error) {
      answer(response, errorAnswer(opts, error, 'authenticate', rid))
    }
    return false
  }

  const post = async (kind: 'pull' | 'push', request: IncomingMessage, response: ServerResponse, url: URL) => {
    let body: string
    try {
      body = await readBody(request, opts.maxMessageBytes)
    } catch {
      return // the client went away mid-body: nobody is left to answer
    }
    if (body === 'too_large') {
      // close the connection: the rest of the body is never read
      return answer(response, errorMessage('too_large', `The message is larger than ${opts.maxMessageBytes} bytes; send smaller pushes.`), true)
    }
    let raw: unknown
    try {
      raw = JSON.parse(body)
    } catch {
      return answer(response, errorMessage('invalid_message', 'The body is not valid JSON; send one protocol message as JSON.'))
    }
    const rid = ridOf(raw)
    let message
    try {
      message = parseClientMessage(raw, { maxEventsPerPush: opts.maxEventsPerPush })
    } catch (error) {
      return answer(response, errorAnswer(opts, error, `POST /${kind}`, rid))
    }
    if (message.type !== kind) {
      return answer(response, errorMessage('invalid_message', `POST /${kind} takes a ${kind} message, not ${message.type}; send it to POST /${message.type}.`, rid))
    }
    if (!(await allowed(response, request, url, message.storeId, rid))) return
    try {
      const result = message.type === 'pull'
        ? await opts.backend.pull(message.storeId, message.since, Math.min(message.limit ?? MAX_PULL_LIMIT, MAX_PULL_LIMIT))
        : await opts.backend.push(message.storeId, { parentSeq: message.parentSeq, events: message.events.map(toPending) })
      answer(response, rid === undefined ? { v: 1, ...result } : { v: 1, rid, ...result })
    } catch (error) {
      answer(response, errorAnswer(opts, error, `POST /${kind}`, rid))
    }
  }

  const longPoll = async (request: IncomingMessage, response: ServerResponse, url: URL) => {
    const q = url.searchParams
    const raw = { v: q.has('v') ? queryNumber(q.get('v')) : 1, type: 'pull', storeId: q.get('storeId') ?? undefined, since: queryNumber(q.get('since')), limit: queryNumber(q.get('limit')) }
    let message
    try {
      message = parseClientMessage(raw)
    } catch (error) {
      return answer(response, errorAnswer(opts, error, 'GET /pull'))
    }
    const waitParam = q.get('wait')
    if (waitParam !== null && !/^\d+(\.\d+)?$/.test(waitParam)) {
      return answer(response, errorMessage('invalid_message', `wait must be a number of seconds (at most ${opts.maxWaitSeconds}), got "${waitParam}".`))
    }
    if (message.type !== 'pull' || !(await allowed(response, request, url, message.storeId))) return
    const { storeId, since } = message
    const limit = Math.min(message.limit ?? MAX_PULL_LIMIT, MAX_PULL_LIMIT)
    const waitMs = Math.min(Number(waitParam ?? 0), opts.maxWaitSeconds) * 1000
    let wake!: () => void
    const woken = new Promise<void>((resolve) => (wake = resolve))
    // subscribe before the first pull, so that an append in between still wakes us
    const unsubscribe = opts.backend.subscribe(storeId, (head) => head > since && wake())
    const timer = setTimeout(wake, waitMs)
    wakers.add(wake)
    response.on('close', wake)
    try {
      let page = await opts.backend.pull(storeId, since, limit)
      if (page.events.length === 0 && waitMs > 0 && !closing) {
        await woken
        if (response.destroyed || response.writableEnded) return
        page = await opts.backend.pull(storeId, since, limit)
      }
      answer(response, { v: 1, ...page })
    } catch (error) {
      answer(response, errorAnswer(opts, error, 'GET /pull'))
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
    if (pathname === '/health') {
      if (method === 'GET' || method === 'HEAD') return send(response, 200, { ok: true })
      response.setHeader('allow', 'GET, HEAD')
      return send(response, 405, errorMessage('invalid_message', `${method} /health is not served; use GET /health.`))
    }
    if (pathname === '/pull' || pathname === '/push') {
      if (closing) return answer(response, errorMessage('internal', 'The server is shutting down; retry in a moment.'), true)
      if (method === 'POST') return post(pathname === '/pull' ? 'pull' : 'push', request, response, url)
      if (method === 'GET' && pathname === '/pull') {
        const poll = longPoll(request, response, url)
        held.add(poll)
        return poll.finally(() => held.delete(poll))
      }
      response.setHeader('allow', pathname === '/pull' ? 'GET, POST' : 'POST')
      return send(response, 405, errorMessage('invalid_message', `${method} ${pathname} is not served; ${ROUTES}.`))
    }
    if (opts.staticDir && (await serveStaticFile(opts.staticDir, request, response, pathname))) return
    if (next) return next()
    send(response, 404, errorMessage('invalid_message', `No route ${method} ${pathname}; ${ROUTES}.`))
  }

  const handler = ((request, response, next) => {
    route(request, response, next).catch((error) => {
      opts.onError(error, `${request.method} ${request.url}`)
      send(response, 500, errorMessage('internal', 'The server failed to handle this request; retry later.'))
    })
  }) as HttpHandler
  handler.close = async () => {
    closing = true
    for (const wake of wakers) wake()
    await Promise.allSettled([...held])
  }
  return handler
}
