import type { Db } from './database.js'
import { ConflictDroppedError, StoreClosedError } from './errors.js'
import type { DropReason, LogChange } from './eventlog.js'

/**
 * What receipts wait on: `receipt.confirmed` per event id, `sync.flush()` until nothing is pending,
 * and why recent pending events were dropped (for a `confirmed` read after the drop). The store
 * settles it after every change of its log.
 */
export interface Receipts {
  /** Resolves the waiters of the events a change confirmed and rejects those of the events it dropped. */
  settle(change: Pick<LogChange, 'confirmed' | 'dropped'>): void
  /** `receipt.confirmed` of one event committed at head `since`; it may already be confirmed, or gone. */
  confirmed(id: string, since: number): Promise<number>
  /**
   * The log was replaced under the waiters (a tab took over the storage): settles those whose
   * event the new log holds confirmed, or no longer holds at all (dropped `by` what dropped it).
   */
  recheck(by: string): void
  /** `sync.flush()`: resolves once `pendingNow(0)` is called. */
  flushed(): Promise<void>
  /** The store's pending count after a change. */
  pendingNow(count: number): void
  /** The store closed: every waiter rejects with StoreClosedError. */
  close(): void
}

interface Waiter {
  resolve(seq: number): void
  reject(e: unknown): void
}

/** The error a receipt of a dropped event rejects with: the MaterializeError, or a ConflictDroppedError saying what dropped it. */
export function dropError(id: string, dropped: DropReason): Error {
  return dropped.reason === 'no-longer-applies' ? dropped.error : new ConflictDroppedError(id, dropped.by)
}

/** Most drop reasons remembered for receipts whose `confirmed` is read late. */
const DROPPED_MEMORY = 1000

/** Receipts over the store's current database (`db()` follows a replaced log). */
export function createReceipts(db: () => Db, warn: (message: string) => void): Receipts {
  const waiters = new Map<string, Waiter>()
  const flushWaiters = new Set<{ resolve(): void; reject(e: unknown): void }>()
  const droppedWhy = new Map<string, Error>()

  const seqOf = (id: string) => db().column<number>({ sql: 'SELECT seq FROM __tl_events WHERE id = ?', params: [id] })[0]
  const isPending = (id: string) => db().column({ sql: 'SELECT 1 FROM __tl_pending WHERE id = ?', params: [id] }).length > 0

  const receipts: Receipts = {
    settle(change) {
      for (const [id, seq] of change.confirmed) {
        waiters.get(id)?.resolve(seq)
        waiters.delete(id)
      }
      for (const [id, dropped] of change.dropped) {
        const error = dropError(id, dropped)
        if (dropped.reason === 'no-longer-applies') warn(`pending event ${id} no longer applies after a rebase and was dropped: ${error.message}`)
        droppedWhy.set(id, error)
        if (droppedWhy.size > DROPPED_MEMORY) droppedWhy.delete(droppedWhy.keys().next().value as string)
        waiters.get(id)?.reject(error)
        waiters.delete(id)
      }
    },
    confirmed(id, since) {
      // dropped first: a dropped event's id may still be in the log (skipped there, or another event's, I6)
      const why = droppedWhy.get(id)
      if (why) return Promise.reject(why)
      // the event normally lands after the head it was committed at; a re-push after a backend reset lands anywhere
      const seq =
        db().column<number>({ sql: 'SELECT seq FROM __tl_events WHERE seq > ? AND id = ?', params: [since, id] })[0] ??
        db().column<number>({ sql: 'SELECT seq FROM __tl_events WHERE seq <= ? AND id = ?', params: [since, id] })[0]
      if (seq !== undefined) return Promise.resolve(seq)
      if (!isPending(id)) return Promise.reject(new ConflictDroppedError(id, 'a rebase'))
      return new Promise<number>((resolve, reject) => waiters.set(id, { resolve, reject }))
    },
    recheck(by) {
      for (const id of [...waiters.keys()]) {
        const seq = seqOf(id)
        if (seq !== undefined) receipts.settle({ confirmed: new Map([[id, seq]]), dropped: new Map() })
        else if (!isPending(id)) receipts.settle({ confirmed: new Map(), dropped: new Map([[id, { reason: 'takeover', by }]]) })
      }
    },
    flushed() {
      return new Promise<void>((resolve, reject) => flushWaiters.add({ resolve, reject }))
    },
    pendingNow(count) {
      if (count !== 0) return
      for (const w of flushWaiters) {
        flushWaiters.delete(w)
        w.resolve()
      }
    },
    close() {
      for (const w of flushWaiters) w.reject(new StoreClosedError('flush'))
      for (const w of waiters.values()) w.reject(new StoreClosedError('confirm events'))
      waiters.clear()
    },
  }
  return receipts
}
