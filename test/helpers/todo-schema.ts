import { defineEvent, defineSchema, sql } from 'tidelog'

/** A todo row as the `todos` table holds it. */
export interface Todo {
  id: string
  text: string
  completed: number
}

/** Table DDL shared by the todo schema and its variants (so equal schemas hash equal). */
export const todoTables = {
  todos: sql`CREATE TABLE todos (id TEXT PRIMARY KEY, text TEXT NOT NULL, completed INTEGER NOT NULL DEFAULT 0)`,
  // WITHOUT ROWID on purpose: the undo log keys such tables by primary key, not rowid
  kv: sql`CREATE TABLE kv (k TEXT PRIMARY KEY, v TEXT) WITHOUT ROWID`,
  notes: sql`CREATE TABLE notes (id TEXT PRIMARY KEY, body TEXT NOT NULL)`,
  tags: sql`CREATE TABLE tags (todo_id TEXT NOT NULL, tag TEXT NOT NULL)`,
  ui: sql`CREATE TABLE ui (k TEXT PRIMARY KEY, v TEXT)`,
}

export const todoIndexes = [
  sql`CREATE INDEX todos_completed ON todos(completed)`,
  sql`CREATE VIEW open_todos AS SELECT id, text FROM todos WHERE completed = 0`,
]

/** Event definitions of the todo app, as a function so that variants can add or change some. */
export const todoEvents = () => ({
  todoCreated: defineEvent<{ id: string; text: string }>({
    materialize: ({ id, text }) => sql`INSERT INTO todos (id, text) VALUES (${id}, ${text})`,
  }),
  todoCompleted: defineEvent<{ id: string }>({
    materialize: ({ id }) => sql`UPDATE todos SET completed = 1 WHERE id = ${id}`,
  }),
  todoRenamed: defineEvent<{ id: string; text: string }>({
    materialize: ({ id, text }) => sql`UPDATE todos SET text = ${text} WHERE id = ${id}`,
  }),
  todoDeleted: defineEvent<{ id: string }>({
    materialize: ({ id }) => sql`DELETE FROM todos WHERE id = ${id}`,
  }),
  kvSet: defineEvent<{ k: string; v: string }>({
    materialize: ({ k, v }) => sql`INSERT OR REPLACE INTO kv (k, v) VALUES (${k}, ${v})`,
  }),
  noteAdded: defineEvent<{ id: string; body: string }>({
    materialize: ({ id, body }) => sql`INSERT INTO notes (id, body) VALUES (${id}, ${body})`,
  }),
  tagAdded: defineEvent<{ todoId: string; tag: string }>({
    materialize: ({ todoId, tag }) => sql`INSERT INTO tags (todo_id, tag) VALUES (${todoId}, ${tag})`,
  }),
  filterChanged: defineEvent<{ filter: string }>({
    local: true,
    materialize: ({ filter }) => sql`INSERT OR REPLACE INTO ui (k, v) VALUES ('filter', ${filter})`,
  }),
})

/** The todo schema most tests use. */
export const todoSchema = defineSchema({ tables: todoTables, indexes: todoIndexes, events: todoEvents() })

export type TodoSchema = typeof todoSchema

/** A storeId no other test uses. */
export const freshStoreId = (prefix = 'test') => `${prefix}-${Math.random().toString(36).slice(2, 10)}`
