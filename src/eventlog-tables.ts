/**
 * The tables of an eventlog's database: the eventlog's own (`__tl_events`,
 * `__tl_pending`, `__tl_local`, `__tl_meta`) beside the state schema's, and
 * how a database is opened with both.
 */
import type { SqlJsStatic } from 'sql.js'
import { type Db, openDb } from './database.js'
import { SchemaError } from './errors.js'
import type { JsonValue, PendingEvent } from './protocol.js'
import type { Schema } from './schema.js'
import { createUndoTables, dropUndoLog } from './undo-log.js'

export const COLS = 'id, name, args, client_id, session_id, created_at'
export interface EventRow {
  seq?: number
  pos?: number
  id: string
  name: string
  args: string
  client_id: string
  session_id: string
  created_at: number
}

const INTERNAL_DDL = `
  CREATE TABLE IF NOT EXISTS __tl_events (seq INTEGER PRIMARY KEY, ${COLS.replace(/, /g, ' NOT NULL, ')} NOT NULL);
  CREATE TABLE IF NOT EXISTS __tl_pending (pos INTEGER PRIMARY KEY, ${COLS.replace(/, /g, ' NOT NULL, ')} NOT NULL);
  CREATE TABLE IF NOT EXISTS __tl_local (pos INTEGER PRIMARY KEY, ${COLS.replace(/, /g, ' NOT NULL, ')} NOT NULL);
  CREATE TABLE IF NOT EXISTS __tl_meta (k TEXT PRIMARY KEY, v TEXT NOT NULL);
`

export function rowToEvent(r: EventRow): PendingEvent & { seq?: number } {
  const e: PendingEvent & { seq?: number } = {
    id: r.id,
    name: r.name,
    args: JSON.parse(r.args) as JsonValue,
    clientId: r.client_id,
    sessionId: r.session_id,
    createdAt: r.created_at,
  }
  if (r.seq !== undefined) e.seq = r.seq
  return e
}

/** Everything of the state schema in a database: what is not the eventlog's (`__tl_`) or SQLite's own. */
const STATE_OBJECTS =
  "SELECT type, name FROM main.sqlite_schema WHERE name NOT LIKE '\\_\\_tl\\_%' ESCAPE '\\' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY rowid"

/**
 * Rebuild in place: drops the old schema's state (tables, indexes, views,
 * triggers), the undo log and the table sets learned under it; the eventlog's
 * rows stay, to be materialized again under the new schema.
 */
function dropState(db: Db) {
  const objects = db.all<{ type: string; name: string }>(STATE_OBJECTS)
  // triggers and views first (they may name the tables), tables last (their indexes go with them)
  for (const type of ['trigger', 'view', 'index', 'table']) {
    for (const o of objects) if (o.type === type) db.exec(`DROP ${type.toUpperCase()} IF EXISTS main."${o.name.replace(/"/g, '""')}"`)
  }
  dropUndoLog(db)
  db.run("DELETE FROM __tl_meta WHERE k = 'tables'")
}

/**
 * Opens an eventlog's database: a fresh one, or the database of a snapshot
 * (`bytes`). With `replaceSchema`, the snapshot was made under another schema:
 * its state is dropped and the new schema's DDL run. Returns the state tables,
 * whose writes the database now tracks.
 */
export function openEventLogDb(SQL: SqlJsStatic, schema: Schema<any>, bytes: Uint8Array | undefined, replaceSchema: boolean): { db: Db; userTables: string[] } {
  const db: Db = openDb(SQL, bytes)
  if (!bytes || replaceSchema) {
    try {
      db.exec(INTERNAL_DDL)
      if (bytes) dropState(db)
    } catch (error) {
      db.close()
      throw error
    }
    try {
      for (const ddl of Object.values(schema.tables)) db.exec(ddl.sql)
      for (const ddl of schema.indexes) db.exec(ddl.sql)
    } catch (error) {
      db.close()
      throw new SchemaError(`Schema DDL failed: ${(error as Error).message}. Check the CREATE statements in defineSchema().`, { cause: error })
    }
  }
  const userTables = db.column<string>(
    "SELECT name FROM main.sqlite_schema WHERE type = 'table' AND name NOT LIKE '\\_\\_tl\\_%' ESCAPE '\\' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\'",
  )
  if (!bytes || replaceSchema) createUndoTables(db, userTables)
  db.watchTables(userTables)
  return { db, userTables }
}
