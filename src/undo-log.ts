import type { Db } from './database.js'

/**
 * The undo log (SQLite's undo/redo technique, set-based): while
 * `temp.__tl_flag.capture` is 1, temporary triggers copy the row image before
 * every change of a state table into a shadow table `__tl_undo__<table>` (same
 * columns, no constraints), tagged with the pending event being materialized
 * (the newest `__tl_pending` row, or the pos set with `tagWith` while a
 * rebase re-applies pending events whose rows it kept). Rolling back then costs a few statements
 * per touched table, proportional to what the pending events wrote, never a
 * replay of the log:
 *
 *   - every rowid an entry mentions is deleted, then
 *   - the image of the oldest entry per rowid is put back, if the row existed.
 *
 * Tables without rowid, and `sqlite_sequence` (which takes no triggers), get
 * entries of reversing SQL text in `__tl_undo`, run newest first.
 */
export interface UndoLog {
  /** Restores the state from before every captured change and empties the log. */
  rollback(): void
  /** Forgets the entries of pending events up to `pos` (they were confirmed). */
  release(pos: number): void
  /**
   * Drops the capture triggers for a long pass that captures nothing (a batch
   * of confirmed events): with capture off they would still run their WHEN
   * check on every row written. `resume` makes them again. Both are DDL, so
   * inside a transaction a rollback undoes them with everything else.
   */
  suspend(): void
  resume(): void
  /**
   * The state tables written by capture since pending event `pos` (inclusive), read off the newest entry
   * of each shadow table; undefined when some table keeps text entries (WITHOUT ROWID), which name no table.
   */
  writtenSince(pos: number): string[] | undefined
  /** Whether `writtenSince` can tell (no table keeps text entries). */
  readonly namesWrites: boolean
  /**
   * Tags what capture records from now on with pending event `pos`, whose row is already in `__tl_pending`
   * (a rebase re-applying the events it kept); `null` goes back to the newest row's pos.
   */
  tagWith(pos: number | null): void
}

const q = (name: string) => `"${name.replace(/"/g, '""')}"`
const lit = (text: string) => text.replace(/'/g, "''")

/** A state table as the undo log sees it. */
interface Shape {
  table: string
  info: { name: string; pk: number }[]
  ddl: string
  /** Its shadow table, quoted; undefined for a table without rowid (text entries). */
  shadow: string | undefined
}

/**
 * Makes the undo log's tables in the database, empty where they are new: `__tl_undo` and a shadow
 * table per rowid table. Run with the state's DDL too, so that every snapshot holds them: making them
 * later (at the first capture after boot) grows the database file, which sql.js's in-memory file
 * system does by copying the whole file.
 */
export function createUndoTables(db: Db, tables: readonly string[]): Shape[] {
  db.exec('CREATE TABLE IF NOT EXISTS main.__tl_undo (id INTEGER PRIMARY KEY, pos INTEGER NOT NULL, sql TEXT NOT NULL)')
  return tables.map((table) => {
    const info = db.all<{ name: string; pk: number }>(`PRAGMA main.table_info(${q(table)})`)
    const ddl = db.column<string>({ sql: "SELECT sql FROM main.sqlite_schema WHERE type = 'table' AND name = ?", params: [table] })[0] ?? ''
    if (/WITHOUT\s+ROWID/i.test(ddl)) return { table, info, ddl, shadow: undefined }
    // op: 0 = inserted (delete it), 1 = updated from image (rid -> nrid), 2 = deleted image
    const shadow = q(`__tl_undo__${table}`) // named after the table: stable across boots
    db.exec(
      `CREATE TABLE IF NOT EXISTS main.${shadow} (id INTEGER PRIMARY KEY, pos INTEGER NOT NULL, op INTEGER NOT NULL, rid INTEGER NOT NULL, nrid INTEGER NOT NULL${info.map((_, i) => `, c${i}`).join('')})`,
    )
    return { table, info, ddl, shadow }
  })
}

export function installUndoLog(db: Db, tables: readonly string[]): UndoLog {
  db.exec('PRAGMA recursive_triggers = ON') // REPLACE deletes fire delete triggers only with this on
  db.exec(
    'CREATE TEMP TABLE IF NOT EXISTS __tl_flag (capture INTEGER NOT NULL, pos INTEGER); DELETE FROM temp.__tl_flag; INSERT INTO temp.__tl_flag VALUES (1, NULL);',
  )
  const when = 'WHEN (SELECT capture FROM temp.__tl_flag)'
  // coalesce evaluates its second argument only when the first is NULL
  const pos = '(SELECT coalesce(pos, (SELECT max(pos) FROM main.__tl_pending)) FROM temp.__tl_flag)'
  const textEntry = `INSERT INTO main.__tl_undo (pos, sql) VALUES (${pos}, `
  const shadows: { name: string; table: string; shadow: string; cols: string }[] = []
  let textEntries = false
  // the triggers' DDL, kept for `resume`
  const triggerDdl: string[] = []
  const trigger = (ddl: string) => {
    db.exec(ddl)
    triggerDdl.push(ddl)
  }

  createUndoTables(db, tables).forEach(({ table, info, ddl, shadow }, n) => {
    const cols = info.map((c) => q(c.name))
    const T = q(table)
    if (/AUTOINCREMENT/i.test(ddl)) {
      // remember sqlite_sequence before each insert so that undo restores it
      const name = lit(lit(table))
      trigger(`CREATE TEMP TRIGGER IF NOT EXISTS "__tl_us_${n}" BEFORE INSERT ON main.${T} ${when} BEGIN
        ${textEntry} coalesce('UPDATE sqlite_sequence SET seq = ' || (SELECT seq FROM main.sqlite_sequence WHERE name = '${lit(table)}') || ' WHERE name = ''${name}''', 'DELETE FROM sqlite_sequence WHERE name = ''${name}''')); END;`)
    }
    if (!shadow) {
      textEntries = true
      const pk = info
        .filter((c) => c.pk > 0)
        .sort((a, b) => a.pk - b.pk)
        .map((c) => q(c.name))
      const key = (ref: string) => pk.map((c) => `'${lit(c)}=' || quote(${ref}.${c})`).join(` || ' AND ' || `)
      const Tl = lit(T)
      trigger(`
        CREATE TEMP TRIGGER IF NOT EXISTS "__tl_ui_${n}" AFTER INSERT ON main.${T} ${when} BEGIN
          ${textEntry} 'DELETE FROM ${Tl} WHERE ' || ${key('new')}); END;
        CREATE TEMP TRIGGER IF NOT EXISTS "__tl_uu_${n}" AFTER UPDATE ON main.${T} ${when} BEGIN
          ${textEntry} 'UPDATE ${Tl} SET ' || ${cols.map((c) => `'${lit(c)}=' || quote(old.${c})`).join(` || ',' || `)} || ' WHERE ' || ${key('new')}); END;
        CREATE TEMP TRIGGER IF NOT EXISTS "__tl_ud_${n}" BEFORE DELETE ON main.${T} ${when} BEGIN
          ${textEntry} 'INSERT INTO ${Tl} (${cols.map(lit).join(',')}) VALUES (' || ${cols.map((c) => `quote(old.${c})`).join(` || ',' || `)} || ')'); END;`)
      return
    }
    const image = cols.map((_, i) => `c${i}`)
    const into = `INSERT INTO main.${shadow} (pos, op, rid, nrid${image.map((c) => `, ${c}`).join('')})`
    const old = cols.map((c) => `, old.${c}`).join('')
    const nulls = cols.map(() => ', NULL').join('')
    trigger(`
      CREATE TEMP TRIGGER IF NOT EXISTS "__tl_ui_${n}" AFTER INSERT ON main.${T} ${when} BEGIN
        ${into} VALUES (${pos}, 0, new.rowid, new.rowid${nulls}); END;
      CREATE TEMP TRIGGER IF NOT EXISTS "__tl_uu_${n}" AFTER UPDATE ON main.${T} ${when} BEGIN
        ${into} VALUES (${pos}, 1, old.rowid, new.rowid${old}); END;
      CREATE TEMP TRIGGER IF NOT EXISTS "__tl_ud_${n}" BEFORE DELETE ON main.${T} ${when} BEGIN
        ${into} VALUES (${pos}, 2, old.rowid, old.rowid${old}); END;`)
    shadows.push({ name: table, table: T, shadow, cols: cols.join(', ') })
  })

  const newest = shadows.map(({ name, shadow }) => ({ name, sql: `SELECT pos FROM main.${shadow} ORDER BY id DESC LIMIT 1` }))
  const restore = shadows.map(({ table, shadow, cols }) => {
    const firsts = `WITH m (r, first) AS (SELECT r, min(id) FROM (SELECT rid AS r, id FROM main.${shadow} UNION ALL SELECT nrid, id FROM main.${shadow}) GROUP BY r)`
    const image = cols
      .split(', ')
      .map((_, i) => `u.c${i}`)
      .join(', ')
    return {
      any: `SELECT 1 FROM main.${shadow} LIMIT 1`,
      images: `SELECT 1 FROM main.${shadow} WHERE op <> 0 LIMIT 1`,
      clear: `${firsts} DELETE FROM main.${table} WHERE rowid IN (SELECT r FROM m)`,
      // entries of inserted rows only: each names its row once, as rid (= nrid)
      clearInserted: `DELETE FROM main.${table} WHERE rowid IN (SELECT rid FROM main.${shadow})`,
      put: `${firsts} INSERT INTO main.${table} (rowid, ${cols}) SELECT u.rid, ${image} FROM m JOIN main.${shadow} u ON u.id = m.first WHERE u.op <> 0 AND u.rid = m.r`,
      empty: `DELETE FROM main.${shadow}`,
      release: `DELETE FROM main.${shadow} WHERE pos <= ?`,
    }
  })

  return {
    rollback() {
      // The images include what the schema's own triggers wrote, so those triggers must not fire
      // again while they are put back: drop them and re-create them inside the same transaction.
      const triggers = db.all<{ name: string; sql: string }>("SELECT name, sql FROM main.sqlite_schema WHERE type = 'trigger' AND sql IS NOT NULL")
      for (const t of triggers) db.exec(`DROP TRIGGER main.${q(t.name)}`)
      for (const r of restore) {
        if (!db.column(r.any).length) continue
        // entries of inserted rows only (op 0) have no image to put back
        if (db.column(r.images).length) {
          db.run(r.clear)
          db.run(r.put)
        } else db.run(r.clearInserted)
        db.run(r.empty)
      }
      for (const sql of db.column<string>('SELECT sql FROM main.__tl_undo ORDER BY id DESC')) db.exec(sql)
      db.run('DELETE FROM main.__tl_undo')
      for (const t of triggers) db.exec(t.sql)
    },
    release(upTo) {
      for (const r of restore) db.run({ sql: r.release, params: [upTo] })
      db.run({ sql: 'DELETE FROM main.__tl_undo WHERE pos <= ?', params: [upTo] })
    },
    suspend() {
      dropUndoTriggers(db)
    },
    get namesWrites() {
      return !textEntries
    },
    writtenSince(pos) {
      if (textEntries) return undefined
      const out: string[] = []
      for (const n of newest) if ((db.column<number>(n.sql)[0] ?? -1) >= pos) out.push(n.name)
      return out
    },
    resume() {
      db.exec(triggerDdl.join('\n'))
    },
    tagWith(p) {
      db.run({ sql: 'UPDATE temp.__tl_flag SET pos = ?', params: [p] })
    },
  }
}

/**
 * Drops the undo log's tables (text entries and shadow tables), for a rebuild
 * in place: `installUndoLog` then makes them again, empty, for the new
 * schema's tables, and re-materializing the pending events fills them.
 */
export function dropUndoLog(db: Db): void {
  const tables = db.column<string>("SELECT name FROM main.sqlite_schema WHERE type = 'table' AND name LIKE '\\_\\_tl\\_undo%' ESCAPE '\\'")
  for (const table of tables) db.exec(`DROP TABLE main.${q(table)}`)
}

/**
 * Drops the undo log's temporary triggers, for a pass that materializes
 * without capture (a rebuild): they would only check the capture flag on
 * every row written. `installUndoLog` on the same tables makes them again.
 */
export function dropUndoTriggers(db: Db): void {
  const triggers = db.column<string>("SELECT name FROM temp.sqlite_schema WHERE type = 'trigger' AND name LIKE '\\_\\_tl\\_u%' ESCAPE '\\'")
  for (const name of triggers) db.exec(`DROP TRIGGER temp.${q(name)}`)
}
