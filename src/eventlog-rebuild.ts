/**
 * Rebuild in place (boot.ts, after a schema change or a reset): the confirmed
 * events materialized again under the new schema, then the local and pending
 * events taken out and replayed on top (eventlog.ts, I1–I5).
 */

import { MaterializeError } from './errors.js'
import type { DropReason } from './eventlog.js'
import type { Each, LogCore } from './eventlog-core.js'
import type { EventRef } from './materialize.js'
import type { PendingEvent } from './protocol.js'
import { dropUndoTriggers } from './undo-log.js'

/**
 * Materializes the confirmed events the log holds again, in seq order and in
 * pages of `pageSize`, without capture and without writing their rows (they
 * are here already); `onPage` gets the last seq done. A failing materializer
 * skips its event, as for confirmed events applied from upstream.
 */
export function rematerializeConfirmed(core: LogCore, pageSize: number, onPage: (seq: number) => void): void {
  const { db } = core
  // a statement of its own, stepped while the page is applied: no row objects, nothing kept
  const page = db.raw.prepare('SELECT seq, id, name, args, client_id FROM __tl_events WHERE seq > ? ORDER BY seq LIMIT ?')
  /** Applies the page after `since`; returns the last seq applied. */
  const pass = (since: number, each: Each) => {
    let last = since
    try {
      page.bind([since, pageSize])
      while (page.step()) {
        const [seq, id, name, args, clientId] = page.get() as [number, string, string, string, string]
        const ref: EventRef = { name, id, clientId, seq, args: JSON.parse(args) }
        last = seq
        each(
          () => core.applyRef(ref),
          (error) => core.hooks.onWarning(`Confirmed event ${id} ("${name}", seq ${seq}) failed to materialize and is skipped: ${(error as Error).message}`),
        )
      }
    } finally {
      page.reset()
    }
    return last
  }
  core.setCapture(false)
  dropUndoTriggers(db)
  db.trackWrites(false) // no query watches a booting store, and confirmed events teach no tables (I5)
  try {
    for (let since = 0; since < core.head; ) {
      const last = core.allOrEach((each) => pass(since, each))
      db.takeWritten()
      if (last === since) break
      onPage((since = last))
    }
  } finally {
    page.free()
    db.trackWrites(true)
    // the triggers again if there were any (this also sets the capture flag back to 1)
    core.reinstallUndo()
  }
}

/** Removes the local and pending events the log holds and returns them, for replayLocal and replayPending. */
export function takeUnconfirmed(core: LogCore): { local: PendingEvent[]; pending: PendingEvent[] } {
  const local = core.readRows('__tl_local', 'ORDER BY pos')
  const pending = core.readRows('__tl_pending', 'ORDER BY pos')
  core.tx(() => {
    core.db.run('DELETE FROM __tl_local')
    core.db.run('DELETE FROM __tl_pending')
  })
  core.pendingCount = 0
  return { local, pending }
}

/**
 * Removes the local events and the rows of the tables they wrote, which by I5 hold nothing else
 * (a tab booting from another tab's snapshot leaves that tab's UI state out). False, with nothing
 * changed, when local events are held but the log never learned their tables.
 */
export function dropLocal(core: LogCore): boolean {
  const held = core.db.column<number>('SELECT count(*) FROM __tl_local')[0]!
  if (held === 0) return true
  if (core.localTables.size === 0) return false
  core.setCapture(false)
  try {
    core.tx(() => {
      core.db.run('DELETE FROM __tl_local')
      for (const t of core.localTables) core.db.run(`DELETE FROM "${t.replace(/"/g, '""')}"`)
    })
  } finally {
    core.setCapture(true)
  }
  core.db.takeWritten()
  return true
}

/** Re-applies local events, all or nothing, learning their tables (I5). */
export function replayLocal(core: LogCore, events: readonly PendingEvent[]): void {
  if (!events.length) return
  core.setCapture(false)
  core.tx(() => {
    for (const e of events) {
      core.insertRow('__tl_local', e)
      core.checkTables({ ...e, local: true }, core.apply(e))
    }
  })
  core.setCapture(true)
}

/** Re-applies pending events one by one; returns those that no longer apply. */
export function replayPending(core: LogCore, events: readonly PendingEvent[]): Map<string, DropReason> {
  core.undo()
  const dropped = new Map<string, DropReason>()
  core.setCapture(true)
  for (const p of events) {
    try {
      core.tx(() => core.applyPending(p, false, new Set()))
      core.pendingCount++
    } catch (error) {
      dropped.set(p.id, { reason: 'no-longer-applies', error: new MaterializeError(p.name, p.id, error, 'replay of this pending event') })
    }
  }
  return dropped
}
