/** A local commit: events appended as pending (or local) and materialized, all or nothing (I1, eventlog.ts). */
import { MaterializeError, SchemaError } from './errors.js'
import type { Ev, LogCore } from './eventlog-core.js'

/** Events from which a commit finds the tables it wrote in the undo log rather than through the update hook. */
const LONG_COMMIT = 64
const MAX_PENDING_POS = { sql: 'SELECT coalesce(max(pos), 0) FROM __tl_pending', params: [] }

/** Appends and materializes `events` in one transaction; returns the tables written. Throws MaterializeError or SchemaError. */
export function commitEvents(core: LogCore, events: readonly Ev[], checkDeterminism: boolean): Set<string> {
  const { db } = core
  const undoLog = core.undo()
  const written = new Set<string>()
  db.takeWritten()
  // no local event here and no table written by local ones: no event of this batch can break I5,
  // so its tables are taken once for the batch instead of per event
  const batched = core.localTables.size === 0 && !events.some((e) => e.local)
  const long = batched && events.length >= LONG_COMMIT && undoLog.namesWrites
  let current: Ev | undefined
  try {
    core.tx(() => {
      if (batched) {
        core.setCapture(true)
        // a long commit runs unwatched (the update hook calls into JS for every row: the event's, the
        // state's, the undo log's) and reads the tables it wrote off the undo log, which captured them all
        const firstPos = long ? db.column<number>(MAX_PENDING_POS)[0]! + 1 : 0
        if (long) db.trackWrites(false)
        try {
          for (const e of events) {
            current = e
            core.applyPending(e, checkDeterminism, null)
          }
        } finally {
          if (long) db.trackWrites(true)
        }
        const tables = long ? undoLog.writtenSince(firstPos)! : db.takeWritten()
        for (const t of tables) {
          core.syncedTables.add(t)
          written.add(t)
        }
        return
      }
      for (const e of events) {
        current = e
        if (e.local) {
          core.setCapture(false)
          core.insertRow('__tl_local', e)
          const w = core.apply(e, checkDeterminism)
          core.checkTables(e, w)
          for (const t of w) written.add(t)
        } else {
          core.setCapture(true)
          core.applyPending(e, checkDeterminism, written)
        }
      }
      core.setCapture(true)
    })
  } catch (error) {
    if (error instanceof SchemaError) throw error
    throw new MaterializeError(current?.name ?? '?', current?.id ?? '?', error)
  }
  core.pendingCount += events.filter((e) => !e.local).length
  return written
}
