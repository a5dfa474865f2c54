/**
 * The eventlog and its state, in one SQLite database.
 *
 *     seq:  1 ............... head | pending (pos order)  | local events
 *           confirmed, global     | this client's, not    | never synced,
 *           order (__tl_events)   | yet ordered           | own tables only
 *                                 | (__tl_pending)        | (__tl_local)
 *     state = materialize(confirmed) + materialize(pending) + materialize(local)
 *
 * Invariants:
 *  I1. Every change of log and state happens in one SQLite transaction; a
 *      failure rolls all of it back (log, state and undo log alike).
 *  I2. The undo log (undo-log.ts) holds exactly the row images the pending
 *      events overwrote, tagged with their pos; rolling it back restores
 *      materialize(confirmed) + materialize(local), at a cost proportional to
 *      what the pending events wrote.
 *  I3. Confirmed events are dense: `__tl_events` holds seq 1..head.
 *  I4. An event id is in at most one of confirmed and pending.
 *  I5. Local events write only tables no synced event writes, so rebases never
 *      need to touch them (checked on every commit).
 *  I6. A pending event counts as come back only when the upstream event with
 *      its id is the same event (session and creation time): an id reused by
 *      a client that lost its storage is dropped, never confirmed as another's.
 */
import type { SqlJsStatic } from 'sql.js'
import type { Db } from './database.js'
import type { MaterializeError } from './errors.js'
import { commitEvents } from './eventlog-commit.js'
import { createLogCore } from './eventlog-core.js'
import { applyUpstream, confirmPushed } from './eventlog-rebase.js'
import { dropLocal, rematerializeConfirmed, replayLocal, replayPending, takeUnconfirmed } from './eventlog-rebuild.js'
import type { EventRef } from './materialize.js'
import type { ConfirmedEvent, PendingEvent } from './protocol.js'
import type { Schema } from './schema.js'

/**
 * Why a pending event was dropped, said where it is dropped; receipts make their error from it.
 * `no-longer-applies`: its materializer failed on the rebased (or rebuilt) state. `conflict`: the
 * rebase's pending list left it out (`onConflict`, or the rebase in the tab that owns the storage).
 * `id-collision`: the backend holds another event under its id (I6). `reset`: `sync.resetToBackend`
 * dropped it. `takeover`: the storage a tab took over no longer holds it. `by` says what dropped it,
 * as ConflictDroppedError words it ("was dropped by <by>").
 */
export type DropReason = { reason: 'no-longer-applies'; error: MaterializeError } | { reason: 'conflict' | 'id-collision' | 'reset' | 'takeover'; by: string }

/** What an operation changed, for signals, receipts and the journal. */
export interface LogChange {
  written: Set<string>
  /** ids of this client's events that are now confirmed, with their seq. */
  confirmed: Map<string, number>
  /** ids of pending events dropped by onConflict or because they no longer apply, with why. */
  dropped: Map<string, DropReason>
  /** The pending list after a rebase, when it is not simply the old one minus what came back. */
  pendingAfter?: PendingEvent[]
}

export interface EventLogHooks {
  onUnknownEvent(ev: EventRef): void
  onWarning(message: string): void
  dev: boolean
}

export type ConflictResolver = (local: PendingEvent[], upstream: ConfirmedEvent[]) => PendingEvent[]

/** The eventlog and its state in one database (invariants I1–I6 above); the store and boot drive it. */
export interface EventLog {
  readonly db: Db
  /** Confirmed head: the highest seq in `__tl_events`. */
  readonly head: number
  readonly pendingCount: number
  meta(key: string): string | undefined
  /** Writes the snapshot's meta (clientId, counter, backendId, position, schemaHash) and the tables learned (I5). */
  setMeta(values: Record<string, string>): void
  /** A local commit: append + materialize, all or nothing (I1). Throws MaterializeError or SchemaError. */
  commit(events: readonly (PendingEvent & { local?: true })[], checkDeterminism: boolean): Set<string>
  /** Oldest pending events, in push order. */
  pendingBatch(limit: number): PendingEvent[]
  /** Applies upstream events that start at head + 1, rebasing the pending ones; with `recordedPending`, that is the pending list after. */
  applyUpstream(events: readonly ConfirmedEvent[], resolve: ConflictResolver | undefined, recordedPending?: PendingEvent[]): LogChange
  /** A push was accepted: the first `ids.length` pending events get seq firstSeq..; undefined when they are not the front of pending. */
  confirm(firstSeq: number, ids: readonly string[]): Map<string, number> | undefined
  /** Confirmed events after `since`, then pending ones (seq null). */
  events(since?: number): (PendingEvent & { seq: number | null })[]
  readConfirmed(since: number, limit: number): ConfirmedEvent[]
  readLocal(): PendingEvent[]
  readPending(): PendingEvent[]
  replayLocal(events: readonly PendingEvent[]): void
  /** Removes the local events and what they wrote (I5); false, changing nothing, when their tables are unknown. */
  dropLocal(): boolean
  /** Rebuild in place: materializes the confirmed events again, in pages; `onPage` gets the last seq done. */
  rematerializeConfirmed(pageSize: number, onPage: (seq: number) => void): void
  /** Rebuild in place: removes the local and pending events and returns them. */
  takeUnconfirmed(): { local: PendingEvent[]; pending: PendingEvent[] }
  /** Re-applies pending events one by one; returns those that no longer apply. */
  replayPending(events: readonly PendingEvent[]): Map<string, DropReason>
  /** Makes the undo log's triggers now (at an idle moment after boot) rather than at the first commit. */
  prepareCapture(): void
  close(): void
}

/**
 * Opens an eventlog: a fresh one, or the database of a snapshot (`bytes`). With
 * `replaceSchema`, the snapshot was made under another schema: its state is
 * dropped and the new schema's DDL run, for `rematerializeConfirmed` and the
 * replays to fill (see bootLog).
 */
export function createEventLog(SQL: SqlJsStatic, schema: Schema<any>, hooks: EventLogHooks, bytes?: Uint8Array, replaceSchema = false): EventLog {
  // transactions, capture, materializing and the log's rows: eventlog-core.ts; the operations over them in
  // eventlog-commit.ts, eventlog-rebase.ts and eventlog-rebuild.ts
  const core = createLogCore(SQL, schema, hooks, bytes, replaceSchema)
  const { db } = core
  return {
    db,
    get head() {
      return core.head
    },
    get pendingCount() {
      return core.pendingCount
    },
    meta: core.meta,
    setMeta(values: Record<string, string>) {
      values.tables = JSON.stringify({ synced: [...core.syncedTables], local: [...core.localTables] })
      core.tx(() => {
        for (const [k, v] of Object.entries(values)) db.run({ sql: 'INSERT OR REPLACE INTO __tl_meta (k, v) VALUES (?, ?)', params: [k, v] })
      })
    },
    commit: (events, checkDeterminism) => commitEvents(core, events, checkDeterminism),
    pendingBatch: (limit) => core.readRows('__tl_pending', 'ORDER BY pos LIMIT ?', [limit]),
    applyUpstream: (events, resolve, recordedPending) => applyUpstream(core, events, resolve, recordedPending),
    confirm: (firstSeq, ids) => confirmPushed(core, firstSeq, ids),
    events(since = 0) {
      const confirmed = core.readRows('__tl_events', 'WHERE seq > ? ORDER BY seq', [since]) as (PendingEvent & { seq: number })[]
      const pending = core.readRows('__tl_pending', 'ORDER BY pos').map((p) => ({ ...p, seq: null }))
      return [...confirmed, ...pending]
    },
    readConfirmed: (since, limit) => core.readRows('__tl_events', 'WHERE seq > ? ORDER BY seq LIMIT ?', [since, limit]) as ConfirmedEvent[],
    readLocal: () => core.readRows('__tl_local', 'ORDER BY pos'),
    readPending: () => core.readRows('__tl_pending', 'ORDER BY pos'),
    replayLocal: (events) => replayLocal(core, events),
    dropLocal: () => dropLocal(core),
    rematerializeConfirmed: (pageSize, onPage) => rematerializeConfirmed(core, pageSize, onPage),
    takeUnconfirmed: () => takeUnconfirmed(core),
    replayPending: (events) => replayPending(core, events),
    prepareCapture() {
      if (core.inTransaction || core.undoLog) return
      core.undo()
      // the triggers are DDL: prepare the statements the store already uses again now, not at their next use
      db.refreshStatements()
    },
    close() {
      db.close()
    },
  }
}
