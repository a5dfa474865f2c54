/**
 * Upstream events into the eventlog (eventlog.ts, I1–I6): applied at head + 1,
 * with a rebase of the pending events when there are any, and a push's
 * acceptance (confirm), which is the same thing with this client's own events.
 */
import { MaterializeError } from './errors.js'
import type { ConflictResolver, LogChange } from './eventlog.js'
import type { Each, LogCore } from './eventlog-core.js'
import { COLS, type EventRow, rowToEvent } from './eventlog-tables.js'
import type { EventRef } from './materialize.js'
import type { ConfirmedEvent, PendingEvent } from './protocol.js'

/**
 * Confirmed events per state table from which a batch drops the undo log's
 * triggers while it applies (re-creating them costs about what their checks
 * cost on this many rows).
 */
const BULK_EVENTS_PER_TABLE = 150

/** The same event, not just the same id: a retried or rebased event keeps its session and creation time. */
const sameEvent = (p: PendingEvent, e: PendingEvent) => p.sessionId === e.sessionId && p.createdAt === e.createdAt && p.name === e.name

const rebaseDrop = (p: PendingEvent, error: unknown) =>
  ({ reason: 'no-longer-applies', error: new MaterializeError(p.name, p.id, error, 'rebase of this pending event') }) as const

/**
 * Applies confirmed events at head+1.. without capture; a failing materializer skips that event on every client alike.
 * A batch long enough to pay for it (a client catching up) runs with the capture triggers dropped (inside its
 * transaction, so a failure brings them back with the rollback). Returns the skipped events' ids with their errors.
 */
function applyConfirmed(core: LogCore, events: readonly ConfirmedEvent[], into: Set<string>): Map<string, unknown> {
  const { db } = core
  const skipped = new Map<string, unknown>()
  core.setCapture(false)
  const bulk = events.length >= BULK_EVENTS_PER_TABLE * Math.max(1, core.userTables.length)
  const applyEach = (each: Each) => {
    // A long batch runs unwatched (the update hook would call into JS for every row written) and counts as
    // writing every state table: queries on the others re-run once and find their rows unchanged.
    if (bulk) db.trackWrites(false)
    try {
      for (const e of events) core.insertConfirmed(e)
      for (const e of events) {
        const ref: EventRef = { name: e.name, id: e.id, clientId: e.clientId, seq: e.seq, args: e.args }
        each(
          () => core.applyRef(ref),
          (error) => {
            skipped.set(e.id, error)
            core.hooks.onWarning(`Confirmed event ${e.id} ("${e.name}", seq ${e.seq}) failed to materialize and is skipped: ${(error as Error).message}`)
          },
        )
      }
    } finally {
      if (bulk) db.trackWrites(true)
    }
    if (bulk) for (const t of core.userTables) into.add(t)
    // tables written, once for the batch (a skipped event's writes were rolled back: a spare signal at most)
    for (const t of db.takeWritten()) into.add(t)
  }
  core.allOrEach((each) => {
    if (bulk) core.undoLog?.suspend()
    try {
      applyEach(each)
    } finally {
      if (bulk) core.undoLog?.resume()
    }
  })
  core.head = events[events.length - 1]!.seq
  return skipped
}

/** Confirms the oldest `events.length` pending events as `events` (their state is already right). */
function confirmFront(core: LogCore, events: readonly ConfirmedEvent[], lastPos: number, change: LogChange) {
  for (const e of events) core.insertConfirmed(e)
  core.undo().release(lastPos)
  core.db.run({ sql: 'DELETE FROM __tl_pending WHERE pos <= ?', params: [lastPos] })
  core.head = events[events.length - 1]!.seq
  for (const e of events) change.confirmed.set(e.id, e.seq)
}

/**
 * The rebase without rollback, when it would change nothing already applied:
 * the upstream events are the oldest pending ones in order (or take every
 * pending one and go on past them), and `next` starts with the pending events
 * left. Those are confirmed, the rest of `events` applied, and the tail of
 * `next` applied as pending; the state is what the full rebase would make.
 * Returns false, having done nothing, when the shapes do not fit.
 */
function extendTail(core: LogCore, events: readonly ConfirmedEvent[], next: readonly PendingEvent[], change: LogChange): boolean {
  const cur = core.db.all<{ pos: number; id: string }>('SELECT pos, id FROM __tl_pending ORDER BY pos')
  let k = 0
  while (k < events.length && k < cur.length && cur[k]!.id === events[k]!.id) k++
  if (k < events.length && k < cur.length) return false
  const rest = cur.slice(k)
  if (next.length < rest.length || rest.some((p, i) => next[i]!.id !== p.id)) return false
  core.tx(() => {
    if (k > 0) confirmFront(core, events.slice(0, k), cur[k - 1]!.pos, change)
    if (events.length > k) applyConfirmed(core, events.slice(k), change.written)
    core.setCapture(true)
    const tail = next.slice(rest.length)
    let kept = rest.length
    core.applyPendingBatch(tail.length, change.written, false, (apply) => {
      for (const p of tail) {
        try {
          core.tx(() => apply(p))
          kept++
        } catch (error) {
          change.dropped.set(p.id, rebaseDrop(p, error))
        }
      }
    })
    core.pendingCount = kept
  })
  return true
}

/**
 * Applies upstream events that start at head + 1 (the caller checks), with a
 * rebase when events are pending: roll back pending (I2), apply upstream,
 * drop pending whose ids came back (I4, I6), resolve conflicts, re-apply the
 * rest with capture. One transaction (I1). With `recordedPending`, that is
 * the pending list afterwards (a replay of the journal, or a client tab
 * following its owner).
 */
export function applyUpstream(
  core: LogCore,
  events: readonly ConfirmedEvent[],
  resolve: ConflictResolver | undefined,
  recordedPending?: PendingEvent[],
): LogChange {
  const { db } = core
  const change: LogChange = { written: new Set(), confirmed: new Map(), dropped: new Map() }
  db.takeWritten()
  if (core.pendingCount === 0 && !recordedPending) {
    applyConfirmed(core, events, change.written)
    return change
  }
  core.undo()
  if (recordedPending && extendTail(core, events, recordedPending, change)) return change
  const front =
    core.pendingCount >= events.length && !recordedPending
      ? db.all<EventRow>({ sql: `SELECT ${COLS} FROM __tl_pending ORDER BY pos LIMIT ?`, params: [events.length] }).map(rowToEvent)
      : []
  if (events.length > 0 && front.length === events.length && front.every((p, i) => p.id === events[i]!.id && sameEvent(p, events[i]!))) {
    // Our own oldest pending events came back in order: confirm them, state is already right.
    core.tx(() => {
      const lastPos = db.column<number>({ sql: 'SELECT pos FROM __tl_pending ORDER BY pos LIMIT 1 OFFSET ?', params: [events.length - 1] })[0]!
      confirmFront(core, events, lastPos, change)
    })
    core.pendingCount -= events.length
    return change
  }
  core.tx(() => {
    const rows = db.all<EventRow>(`SELECT pos, ${COLS} FROM __tl_pending ORDER BY pos`)
    const before = rows.map(rowToEvent)
    const posOf = new Map(before.map((p, i) => [p, rows[i]!.pos!]))
    // I2: undoes every pending event's writes (capture off, so the undo itself records nothing)
    core.setCapture(false)
    core.undo().rollback()
    const skipped = events.length ? applyConfirmed(core, events, change.written) : new Map<string, unknown>()
    const back = new Map(events.map((e) => [e.id, e]))
    for (const p of before) {
      const e = back.get(p.id)
      if (!e) continue
      if (sameEvent(p, e)) {
        // one of ours that landed after events it was not rebased onto (anyHead) and fails there: skipped everywhere
        if (skipped.has(e.id))
          change.dropped.set(p.id, {
            reason: 'no-longer-applies',
            error: new MaterializeError(
              p.name,
              p.id,
              skipped.get(e.id),
              `event at seq ${e.seq} (it landed after events it was not rebased onto, and every client skips it)`,
            ),
          })
        else change.confirmed.set(e.id, e.seq)
      }
      // I6
      else
        change.dropped.set(p.id, {
          reason: 'id-collision',
          by: `an id collision: the backend holds another event ${p.id} (made by this client before its local storage was damaged or lost); commit it again`,
        })
    }
    const survivors = before.filter((p) => !back.has(p.id))
    const next = recordedPending ?? (resolve && survivors.length ? resolve(survivors, [...events]) : survivors)
    const nextIds = new Set(next.map((p) => p.id))
    for (const p of survivors) if (!nextIds.has(p.id)) change.dropped.set(p.id, { reason: 'conflict', by: 'onConflict' })
    // Without onConflict or a recorded list, the events left keep their rows (nothing can have changed them) and
    // only the rows of those that came back go; a list from elsewhere is written again.
    const keepRows = next === survivors
    const gone = (p: PendingEvent) => db.run({ sql: 'DELETE FROM __tl_pending WHERE pos = ?', params: [posOf.get(p)!] })
    if (keepRows) {
      for (const p of before) if (back.has(p.id)) gone(p)
    } else db.run('DELETE FROM __tl_pending')
    core.setCapture(true)
    const kept = core.allOrEach((each) =>
      core.applyPendingBatch(next.length, change.written, false, (apply) =>
        next.filter((p) =>
          each(
            () => apply(p, keepRows ? posOf.get(p) : undefined),
            (error) => {
              change.dropped.set(p.id, rebaseDrop(p, error))
              if (keepRows) gone(p)
            },
          ),
        ),
      ),
    )
    if (!recordedPending && (kept.length !== survivors.length || kept.some((p, i) => p !== survivors[i]))) change.pendingAfter = kept
    core.pendingCount = kept.length
  })
  return change
}

/** A push was accepted: the first `ids.length` pending events get seq firstSeq.. (no state change); undefined when they are not the front of pending. */
export function confirmPushed(core: LogCore, firstSeq: number, ids: readonly string[]): Map<string, number> | undefined {
  if (firstSeq !== core.head + 1 || ids.length === 0) return undefined
  const front = core.readRows('__tl_pending', 'ORDER BY pos LIMIT ?', [ids.length])
  if (front.length !== ids.length || front.some((p, i) => p.id !== ids[i])) return undefined
  const confirmed = front.map((p, i) => ({ ...p, seq: firstSeq + i }))
  return applyUpstream(core, confirmed, undefined).confirmed
}
