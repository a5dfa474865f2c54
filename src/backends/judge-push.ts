import { type PendingEvent, ProtocolViolation, type PushRequest } from '../protocol.js'

/** What `judgePush` decides: an idempotent retry (answer `pushed` at firstSeq), `rejected`, or append at the head. */
export type PushVerdict = { kind: 'retry'; firstSeq: number } | { kind: 'rejected' } | { kind: 'append' }

/**
 * Decides a push against a log (PROTOCOL.md backend rules 2 and 3): the
 * idempotent-retry answer, `rejected`, an `invalid_message` violation, or
 * `append` when the events are new and based on the head (or, with
 * `anyHead`, on a seq at or below it). A push naming another `backendId`
 * than the log's is `rejected` (it was based on another incarnation of the
 * log). Shared by every backend so that they all judge pushes the same way.
 */
export function judgePush(
  log: { head: number; seqOf(id: string): number | undefined; backendId?: string },
  parentSeq: number,
  events: readonly PendingEvent[],
  request: Pick<PushRequest, 'anyHead' | 'backendId'> = {},
): PushVerdict {
  if (events.length === 0) throw new ProtocolViolation('invalid_message', 'push.events must be a non-empty array')
  const seen = new Set<string>()
  for (const e of events) {
    if (seen.has(e.id)) throw new ProtocolViolation('invalid_message', `push carries event id ${e.id} twice; each event may appear once`)
    seen.add(e.id)
  }
  if (request.backendId !== undefined && log.backendId !== undefined && request.backendId !== log.backendId) return { kind: 'rejected' }
  const { anyHead } = request
  const known = events.map((e) => log.seqOf(e.id))
  const first = known[0]
  if (first !== undefined && (first === parentSeq + 1 || (anyHead && first > parentSeq)) && known.every((s, i) => s === first + i)) {
    return { kind: 'retry', firstSeq: first }
  }
  const stored = known.some((s) => s !== undefined)
  // behind the head, stored ids may be an earlier push of these events that landed after the
  // client's pull: `rejected` sends it to pull them (as a push at the head only gets)
  if (anyHead ? parentSeq > log.head || (stored && parentSeq < log.head) : parentSeq !== log.head) return { kind: 'rejected' }
  if (stored) {
    throw new ProtocolViolation('invalid_message', 'push mixes events already in the log with new ones; pull and push only the events that did not come back')
  }
  return { kind: 'append' }
}
