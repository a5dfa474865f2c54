import { MAX_PULL_LIMIT, ProtocolViolation, type ConfirmedEvent, type PendingEvent, type PullResponse, type PushResponse } from './protocol.js'
import type { SyncBackend } from './transport.js'

interface Log {
  events: ConfirmedEvent[]
  seqById: Map<string, number>
  listeners: Set<(head: number) => void>
}

/** Random id for a backend incarnation or a client. */
export function randomId(length = 12): string {
  const alphabet = '0123456789abcdefghijklmnopqrstuvwxyz'
  const bytes = new Uint8Array(length)
  globalThis.crypto.getRandomValues(bytes)
  let out = ''
  for (const b of bytes) out += alphabet[b % 36]
  return out
}

/**
 * Decides a push against a log (PROTOCOL.md backend rules 2 and 3): the
 * idempotent-retry answer, `rejected`, an `invalid_message` violation, or
 * `append` when the events are new and based on the head. Shared by every
 * backend so that they all judge pushes the same way.
 */
export function judgePush(
  log: { head: number; seqOf(id: string): number | undefined },
  parentSeq: number,
  events: readonly PendingEvent[],
): { kind: 'retry'; firstSeq: number } | { kind: 'rejected' } | { kind: 'append' } {
  if (events.length === 0) throw new ProtocolViolation('invalid_message', 'push.events must be a non-empty array')
  const seen = new Set<string>()
  for (const e of events) {
    if (seen.has(e.id)) throw new ProtocolViolation('invalid_message', `push carries event id ${e.id} twice; each event may appear once`)
    seen.add(e.id)
  }
  const known = events.map((e) => log.seqOf(e.id))
  if (known.every((s, i) => s === parentSeq + 1 + i)) return { kind: 'retry', firstSeq: parentSeq + 1 }
  if (parentSeq !== log.head) return { kind: 'rejected' }
  if (known.some((s) => s !== undefined)) {
    throw new ProtocolViolation('invalid_message', 'push mixes events already in the log with new ones; pull and push only the events that did not come back')
  }
  return { kind: 'append' }
}

/**
 * A sync backend held in memory: total order, atomic batches, idempotent
 * pushes, live subscriptions. For tests, workers and embedding.
 * @example createSyncServer({ backend: memoryBackend() })
 */
export function memoryBackend(): SyncBackend & { readonly backendId: string } {
  const backendId = randomId()
  const logs = new Map<string, Log>()
  const logOf = (storeId: string): Log => {
    let log = logs.get(storeId)
    if (!log) logs.set(storeId, (log = { events: [], seqById: new Map(), listeners: new Set() }))
    return log
  }
  return {
    backendId,
    async pull(storeId, since, limit): Promise<PullResponse> {
      const log = logOf(storeId)
      const n = Math.max(1, Math.min(limit, MAX_PULL_LIMIT))
      const events = log.events.slice(since, since + n).map((e) => ({ ...e }))
      const head = log.events.length
      return { type: 'pulled', events, head, backendId, more: since + events.length < head }
    },
    async push(storeId, { parentSeq, events }): Promise<PushResponse> {
      const log = logOf(storeId)
      const verdict = judgePush(
        { head: log.events.length, seqOf: (id) => log.seqById.get(id) },
        parentSeq,
        events,
      )
      if (verdict.kind === 'retry') return { type: 'pushed', firstSeq: verdict.firstSeq, head: log.events.length, backendId }
      if (verdict.kind === 'rejected') return { type: 'rejected', reason: 'behind', head: log.events.length }
      const firstSeq = log.events.length + 1
      events.forEach((e, i) => {
        const seq = firstSeq + i
        log.events.push({ seq, id: e.id, name: e.name, args: structuredClone(e.args), clientId: e.clientId, sessionId: e.sessionId, createdAt: e.createdAt })
        log.seqById.set(e.id, seq)
      })
      const head = log.events.length
      // notify after answering, so that no listener runs inside the pusher's call
      queueMicrotask(() => { for (const listener of [...log.listeners]) listener(head) })
      return { type: 'pushed', firstSeq, head, backendId }
    },
    subscribe(storeId, onHead) {
      const log = logOf(storeId)
      log.listeners.add(onHead)
      return () => log.listeners.delete(onHead)
    },
    async close() {
      for (const log of logs.values()) log.listeners.clear()
    },
  }
}
