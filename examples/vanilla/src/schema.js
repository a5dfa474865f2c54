import { defineEvent, defineSchema, sql } from 'tidelog'

// The same events as examples/script-tag and examples/node-cli: all of them can share one store.
// Materializers only use their args: every client replays them to the same state.
export const schema = defineSchema({
  tables: {
    todos: sql`CREATE TABLE todos (
      id TEXT PRIMARY KEY, text TEXT NOT NULL,
      completed INTEGER NOT NULL DEFAULT 0, created_at INTEGER NOT NULL)`,
  },
  events: {
    todoCreated: defineEvent({
      materialize: ({ id, text, createdAt }) => sql`INSERT INTO todos (id, text, created_at) VALUES (${id}, ${text}, ${createdAt})`,
    }),
    todoCompleted: defineEvent({ materialize: ({ id }) => sql`UPDATE todos SET completed = 1 WHERE id = ${id}` }),
    todoReopened: defineEvent({ materialize: ({ id }) => sql`UPDATE todos SET completed = 0 WHERE id = ${id}` }),
    todoDeleted: defineEvent({ materialize: ({ id }) => sql`DELETE FROM todos WHERE id = ${id}` }),
  },
})

export const newTodo = (text) => schema.events.todoCreated({ id: crypto.randomUUID(), text, createdAt: Date.now() })
export const setDone = (id, done) => (done ? schema.events.todoCompleted({ id }) : schema.events.todoReopened({ id }))
