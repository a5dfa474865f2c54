import type { Db } from './database.js'
import type { MaterializeContext, Schema } from './schema.js'
import { isSqlFragment, type SqlFragment } from './sql.js'

/** What a materializer needs to know about the event it applies. */
export interface EventRef {
  name: string
  id: string
  clientId: string
  seq: number | null
  args: unknown
}

/**
 * Runs an event's materializer and its statements. Throws the raw failure; the
 * caller decides whether that rolls back a commit or skips the event. Returns
 * false for an event name the schema does not know (not materialized).
 */
export function createMaterializer(db: Db, schema: Schema<any>, dev: boolean) {
  // One context for every call, its `event` made only when a materializer reads it: replays
  // and rebuilds run this once per event, and most materializers never look.
  let current: EventRef
  const ctx: MaterializeContext = {
    get event() {
      return { name: current.name, id: current.id, clientId: current.clientId, seq: current.seq }
    },
    query: (f) => db.all(f) as never,
  }
  return function materialize(ev: EventRef, checkDeterminism = false): boolean {
    const creator = (schema.events as Record<string, { definition: { materialize: (...args: never[]) => unknown } } | undefined>)[ev.name]
    if (!creator) return false
    current = ev
    const fn = creator.definition.materialize as (args: unknown, ctx: MaterializeContext) => unknown
    const out = fn(ev.args, ctx)
    const statements = normalize(out, ev.name)
    if (dev && checkDeterminism) {
      // A second run on the same state must give the same SQL; Date.now(), Math.random() and outside state break replays.
      const again = normalize(fn(structuredClone(ev.args), ctx), ev.name)
      if (JSON.stringify(again) !== JSON.stringify(statements)) {
        throw new Error(
          'the materializer is not deterministic (two runs on the same args and state gave different SQL); move clocks, random values and outside state into the event args',
        )
      }
    }
    for (const s of statements) db.run(s)
    return true
  }
}

function normalize(out: unknown, name: string): readonly SqlFragment[] {
  if (out === undefined || out === null) return []
  if (isSqlFragment(out)) return [out]
  if (Array.isArray(out) && out.every(isSqlFragment)) return out
  throw new Error(`the materializer of "${name}" must return a sql\`...\` fragment, an array of them, or nothing`)
}
