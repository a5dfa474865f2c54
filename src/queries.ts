import { computed, type ReadonlySignal, type Signal, signal } from '@preact/signals-core'
import type { Db, Row } from './database.js'
import { QueryError } from './errors.js'
import type { SqlFragment } from './sql.js'

/**
 * Live queries. Each query is a `computed` that reads one version signal per
 * table it reads (found once, from the query plan) and then runs its prepared
 * statement. So a query re-runs only after a write to one of its tables, and
 * only while something reads it: an unwatched computed does no work. Results
 * are diffed against the previous run: an equal result returns the previous
 * array (no notification), and equal rows keep their previous objects.
 */
export interface QueryRegistry {
  query<T>(fragment: SqlFragment): ReadonlySignal<T[]>
  /** Bumps the version of every written table, inside the caller's `batch()`. */
  tablesWritten(tables: Iterable<string>): void
  /** How many queries something is watching right now. */
  readonly liveCount: number
}

export function createQueryRegistry(getDb: () => Db, isClosed: () => boolean, assertOpen: (what: string) => void): QueryRegistry {
  const versions = new Map<string, Signal<number>>()
  const versionOf = (table: string) => {
    let v = versions.get(table)
    if (!v) versions.set(table, (v = signal(0)))
    return v
  }
  let live = 0

  return {
    query<T>(fragment: SqlFragment): ReadonlySignal<T[]> {
      assertOpen('query')
      let tables: Signal<number>[]
      try {
        tables = getDb().tablesRead(fragment.sql).map(versionOf)
        getDb().all(fragment) // surfaces SQL and binding errors here, where the query is made
      } catch (error) {
        throw new QueryError(fragment.sql, error)
      }
      let previous: T[] | undefined
      let byKey: Map<string, T> | undefined
      return computed<T[]>(
        () => {
          for (const t of tables) t.value
          if (isClosed()) return previous ?? []
          let rows: Row[]
          try {
            rows = getDb().all(fragment)
          } catch (error) {
            throw new QueryError(fragment.sql, error)
          }
          const nextByKey = new Map<string, T>()
          let same = previous !== undefined && previous.length === rows.length
          const out = new Array<T>(rows.length)
          for (let i = 0; i < rows.length; i++) {
            const row = rows[i]!
            const key = rowKey(row)
            const kept = byKey?.get(key)
            const value = kept ?? (row as T)
            out[i] = value
            nextByKey.set(key, value)
            if (same && previous![i] !== value) same = false
          }
          byKey = nextByKey
          if (same) return previous!
          previous = out
          return out
        },
        {
          watched() {
            live++
          },
          unwatched() {
            live--
            // nothing reads it now: drop the row cache; the next read re-runs the statement
            previous = undefined
            byKey = undefined
          },
        },
      )
    },
    tablesWritten(written) {
      for (const t of written) {
        const v = versions.get(t)
        if (v) v.value++
      }
    },
    get liveCount() {
      return live
    },
  }
}

function rowKey(row: Row): string {
  let key = ''
  for (const k in row) {
    const v = row[k]
    key += v instanceof Uint8Array ? `b${Array.from(v).join(',')}\u0000` : `${typeof v === 'string' ? 's' : 'n'}${v}\u0000`
  }
  return key
}
