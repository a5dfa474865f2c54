import { createStore, defineEvent, defineSchema, sql } from 'tidelog'
import { useSignal } from 'tidelog/vue'
import { describe, expect, it } from 'vitest'
import { effectScope, nextTick, watch } from 'vue'

const schema = defineSchema({
  tables: { todos: sql`CREATE TABLE todos (id TEXT PRIMARY KEY, text TEXT NOT NULL)` },
  events: {
    todoCreated: defineEvent<{ id: string; text: string }>({ materialize: ({ id, text }) => sql`INSERT INTO todos (id, text) VALUES (${id}, ${text})` }),
  },
})

describe('useSignal() (tidelog/vue)', () => {
  it('gives a Vue ref that follows a query, triggers Vue watchers, and stops with its scope', async () => {
    const store = await createStore({ schema })
    const query = store.query<{ id: string; text: string }>(sql`SELECT * FROM todos ORDER BY id`)
    const scope = effectScope()
    const seen: number[] = []
    const todos = scope.run(() => {
      const ref = useSignal(query)
      watch(ref, (rows) => seen.push(rows.length))
      return ref
    })!
    expect(todos.value).toEqual([])
    store.commit(schema.events.todoCreated({ id: 'a', text: 'milk' }))
    expect(todos.value.map((t) => t.text)).toEqual(['milk']) // synchronous, like the signal
    await nextTick()
    expect(seen).toEqual([1])
    scope.stop()
    store.commit(schema.events.todoCreated({ id: 'b', text: 'eggs' }))
    expect(todos.value).toHaveLength(1) // no longer follows the signal
    expect(query.value).toHaveLength(2)
    await store.close()
  })
})
