import { computed, effect, type ReadonlySignal } from '@preact/signals-core'
import initSqlJs from 'sql.js'
import { createStore, defineEvent, defineSchema, QueryError, type SqlFragment, type Store, sql } from 'tidelog'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { freshStoreId, type Todo, type TodoSchema, todoSchema } from './helpers/todo-schema.js'

const { todoCreated, todoCompleted, todoRenamed, noteAdded, tagAdded, filterChanged } = todoSchema.events

/**
 * Counts how often sql.js runs each statement, by its SQL text. The store reads
 * through prepared statements and resets each one after a run, so one reset is
 * one run. This observes sql.js (a dependency), not tidelog internals.
 */
const runs = new Map<string, number>()
let restore: () => void = () => {}
beforeAll(async () => {
  const SQL = await initSqlJs()
  const probe = new SQL.Database()
  const stmt = probe.prepare('SELECT 1')
  const proto = Object.getPrototypeOf(stmt) as { reset(this: { getSQL(): string }): boolean }
  stmt.free()
  probe.close()
  const original = proto.reset
  proto.reset = function (this: { getSQL(): string }) {
    const text = this.getSQL()
    runs.set(text, (runs.get(text) ?? 0) + 1)
    return original.call(this)
  }
  restore = () => {
    proto.reset = original
  }
})
afterAll(() => restore())
const runsOf = (f: SqlFragment) => runs.get(f.sql) ?? 0

let store: Store<TodoSchema>
beforeAll(async () => {
  // the spy must see the same sql.js instance the store uses
  const s = await createStore({ schema: todoSchema, storeId: freshStoreId('probe') })
  const q = sql`SELECT 'spy-check' AS x FROM todos`
  s.query(q)
  await s.close()
  if (runsOf(q) === 0) throw new Error('the sql.js statement spy does not see the store; the laziness tests cannot observe it')
})
afterEach(async () => {
  await store?.close()
})
async function fresh() {
  store = await createStore({ schema: todoSchema, storeId: freshStoreId('query') })
  return store
}

/** Counts effect runs over a signal; the first run happens at once. */
function watch<T>(sig: ReadonlySignal<T>) {
  const values: T[] = []
  const dispose = effect(() => {
    values.push(sig.value)
  })
  return {
    values,
    get count() {
      return values.length
    },
    dispose,
  }
}

describe('store.query()', () => {
  it('returns the current rows as a signal', async () => {
    const s = await fresh()
    s.commit(todoCreated({ id: 'b', text: 'eggs' }), todoCreated({ id: 'a', text: 'milk' }))
    const todos = s.query<Todo>(sql`SELECT * FROM todos ORDER BY id`)
    expect(todos.value).toEqual([
      { id: 'a', text: 'milk', completed: 0 },
      { id: 'b', text: 'eggs', completed: 0 },
    ])
  })

  it('binds parameters, one live signal per fragment', async () => {
    const s = await fresh()
    const open = s.query<Todo>(sql`SELECT id FROM todos WHERE completed = ${0} ORDER BY id`)
    const done = s.query<Todo>(sql`SELECT id FROM todos WHERE completed = ${1} ORDER BY id`)
    const w1 = watch(open)
    const w2 = watch(done)
    s.commit(todoCreated({ id: 'a', text: 'milk' }), todoCreated({ id: 'b', text: 'eggs' }), todoCompleted({ id: 'a' }))
    expect(open.value).toEqual([{ id: 'b' }])
    expect(done.value).toEqual([{ id: 'a' }])
    w1.dispose()
    w2.dispose()
  })

  it('is lazy: runs no SQL after commits while nothing watches it', async () => {
    const s = await fresh()
    const q = sql`SELECT * FROM todos ORDER BY id`
    const todos = s.query<Todo>(q)
    const atCreation = runsOf(q)
    for (let i = 0; i < 5; i++) s.commit(todoCreated({ id: `t${i}`, text: 'x' }))
    expect(runsOf(q)).toBe(atCreation)
    // reading pulls the current rows once
    expect(todos.value).toHaveLength(5)
    expect(runsOf(q)).toBe(atCreation + 1)
  })

  it('returns the identical array when read twice with no writes in between', async () => {
    const s = await fresh()
    s.commit(todoCreated({ id: 'a', text: 'milk' }))
    const q = sql`SELECT * FROM todos`
    const todos = s.query<Todo>(q)
    const first = todos.value
    const after = runsOf(q)
    expect(todos.value).toBe(first)
    expect(runsOf(q)).toBe(after)
  })

  it('stops running once its last watcher is gone', async () => {
    const s = await fresh()
    const q = sql`SELECT id FROM todos ORDER BY id`
    const todos = s.query<Todo>(q)
    const w = watch(todos)
    s.commit(todoCreated({ id: 'a', text: 'milk' }))
    expect(w.count).toBe(2)
    w.dispose()
    const before = runsOf(q)
    s.commit(todoCreated({ id: 'b', text: 'eggs' }))
    s.commit(todoCreated({ id: 'c', text: 'bread' }))
    expect(runsOf(q)).toBe(before)
    // watched again, it shows the current rows
    const again = watch(todos)
    expect(again.values[0]).toEqual([{ id: 'a' }, { id: 'b' }, { id: 'c' }])
    again.dispose()
  })

  it('re-runs only after a commit writes a table it reads', async () => {
    const s = await fresh()
    const q = sql`SELECT id, text FROM todos ORDER BY id`
    const todos = s.query<Todo>(q)
    const w = watch(todos)
    const before = runsOf(q)
    s.commit(noteAdded({ id: 'n', body: 'x' }))
    s.commit(filterChanged({ filter: 'done' }))
    s.commit(tagAdded({ todoId: 'a', tag: 'x' }))
    expect(w.count).toBe(1)
    expect(runsOf(q)).toBe(before)
    s.commit(todoCreated({ id: 'a', text: 'milk' }))
    expect(w.count).toBe(2)
    expect(runsOf(q)).toBe(before + 1)
    w.dispose()
  })

  it('keeps the same array, without notifying, when the result did not change', async () => {
    const s = await fresh()
    s.commit(todoCreated({ id: 'a', text: 'milk' }), todoCreated({ id: 'b', text: 'eggs' }), todoCompleted({ id: 'b' }))
    const open = s.query<Todo>(sql`SELECT * FROM todos WHERE completed = 0 ORDER BY id`)
    const w = watch(open)
    const first = open.value
    s.commit(todoRenamed({ id: 'a', text: 'milk' })) // an UPDATE that sets the same value
    s.commit(todoRenamed({ id: 'b', text: 'EGGS' })) // a row outside the WHERE
    s.commit(todoCreated({ id: 'c', text: 'x' }), todoCompleted({ id: 'c' })) // in and out again
    expect(open.value).toBe(first)
    expect(w.count).toBe(1)
    w.dispose()
  })

  it('keeps row identity for unchanged rows', async () => {
    const s = await fresh()
    s.commit(todoCreated({ id: 'a', text: 'milk' }), todoCreated({ id: 'b', text: 'eggs' }), todoCreated({ id: 'c', text: 'bread' }))
    const todos = s.query<Todo>(sql`SELECT * FROM todos ORDER BY id`)
    const w = watch(todos)
    const [a, b, c] = todos.value
    s.commit(todoRenamed({ id: 'b', text: 'EGGS' }))
    const next = todos.value
    expect(next).not.toBe(w.values[0])
    expect(next[0]).toBe(a)
    expect(next[1]).not.toBe(b)
    expect(next[1]).toEqual({ id: 'b', text: 'EGGS', completed: 0 })
    expect(next[2]).toBe(c)
    s.commit(todoCreated({ id: 'aa', text: 'new' }))
    expect(todos.value[0]).toBe(a)
    expect(todos.value[1]).toEqual({ id: 'aa', text: 'new', completed: 0 })
    expect(todos.value[2]).toBe(next[1])
    expect(w.count).toBe(3)
    w.dispose()
  })

  // BUG: rows are matched by content; equal rows share one cached object, so a result
  // with duplicate rows is rebuilt with different objects on the first re-run and notifies.
  it('keeps the same array for an unchanged result with duplicate rows', async () => {
    const s = await fresh()
    s.commit(
      todoCreated({ id: 'a', text: 'milk' }),
      todoCreated({ id: 'b', text: 'eggs' }),
      todoCreated({ id: 'c', text: 'bread' }),
      todoCompleted({ id: 'c' }),
    )
    const flags = s.query<{ completed: number }>(sql`SELECT completed FROM todos ORDER BY id`)
    const w = watch(flags)
    const first = flags.value // [{0}, {0}, {1}]
    s.commit(todoRenamed({ id: 'a', text: 'MILK' })) // writes todos, leaves the result as it is
    expect(flags.value).toBe(first)
    expect(w.count).toBe(1)
    w.dispose()
  })

  // BUG: the row cache key joins column values with "\u0000" separators without escaping,
  // so two different rows can get the same key and the query shows the stale row.
  it('shows a changed row even when its text contains NUL characters', async () => {
    const schema = defineSchema({
      tables: { pairs: sql`CREATE TABLE pairs (k TEXT PRIMARY KEY, a TEXT, b TEXT)` },
      events: { pairSet: defineEvent<{ a: string; b: string }>({ materialize: ({ a, b }) => sql`INSERT OR REPLACE INTO pairs VALUES ('k', ${a}, ${b})` }) },
    })
    const s = await createStore({ schema })
    try {
      const pairs = s.query<{ a: string; b: string }>(sql`SELECT a, b FROM pairs`)
      const w = watch(pairs)
      s.commit(schema.events.pairSet({ a: 'a\u0000sb', b: 'c' }))
      s.commit(schema.events.pairSet({ a: 'a', b: 'b\u0000sc' }))
      expect(pairs.value).toEqual([{ a: 'a', b: 'b\u0000sc' }])
      w.dispose()
    } finally {
      await s.close()
    }
  })

  it('tracks views: a query on a view re-runs when the base table changes', async () => {
    const s = await fresh()
    const open = s.query<Todo>(sql`SELECT id FROM open_todos ORDER BY id`)
    const w = watch(open)
    s.commit(todoCreated({ id: 'a', text: 'milk' }))
    expect(open.value).toEqual([{ id: 'a' }])
    s.commit(todoCompleted({ id: 'a' }))
    expect(open.value).toEqual([])
    expect(w.count).toBe(3)
    w.dispose()
  })

  it('tracks subqueries and joins', async () => {
    const s = await fresh()
    s.commit(todoCreated({ id: 'a', text: 'milk' }), todoCreated({ id: 'b', text: 'eggs' }))
    const tagged = s.query<Todo>(sql`SELECT id FROM todos WHERE id IN (SELECT todo_id FROM tags) ORDER BY id`)
    const joined = s.query(sql`SELECT t.id, g.tag FROM todos t JOIN tags g ON g.todo_id = t.id ORDER BY t.id`)
    const w1 = watch(tagged)
    const w2 = watch(joined)
    s.commit(tagAdded({ todoId: 'b', tag: 'shop' }))
    expect(tagged.value).toEqual([{ id: 'b' }])
    expect(joined.value).toEqual([{ id: 'b', tag: 'shop' }])
    s.commit(todoRenamed({ id: 'b', text: 'EGGS' }))
    expect(w1.count).toBe(2) // re-ran (todos was written) but the result is the same
    expect(w2.count).toBe(2)
    w1.dispose()
    w2.dispose()
  })

  it('tracks tables read only through a covering index', async () => {
    const s = await fresh()
    const done = s.query<{ n: number }>(sql`SELECT count(*) AS n FROM todos WHERE completed = 1`)
    const w = watch(done)
    s.commit(todoCreated({ id: 'a', text: 'milk' }), todoCompleted({ id: 'a' }))
    expect(done.value).toEqual([{ n: 1 }])
    expect(w.count).toBe(2)
    w.dispose()
  })

  it('tracks local tables', async () => {
    const s = await fresh()
    const ui = s.query(sql`SELECT v FROM ui`)
    const w = watch(ui)
    s.commit(filterChanged({ filter: 'done' }))
    expect(ui.value).toEqual([{ v: 'done' }])
    expect(w.count).toBe(2)
    w.dispose()
  })

  it('works inside computed()', async () => {
    const s = await fresh()
    const todos = s.query<Todo>(sql`SELECT * FROM todos`)
    const count = computed(() => todos.value.length)
    const w = watch(count)
    s.commit(todoCreated({ id: 'a', text: 'milk' }))
    s.commit(noteAdded({ id: 'n', body: 'x' }))
    expect(w.values).toEqual([0, 1])
    w.dispose()
  })

  it('throws QueryError at query() time for bad SQL', async () => {
    const s = await fresh()
    for (const bad of [sql`SELECT * FROM nowhere`, sql`SELEC 1`, sql`SELECT nope FROM todos`]) {
      let error: unknown
      try {
        s.query(bad)
      } catch (e) {
        error = e
      }
      expect(error).toBeInstanceOf(QueryError)
      const q = error as QueryError
      expect(q.name).toBe('QueryError')
      expect(q.code).toBe('query_failed')
      expect(q.sql).toBe(bad.sql)
      expect(q.message).toContain(bad.sql)
    }
    // the store stays usable
    s.commit(todoCreated({ id: 'a', text: 'milk' }))
    expect(s.query(sql`SELECT id FROM todos`).value).toEqual([{ id: 'a' }])
  })

  it('satisfies the Svelte store contract: subscribe calls at once and returns an unsubscribe', async () => {
    const s = await fresh()
    const todos = s.query<Todo>(sql`SELECT id FROM todos ORDER BY id`)
    const seen: Todo[][] = []
    const unsubscribe = todos.subscribe((value) => seen.push(value))
    expect(typeof unsubscribe).toBe('function')
    expect(seen).toEqual([[]])
    s.commit(todoCreated({ id: 'a', text: 'milk' }))
    expect(seen).toEqual([[], [{ id: 'a' }]])
    unsubscribe()
    s.commit(todoCreated({ id: 'b', text: 'eggs' }))
    expect(seen).toHaveLength(2)
  })
})

describe('store.queryOne()', () => {
  it('returns the first row or undefined, live', async () => {
    const s = await fresh()
    const a = s.queryOne<Todo>(sql`SELECT * FROM todos WHERE id = ${'a'}`)
    const w = watch(a)
    expect(a.value).toBeUndefined()
    s.commit(todoCreated({ id: 'a', text: 'milk' }))
    expect(a.value).toEqual({ id: 'a', text: 'milk', completed: 0 })
    const row = a.value
    s.commit(todoCreated({ id: 'b', text: 'eggs' }))
    expect(a.value).toBe(row) // unchanged: same object, no notification
    expect(w.count).toBe(2)
    s.commit(todoSchema.events.todoDeleted({ id: 'a' }))
    expect(a.value).toBeUndefined()
    expect(w.count).toBe(3)
    w.dispose()
  })

  it('throws QueryError for bad SQL', async () => {
    const s = await fresh()
    expect(() => s.queryOne(sql`SELECT * FROM nowhere`)).toThrow(QueryError)
  })
})
