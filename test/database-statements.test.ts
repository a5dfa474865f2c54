/**
 * The statement cache of src/database.ts across a schema change: the store makes the undo log's
 * triggers (DDL) at its first idle moment and prepares its cached statements again there
 * (`refreshStatements`), so that queries after it do not pay for SQLite's re-prepare.
 */

import { describe, expect, it } from 'vitest'
import { loadSqlJs, openDb } from '../src/database.js'

describe('Db.refreshStatements()', () => {
  it('keeps cached statements working after DDL, and drops one that no longer compiles so that its next use says why', async () => {
    const db = openDb(await loadSqlJs())
    db.exec('CREATE TABLE a (id INTEGER PRIMARY KEY, v TEXT); CREATE TABLE b (id INTEGER PRIMARY KEY)')
    const insert = { sql: 'INSERT INTO a (v) VALUES (?)', params: ['x'] }
    const count = { sql: 'SELECT count(*) FROM a', params: [] }
    const fromB = { sql: 'SELECT count(*) FROM b', params: [] }
    db.run(insert)
    expect(db.column(count)).toEqual([1])
    expect(db.column(fromB)).toEqual([0])
    db.exec('CREATE TEMP TRIGGER t AFTER INSERT ON main.a BEGIN SELECT 1; END; DROP TABLE b')
    db.refreshStatements()
    db.run(insert)
    expect(db.column(count)).toEqual([2])
    expect(() => db.column(fromB)).toThrow(/no such table: b/)
    db.close()
  })
})
