// The todo app in a terminal: a Node process with its own copy of the store on
// disk (./todos-data), syncing through `tidelog serve` with the browser examples.
//   npm start                 watch: prints the todos and the sync status as they change
//   npm run add -- "Buy milk"  adds one, waits until the server has it, exits
//   npm run list              prints the todos once synced, exits
// TIDELOG_URL (default http://127.0.0.1:8787) is the sync server; TODOS_DATA the directory.

import { randomUUID } from 'node:crypto'
import { effect } from '@preact/signals-core'
import { createStore, defineEvent, defineSchema, sql } from 'tidelog'
import { fileStorage } from 'tidelog/adapters/filesystem'
import { websocketTransport } from 'tidelog/transports/websocket'

// The same events as the browser examples: they all share the store 'todos'.
const schema = defineSchema({
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

const [command = 'watch', ...rest] = process.argv.slice(2)
const url = process.env.TIDELOG_URL ?? 'http://127.0.0.1:8787'
const store = await createStore({
  schema,
  storeId: 'todos',
  storage: fileStorage({ dir: process.env.TODOS_DATA ?? 'todos-data' }),
  // under Node 20 (no global WebSocket) the transport uses the 'ws' package by itself
  transport: websocketTransport({ url }),
})
const todos = store.query(sql`SELECT id, text, completed FROM todos ORDER BY created_at, id`)
const print = () => {
  const { state, pending, head } = store.sync.status.value
  console.log(`-- ${state}, head ${head}, ${pending} pending`)
  for (const t of todos.value) console.log(`[${t.completed ? 'x' : ' '}] ${t.text}`)
}

/** Resolves once the store has caught up with the server (status 'synced', nothing pending). */
const synced = () =>
  new Promise((resolve) => {
    const stop = effect(() => {
      const { state, pending } = store.sync.status.value
      if (state === 'synced' && pending === 0) queueMicrotask(() => (stop(), resolve()))
    })
  })

if (command === 'add') {
  const text = rest.join(' ').trim()
  if (!text) {
    console.error('usage: npm run add -- "what needs doing"')
    process.exitCode = 1
  } else {
    const receipt = store.commit(schema.events.todoCreated({ id: randomUUID(), text, createdAt: Date.now() }))
    const seq = await receipt.confirmed
    console.log(`added "${text}" (seq ${seq})`)
  }
  await store.close()
} else if (command === 'list') {
  await synced()
  print()
  await store.close()
} else if (command === 'watch') {
  console.log(`syncing with ${url}; Ctrl+C stops`)
  effect(print)
  const stop = async () => {
    await store.close()
    process.exit(0)
  }
  process.on('SIGINT', stop)
  process.on('SIGTERM', stop)
} else {
  console.error(`unknown command "${command}": use watch, add or list`)
  await store.close()
  process.exitCode = 1
}
