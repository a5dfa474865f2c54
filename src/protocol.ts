/**
 * Wire protocol v1 (see PROTOCOL.md): event and message shapes shared by the
 * core, every transport and every backend, plus a strict message parser the
 * server and transports use on untrusted input.
 */

export const PROTOCOL_VERSION = 1

/** JSON-compatible value: what event args may hold. */
export type JsonValue = null | boolean | number | string | JsonValue[] | { [key: string]: JsonValue }

/** An event not yet ordered by the backend. `id` is `${clientId}:${n}`, stable across retries and rebases. */
export interface PendingEvent {
  id: string
  name: string
  args: JsonValue
  clientId: string
  sessionId: string
  createdAt: number
}

/** An event with its global, dense, 1-based position in the storeId's log. */
export interface ConfirmedEvent extends PendingEvent {
  seq: number
}

export interface PullRequest {
  storeId: string
  since: number
  limit?: number
}

export interface PushRequest {
  storeId: string
  parentSeq: number
  events: PendingEvent[]
  /**
   * Append on top of the head even when it moved past `parentSeq` (never when
   * it is behind it): the client rebases once the events come back in a pull.
   * Sent by a client that lost races in a row and has no merge hook
   * (PROTOCOL.md, client rule 4).
   */
  anyHead?: boolean
  /**
   * The backendId of the log the client's confirmed head belongs to: a
   * backend with another one (its log was wiped and started again) answers
   * `rejected`, and the client's next pull finds the reset.
   */
  backendId?: string
}

export interface PullResponse {
  type: 'pulled'
  events: ConfirmedEvent[]
  head: number
  backendId: string
  more: boolean
  /**
   * Only from a storage owner tab (PROTOCOL.md, Tabs), on the page that reaches
   * its head: the owner's pending list, in its order, which the asking tab puts
   * before its own unacknowledged events.
   */
  pending?: PendingEvent[]
  /** Only from a storage owner tab, with `pending`: its own sync state towards the backend. */
  ownerState?: SyncState
}

/** A client's sync state, as `store.sync.status.value.state` shows it. */
export type SyncState = 'offline' | 'connecting' | 'syncing' | 'synced' | 'error'

export type PushResponse = { type: 'pushed'; firstSeq: number; head: number; backendId: string } | { type: 'rejected'; reason: 'behind'; head: number }

/** Only from a storage owner tab (PROTOCOL.md, Tabs): the events are in its pending list and durable in its storage, not ordered yet. */
export interface QueuedResponse {
  type: 'queued'
}

export type ErrorCode =
  | 'unauthorized'
  | 'invalid_message'
  | 'too_large'
  | 'unknown_store'
  | 'rate_limited'
  | 'internal'
  | 'unsupported_version'
  /** The store's log on the server is damaged; nothing of it is served until an operator restores it. */
  | 'store_damaged'

export interface ErrorMessage {
  type: 'error'
  code: ErrorCode
  message: string
  retryable: boolean
}

export type ClientMessage = ({ v: 1; type: 'pull'; rid?: string | number } & PullRequest) | ({ v: 1; type: 'push'; rid?: string | number } & PushRequest)

export type ServerMessage =
  | ({ v: 1; rid?: string | number } & PullResponse)
  | ({ v: 1; rid?: string | number } & PushResponse)
  | { v: 1; type: 'events'; storeId: string; events: ConfirmedEvent[]; head: number }
  | ({ v: 1; rid?: string | number } & ErrorMessage)

/** Highest number of events a pull answers with, whatever `limit` asks. */
export const MAX_PULL_LIMIT = 1000

const STORE_ID = /^[A-Za-z0-9._~-]{1,128}$/
/** What a valid storeId is, for messages. */
export const STORE_ID_RULE = '1-128 characters of A-Z a-z 0-9 . _ ~ -'

/** True when `storeId` is a valid log name (1–128 of `A-Z a-z 0-9 . _ ~ -`). */
export function isValidStoreId(storeId: unknown): storeId is string {
  return typeof storeId === 'string' && STORE_ID.test(storeId)
}

/** Thrown by `parseClientMessage`; carries the protocol error code to answer with. */
export class ProtocolViolation extends Error {
  readonly code: ErrorCode
  constructor(code: ErrorCode, message: string) {
    super(message)
    this.name = 'ProtocolViolation'
    this.code = code
  }
}

function fail(message: string, code: ErrorCode = 'invalid_message'): never {
  throw new ProtocolViolation(code, message)
}

function isSeq(n: unknown): n is number {
  return typeof n === 'number' && Number.isSafeInteger(n) && n >= 0
}

/** Checks one event's shape; used for pushes (pending) and pulled pages (confirmed). */
export function checkEvent(e: unknown, where: string, confirmed = false): asserts e is PendingEvent {
  if (typeof e !== 'object' || e === null || Array.isArray(e)) fail(`${where} must be an object`)
  const ev = e as Record<string, unknown>
  if (typeof ev.id !== 'string' || ev.id.length === 0 || ev.id.length > 256) fail(`${where}.id must be a non-empty string of at most 256 characters`)
  if (typeof ev.name !== 'string' || ev.name.length === 0 || ev.name.length > 256) fail(`${where}.name must be a non-empty string`)
  if (!('args' in ev)) fail(`${where}.args is missing`)
  if (typeof ev.clientId !== 'string' || ev.clientId.length === 0) fail(`${where}.clientId must be a non-empty string`)
  if (typeof ev.sessionId !== 'string') fail(`${where}.sessionId must be a string`)
  if (typeof ev.createdAt !== 'number' || !Number.isFinite(ev.createdAt)) fail(`${where}.createdAt must be a number`)
  if (confirmed && !(isSeq(ev.seq) && ev.seq >= 1)) fail(`${where}.seq must be a positive integer`)
}

/** Limits `parseClientMessage` checks pushes against. */
export interface MessageLimits {
  /** Default 500. */
  maxEventsPerPush?: number
  /** Deepest nesting of arrays and objects in args. Default 64. */
  maxDepth?: number
  /** Largest event JSON in bytes. Default: no limit. */
  maxEventBytes?: number
}

/** True when `value` holds arrays or objects nested more than `max` levels; walks without recursion. */
export function nestedDeeper(value: unknown, max: number): boolean {
  const stack: [unknown, number][] = [[value, 1]]
  while (stack.length > 0) {
    const [v, depth] = stack.pop()!
    if (typeof v !== 'object' || v === null) continue
    if (depth > max) return true
    for (const child of Array.isArray(v) ? v : Object.values(v)) if (typeof child === 'object' && child !== null) stack.push([child, depth + 1])
  }
  return false
}

/** Bytes of `text` in UTF-8, without encoding it. */
export function utf8Length(text: string): number {
  let bytes = text.length
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i)
    if (c >= 0x800)
      bytes += c >= 0xd800 && c <= 0xdfff ? 1 : 2 // a surrogate pair: 4 bytes for 2 units
    else if (c >= 0x80) bytes += 1
  }
  return bytes
}

/**
 * Parses and checks an untrusted client message (a JSON text or an already
 * parsed value). Throws `ProtocolViolation` with the code to answer.
 */
export function parseClientMessage(input: unknown, limits: MessageLimits = {}): ClientMessage {
  let msg: unknown = input
  if (typeof input === 'string') {
    try {
      msg = JSON.parse(input)
    } catch {
      fail('message is not valid JSON')
    }
  }
  if (typeof msg !== 'object' || msg === null || Array.isArray(msg)) fail('message must be a JSON object')
  const m = msg as Record<string, unknown>
  if (m.v !== PROTOCOL_VERSION) {
    if (typeof m.v === 'number' && m.v > PROTOCOL_VERSION) fail(`protocol version ${m.v} is not supported; this server speaks v1`, 'unsupported_version')
    fail('message must carry v: 1')
  }
  if (m.rid !== undefined && typeof m.rid !== 'string' && typeof m.rid !== 'number') fail('rid must be a string or a number')
  if (!isValidStoreId(m.storeId)) fail(`storeId must be ${STORE_ID_RULE}`)
  if (m.type === 'pull') {
    if (!isSeq(m.since)) fail('pull.since must be a non-negative integer')
    if (m.limit !== undefined && !(isSeq(m.limit) && m.limit >= 1)) fail('pull.limit must be a positive integer')
    return m as unknown as ClientMessage
  }
  if (m.type === 'push') {
    if (!isSeq(m.parentSeq)) fail('push.parentSeq must be a non-negative integer')
    if (m.anyHead !== undefined && typeof m.anyHead !== 'boolean') fail('push.anyHead must be true, false or absent')
    if (m.backendId !== undefined && (typeof m.backendId !== 'string' || m.backendId.length > 128))
      fail('push.backendId must be a string of at most 128 characters, or absent')
    if (!Array.isArray(m.events) || m.events.length === 0) fail('push.events must be a non-empty array')
    const max = limits.maxEventsPerPush ?? 500
    if (m.events.length > max) fail(`push carries ${m.events.length} events; at most ${max} are accepted per push`, 'too_large')
    const maxDepth = limits.maxDepth ?? 64
    const maxEventBytes = limits.maxEventBytes ?? Infinity
    const ids = new Set<string>()
    m.events.forEach((e, i) => {
      checkEvent(e, `push.events[${i}]`)
      if (ids.has(e.id)) fail(`push.events[${i}].id ${e.id} appears twice in one push`)
      ids.add(e.id)
      // checked before anything serializes the args: JSON.stringify recurses, and deep values overflow its stack
      if (nestedDeeper(e.args, maxDepth)) fail(`push.events[${i}].args nest deeper than ${maxDepth} levels; flatten them`)
      const bytes = utf8Length(JSON.stringify(e))
      if (bytes > maxEventBytes) fail(`push.events[${i}] is ${bytes} bytes; at most ${maxEventBytes} bytes are accepted per event`, 'too_large')
    })
    return m as unknown as ClientMessage
  }
  fail(`unknown message type ${JSON.stringify(m.type)}; expected pull or push`)
}

/** Builds the protocol `error` message for a violation or an unexpected failure. */
export function errorMessage(code: ErrorCode, message: string, rid?: string | number): ServerMessage {
  const retryable = code === 'rate_limited' || code === 'internal'
  return rid === undefined ? { v: 1, type: 'error', code, message, retryable } : { v: 1, rid, type: 'error', code, message, retryable }
}

/** Strips a confirmed event down to its pending shape (used when re-pushing). */
export function toPending(e: ConfirmedEvent | PendingEvent): PendingEvent {
  return { id: e.id, name: e.name, args: e.args, clientId: e.clientId, sessionId: e.sessionId, createdAt: e.createdAt }
}
