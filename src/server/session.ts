/**
 * The server half of the protocol, written once for every wire: it takes a
 * peer's messages, answers them from a `SyncBackend`, and streams live events.
 * A wire (WebSocket, HTTP, BroadcastChannel, a custom one) only moves text.
 *
 *     backend:  1 ................................ head
 *     peer:     1 .......... cursor | streamed next, from cursor + 1
 *
 * Invariants:
 *  V1. Everything sent is serialized here, by `JSON.stringify` of values that
 *      passed `parseClientMessage` (depth-limited) or came from the backend; a
 *      value that cannot be serialized becomes an `error` answer, never a throw.
 *  V2. A page (pull answer or live notification) holds at most `maxPageBytes`
 *      of events, except that a single larger event is sent alone.
 *  V3. `cursor` is the last seq this peer was sent; a live notification starts
 *      at cursor + 1, so the peer sees the log in order without gaps. Events
 *      are read from the backend at the cursor, never queued here, and the
 *      backend reports only durable heads, so nothing streams ahead of
 *      durability.
 *  V4. At most `maxInFlight` requests are being answered at once; while that
 *      many are, or while the wire is past its high-water mark, the session
 *      asks the wire to stop reading (`onBusy(true)`) and streams nothing.
 *      Memory per peer is bounded by the wire's buffer plus the pages of the
 *      requests in flight.
 */
import { TidelogError } from '../errors.js'
import {
  type ClientMessage,
  type ConfirmedEvent,
  type ErrorCode,
  type ErrorMessage,
  errorMessage,
  MAX_PULL_LIMIT,
  ProtocolViolation,
  type PullResponse,
  parseClientMessage,
  toPending,
  utf8Length,
} from '../protocol.js'
import type { SyncBackend } from '../transport.js'
import { type ResolvedLimits, resolveLimits, type ServerLimits, STATUS_OF } from './server-options.js'

/** How a session hands text to its wire, and learns when to hold back. */
export interface SessionWire {
  /** Sends one message. Returns false when the wire is past its high-water mark; call `session.drained()` once it is below again. */
  send(text: string): boolean
  /** The session wants the wire to stop (true) or resume (false) reading from the peer. Wires that cannot stop reading may ignore it. */
  onBusy?(busy: boolean): void
  /** The live stream failed (the backend could not be read); the wire should close so that the peer reconnects and pulls. */
  onFailure?(reason: string): void
}

/** Options of `createServerSession`. */
export interface ServerSessionOptions {
  backend: SyncBackend
  wire: SessionWire
  /** The storeId this peer was admitted to (WebSocket `/sync?storeId=`); messages for another are refused. Omit to serve any. */
  storeId?: string
  /** Stream live events after a pull that reached the head. Default true; false for request-answer wires (HTTP POST). */
  live?: boolean
  limits?: ServerLimits | ResolvedLimits
  /** Unexpected failures (backend errors, unservable events). Default: console.error. */
  onError?: (error: unknown, context: string) => void
  /** Names the wire in messages, e.g. 'WebSocket'. */
  label?: string
  /** Answer unexpected failures with their own message instead of a generic one: for in-process peers, which may see server internals. Default false. */
  revealErrors?: boolean
}

/** One peer's view of the server: feed it messages, tell it when the wire drained. */
export interface ServerSession {
  /** Takes one message from the peer: JSON text or an already parsed value. Never throws; every answer goes to the wire. */
  receive(message: unknown): void
  /** The wire is below its high-water mark again: streaming and reading resume. */
  drained(): void
  /** Resolves once every request taken so far has been answered. */
  idle(): Promise<void>
  /** Stops streaming; answers of requests still in flight are dropped. */
  close(): void
  /** Requests being answered now. */
  readonly inFlight: number
  /** The last seq streamed or paged to the peer (0 before its first pull reached the head). */
  readonly cursor: number
  /** True once a pull reached the head, while live events are streamed to the peer. */
  readonly streaming: boolean
}

/** An answer for a wire that maps protocol errors to statuses (HTTP). */
export interface SessionAnswer {
  text: string
  /** The protocol error code when the answer is an `error`. */
  code?: ErrorCode
  /** For pulls: the page as sent (after the byte cap). */
  page?: PullResponse
}

const defaultOnError = (error: unknown, context: string) =>
  console.error(`tidelog server: ${context}: ${error instanceof Error ? error.message : String(error)}`)

/** The `rid` of an untrusted parsed message, if it carries a usable one, so that errors can be correlated. */
export function ridOf(raw: unknown): string | number | undefined {
  const rid = typeof raw === 'object' && raw !== null ? (raw as { rid?: unknown }).rid : undefined
  return typeof rid === 'string' || typeof rid === 'number' ? rid : undefined
}

const errorText = (code: ErrorCode, message: string, rid?: string | number): SessionAnswer => ({ text: JSON.stringify(errorMessage(code, message, rid)), code })

/** A stored event that cannot be serialized: the store cannot be served past it. */
class UnservableEvent extends Error {
  constructor(
    readonly storeId: string,
    readonly seq: number,
    cause: unknown,
  ) {
    super(
      `The server cannot serve storeId "${storeId}" past seq ${seq - 1}: its stored event ${seq} cannot be serialized (${cause instanceof Error ? cause.message : String(cause)}); the operator must repair the log.`,
    )
  }
}

/**
 * Serializes events for a page: as many as fit `maxBytes` (at least one).
 * Returns the JSON of the array's items and how many were taken.
 */
function encodeEvents(storeId: string, events: readonly ConfirmedEvent[], maxBytes: number): { json: string; count: number } {
  const parts: string[] = []
  let bytes = 0
  for (const event of events) {
    let json: string
    try {
      json = JSON.stringify(event)
    } catch (error) {
      if (parts.length > 0) break // serve what fits; the next page reports the bad one
      throw new UnservableEvent(storeId, event.seq, error)
    }
    const size = byteLength(json) + 1
    if (parts.length > 0 && bytes + size > maxBytes) break
    parts.push(json)
    bytes += size
  }
  return { json: parts.join(','), count: parts.length }
}

// Buffer where there is one (Node): native and several times faster than counting in JS
const byteLength: (text: string) => number = typeof Buffer === 'function' ? (text) => Buffer.byteLength(text) : utf8Length

const ridField = (rid: string | number | undefined) => (rid === undefined ? '' : `"rid":${JSON.stringify(rid)},`)

/** A pulled page as protocol text, cut to the byte budget; `more` stays true when the cut left events behind. */
function encodePage(storeId: string, since: number, page: PullResponse, rid: string | number | undefined, maxBytes: number): SessionAnswer {
  const { json, count } = encodeEvents(storeId, page.events, maxBytes)
  const more = page.more || count < page.events.length || since + count < page.head
  const sent: PullResponse = { ...page, events: page.events.slice(0, count), more }
  return {
    text: `{"v":1,${ridField(rid)}"type":"pulled","events":[${json}],"head":${page.head},"backendId":${JSON.stringify(page.backendId)},"more":${more}}`,
    page: sent,
  }
}

/** A live notification as protocol text, cut to the byte budget. */
function encodeNotification(storeId: string, events: readonly ConfirmedEvent[], head: number, maxBytes: number): { text: string; last: number } {
  const { json, count } = encodeEvents(storeId, events, maxBytes)
  return { text: `{"v":1,"type":"events","storeId":${JSON.stringify(storeId)},"events":[${json}],"head":${head}}`, last: events[count - 1]!.seq }
}

/**
 * Turns a failure while serving a request into the protocol error to answer:
 * violations keep their code; anything else is reported through `onError`
 * and answered `internal` (with the reason when the store cannot be served).
 */
export function errorAnswer(
  error: unknown,
  context: string,
  rid: string | number | undefined,
  onError: (error: unknown, context: string) => void,
  reveal = false,
): ErrorMessage & { v: 1; rid?: string | number } {
  const answer = (code: ErrorCode, message: string) => errorMessage(code, message, rid) as ErrorMessage & { v: 1; rid?: string | number }
  if (error instanceof ProtocolViolation) return answer(error.code, error.message)
  onError(error, context)
  if (error instanceof TidelogError && isErrorCode(error.code)) return answer(error.code, error.message)
  if (error instanceof UnservableEvent) return answer('internal', error.message)
  if (reveal) return answer('internal', `The backend failed: ${error instanceof Error ? error.message : String(error)}`)
  return answer('internal', 'The server failed to handle this request; retry later.')
}

function failureAnswer(
  error: unknown,
  context: string,
  rid: string | number | undefined,
  onError: (error: unknown, context: string) => void,
  reveal: boolean,
): SessionAnswer {
  const message = errorAnswer(error, context, rid, onError, reveal)
  return { text: JSON.stringify(message), code: message.code }
}

const isErrorCode = (code: string): code is ErrorCode => Object.hasOwn(STATUS_OF, code)

/**
 * Answers one already parsed request from the backend: the "parse, clamp,
 * call the backend, answer" step every wire shares. Never throws.
 */
export async function answerRequest(
  backend: SyncBackend,
  message: ClientMessage,
  limits: ResolvedLimits,
  onError: (error: unknown, context: string) => void = defaultOnError,
  label = 'request',
  revealErrors = false,
): Promise<SessionAnswer> {
  const { rid, storeId } = message
  try {
    if (message.type === 'pull') {
      const page = await backend.pull(storeId, message.since, Math.min(message.limit ?? MAX_PULL_LIMIT, MAX_PULL_LIMIT))
      return encodePage(storeId, message.since, page, rid, limits.maxPageBytes)
    }
    const { parentSeq, anyHead, backendId } = message
    const result = await backend.push(storeId, { parentSeq, events: message.events.map(toPending), anyHead: anyHead === true, backendId })
    return { text: JSON.stringify(rid === undefined ? { v: 1, ...result } : { v: 1, rid, ...result }) }
  } catch (error) {
    return failureAnswer(error, `${label} ${message.type} on ${storeId}`, rid, onError, revealErrors)
  }
}

/**
 * Parses an untrusted message (text or value) against the limits; an
 * `SessionAnswer` with the error to send when it does not pass.
 */
export function parseRequest(input: unknown, limits: ResolvedLimits): ClientMessage | SessionAnswer {
  let raw = input
  if (typeof input === 'string') {
    try {
      raw = JSON.parse(input)
    } catch {
      return errorText('invalid_message', 'The message is not valid JSON; send one protocol message as a JSON object.')
    }
  }
  // no event is larger than the text that carries it (UTF-8 takes at most 3 bytes per UTF-16 unit): small messages skip sizing each event
  const sized = typeof input === 'string' && input.length * 3 <= limits.maxEventBytes ? { ...limits, maxEventBytes: Infinity } : limits
  try {
    return parseClientMessage(raw, sized)
  } catch (error) {
    const rid = ridOf(raw)
    if (error instanceof ProtocolViolation) return errorText(error.code, error.message, rid)
    return errorText('invalid_message', `The message could not be read: ${(error as Error)?.message ?? error}.`, rid)
  }
}

const isAnswer = (value: ClientMessage | SessionAnswer): value is SessionAnswer => 'text' in value

/**
 * Serves one peer over any wire: answers its pulls and pushes from `backend`,
 * and after a pull that reached the head streams `events` for that storeId.
 * Custom transports call this on their server side and only move text.
 * @example const session = createServerSession({ backend, wire: { send: (text) => port.postMessage(text) } }); port.onmessage = (e) => session.receive(e.data)
 */
export function createServerSession(options: ServerSessionOptions): ServerSession {
  const { backend, wire } = options
  const limits = resolveLimits(options.limits)
  const onError = options.onError ?? defaultOnError
  const label = options.label ?? 'session'
  const live = options.live ?? true
  let inFlight = 0
  let backedUp = false
  let busy = false
  let closed = false
  let idleWaiters: (() => void)[] = []
  // live stream (V3)
  let streamStore: string | undefined
  let cursor = 0
  let knownHead = 0
  let pumping = false
  let unsubscribe: (() => void) | undefined

  const updateBusy = () => {
    const now = backedUp || inFlight >= limits.maxInFlight
    if (now !== busy && !closed) {
      busy = now
      wire.onBusy?.(now)
    }
  }

  const send = (text: string) => {
    if (closed) return
    if (!wire.send(text) && !backedUp) {
      backedUp = true
      updateBusy()
    }
  }

  const follow = (storeId: string) => {
    if (streamStore === storeId) return
    unsubscribe?.()
    streamStore = storeId
    cursor = 0
    knownHead = 0
    unsubscribe = backend.subscribe(storeId, (head) => {
      if (storeId !== streamStore) return
      if (head > knownHead) knownHead = head
      void pump()
    })
  }

  async function pump() {
    if (pumping) return
    pumping = true
    try {
      while (!closed && !backedUp && streamStore !== undefined && knownHead > cursor) {
        const storeId = streamStore
        const page = await backend.pull(storeId, cursor, MAX_PULL_LIMIT)
        if (closed || storeId !== streamStore) continue
        if (page.head > knownHead) knownHead = page.head
        // a pull answered meanwhile may have moved the cursor past part of this page
        const fresh = page.events.filter((e) => e.seq > cursor)
        if (fresh.length === 0) break
        const { text, last } = encodeNotification(storeId, fresh, page.head, limits.maxPageBytes)
        cursor = last
        send(text)
      }
    } catch (error) {
      if (closed) return
      const storeId = streamStore
      onError(error, `${label} live events of ${storeId}`)
      stopStreaming()
      wire.onFailure?.(`live events of ${storeId} failed; reconnect and pull`)
    } finally {
      pumping = false
    }
  }

  const stopStreaming = () => {
    unsubscribe?.()
    unsubscribe = undefined
    streamStore = undefined
  }

  async function handle(message: ClientMessage) {
    if (options.storeId !== undefined && message.storeId !== options.storeId) {
      return send(
        errorText('invalid_message', `This connection syncs storeId "${options.storeId}"; open another connection for "${message.storeId}".`, message.rid).text,
      )
    }
    const answer = await answerRequest(backend, message, limits, onError, label, options.revealErrors)
    if (closed) return
    const page = answer.page
    if (live && message.type === 'pull' && page && !page.more) {
      // cursor and answer in one synchronous step: no notification can slip in between (V3)
      follow(message.storeId)
      cursor = Math.max(cursor, message.since + page.events.length)
      if (page.head > knownHead) knownHead = page.head
      send(answer.text)
      void pump()
      return
    }
    send(answer.text)
  }

  const settle = () => {
    inFlight--
    updateBusy()
    if (inFlight === 0) {
      const waiters = idleWaiters
      idleWaiters = []
      for (const w of waiters) w()
    }
    if (!busy) void pump()
  }

  return {
    receive(input) {
      if (closed) return
      const parsed = parseRequest(input, limits)
      if (isAnswer(parsed)) return send(parsed.text)
      if (inFlight >= limits.maxInFlight) {
        return send(
          errorText('rate_limited', `More than ${limits.maxInFlight} requests in flight on this connection; wait for answers before sending more.`, parsed.rid)
            .text,
        )
      }
      inFlight++
      updateBusy()
      handle(parsed)
        .catch((error) => onError(error, `${label} ${parsed.type}`))
        .finally(settle)
    },
    drained() {
      if (!backedUp) return
      backedUp = false
      updateBusy()
      void pump()
    },
    idle: () => (inFlight === 0 ? Promise.resolve() : new Promise<void>((resolve) => idleWaiters.push(resolve))),
    close() {
      if (closed) return
      closed = true
      stopStreaming()
    },
    get inFlight() {
      return inFlight
    },
    get cursor() {
      return cursor
    },
    get streaming() {
      return streamStore !== undefined
    },
  }
}
