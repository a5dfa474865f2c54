import type { EventLog } from './eventlog.js'
import type { Journal, NewRecord } from './journal.js'
import type { PendingEvent } from './protocol.js'

/** What the gate needs from the store; getters, since a tab that takes over the storage replaces them. */
export interface PushGateContext {
  /** Undefined in a client tab: the owner tab's journal keeps its records. */
  journal(): Journal | undefined
  log(): EventLog
  /** Held events became durable: the sync engine may push them now. */
  durable(): void
  /** A record was added (snapshots count them). */
  recorded(): void
}

/**
 * Durable before push: events made since the last journal record, and events whose record is
 * not durable yet, are not pushed. After a crash this client would not remember them and would
 * hand their ids out again.
 */
export interface PushGate {
  /** Event ids just handed out; they wait for the next record. */
  minted(ids: readonly string[]): void
  /** The ids handed out since the last record will get no record here (a failed commit, a client tab's commit). */
  forget(): void
  /** Adds a journal record; the ids minted before it may be pushed once it is durable. */
  record(record: NewRecord): Promise<void>
  /** The oldest pending events up to the first one that is not durable yet. */
  pushable(limit: number): PendingEvent[]
  /** Whether any pending event may be pushed now, as a count for the engine (the pending count when nothing is held). */
  pushableCount(): number
}

export function createPushGate(ctx: PushGateContext): PushGate {
  let minted: string[] = []
  const unpersisted = new Set<string>()

  const pushable = (limit: number) => {
    const batch = ctx.log().pendingBatch(limit)
    const cut = unpersisted.size ? batch.findIndex((e) => unpersisted.has(e.id)) : -1
    return cut < 0 ? batch : batch.slice(0, cut)
  }

  return {
    minted(ids) {
      minted.push(...ids)
    },
    forget() {
      minted = []
    },
    record(r) {
      const journal = ctx.journal()
      if (!journal) return Promise.resolve() // a client tab: the owner tab keeps the record
      const p = journal.add(r)
      if (minted.length) {
        const ids = minted
        minted = []
        for (const id of ids) unpersisted.add(id)
        p.then(
          () => {
            for (const id of ids) unpersisted.delete(id)
            ctx.durable()
          },
          () => {},
        )
      }
      ctx.recorded()
      return p
    },
    pushable,
    // pending events not yet durable do not count (the engine is poked when they are)
    pushableCount: () => (unpersisted.size ? pushable(1).length : ctx.log().pendingCount),
  }
}
