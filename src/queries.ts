import { computed, type ReadonlySignal, type Signal, signal } from '@preact/signals-core'
import type { Db, Row } from './database.js'
import { QueryError } from './errors.js'
import type { SqlFragment } from './sql.js'

/**
 * Live queries. Each query is a `computed` that reads one version signal per
 * table it reads (found once per SQL text, from the query plan) and then runs
 * its prepared statement. So a query re-runs only after a write to one of its
 * tables, and only while something reads it: an unwatched computed does no
 * work. Results are diffed against the previous run: an equal result returns
 * the previous array (no notification), and equal rows keep their objects.
 */
export interface QueryRegistry {
  query<T>(fragment: SqlFragment): ReadonlySignal<T[]>
  /** Bumps the version of every written table, inside the caller's `batch()`. */
  tablesWritten(tables: Iterable<string>): void
  /** Forgets per-database caches (after the database was replaced). */
  reset(): void
}

export function createQueryRegistry(getDb: () => Db, isClosed: () => boolean, assertOpen: (what: string) => void): QueryRegistry {
  const versions = new Map<string, Signal<number>>()
  const versionOf = (table: string) => {
    let v = versions.get(table)
    if (!v) {
      v = signal(0)
      versions.set(table, v)
    }
    return v
  }
  let tablesBySql = new Map<string, Signal<number>[]>()

  return {
    query<T>(fragment: SqlFragment): ReadonlySignal<T[]> {
      assertOpen('query')
      let tables = tablesBySql.get(fragment.sql)
      // The first run happens here, so that SQL and binding errors surface where the query is made;
      // its rows serve the first read unless a table changed in between.
      let primed: { rows: Row[]; at: number[] } | undefined
      try {
        tables ??= getDb().tablesRead(fragment.sql).map(versionOf)
        primed = { rows: getDb().all(fragment), at: tables.map((t) => t.peek()) }
      } catch (error) {
        throw new QueryError(fragment.sql, error)
      }
      tablesBySql.set(fragment.sql, tables)
      const deps = tables
      let previous: T[] | undefined
      // a computed runs only when read, and while unwatched it re-checks its version
      // signals on read instead of re-running: that is all the laziness a query needs
      return computed<T[]>(() => {
        let changed = false
        for (let i = 0; i < deps.length; i++) if (deps[i]!.value !== primed?.at[i]) changed = true
        if (isClosed()) return previous ?? []
        let rows: Row[]
        if (primed && !changed) rows = primed.rows
        else {
          try {
            rows = getDb().all(fragment)
          } catch (error) {
            throw new QueryError(fragment.sql, error)
          }
        }
        primed = undefined
        const next = reuseRows(previous as Row[] | undefined, rows) as T[]
        if (next === previous) return previous
        previous = next
        return next
      })
    },
    tablesWritten(written) {
      for (const t of written) {
        const v = versions.get(t)
        if (v) v.value++
      }
    },
    reset() {
      tablesBySql = new Map()
    },
  }
}

/**
 * Diffs a new result against the previous one: equal rows keep their previous
 * objects (each used at most once, results may hold duplicates), and an
 * entirely equal result returns the previous array itself. Rows are matched by
 * position first, the common case, and only then by value.
 */
function reuseRows(previous: readonly Row[] | undefined, rows: Row[]): readonly Row[] {
  if (!previous) return rows
  const out = new Array<Row>(rows.length)
  const used = new Uint8Array(previous.length)
  let misses: number[] | undefined
  for (let i = 0; i < rows.length; i++) {
    const prev = previous[i]
    if (prev !== undefined && sameRow(prev, rows[i]!)) {
      out[i] = prev
      used[i] = 1
    } else {
      misses ??= []
      misses.push(i)
    }
  }
  if (!misses) return rows.length === previous.length ? previous : out
  const byKey = new Map<string, number[]>()
  previous.forEach((row, j) => {
    if (used[j]) return
    const key = rowKey(row)
    const list = byKey.get(key)
    if (list) list.push(j)
    else byKey.set(key, [j])
  })
  for (const i of misses) {
    const j = byKey.get(rowKey(rows[i]!))?.shift()
    out[i] = j === undefined ? rows[i]! : previous[j]!
  }
  return out
}

function sameRow(a: Row, b: Row): boolean {
  for (const k in b) {
    const x = a[k]
    const y = b[k]
    if (x === y) continue
    if (!(x instanceof Uint8Array && y instanceof Uint8Array) || x.length !== y.length) return false
    for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) return false
  }
  return true
}

/** An unambiguous text for a row's values (JSON escapes strings; blobs and numbers are tagged apart). */
function rowKey(row: Row): string {
  const parts: unknown[] = []
  for (const k in row) {
    const v = row[k]
    parts.push(v instanceof Uint8Array ? ['b', Array.from(v)] : v)
  }
  return JSON.stringify(parts)
}
