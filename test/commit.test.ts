import { effect } from '@preact/signals-core'
import * as tidelog from 'tidelog'
import {
  BackendResetError,
  ConflictDroppedError,
  createStore,
  defineEvent,
  defineSchema,
  isTidelogError,
  localTransport,
  MaterializeError,
  QueryError,
  type Schema,
  SchemaError,
  StorageError,
  StorageLockedError,
  type Store,
  StoreClosedError,
  type StoreOptions,
  sql,
  TIDELOG_ERROR_NAMES,
  TidelogError,
  TransportError,
  UnknownEventError,
  ValidationError,
  WasmLoadError,
} from 'tidelog'
import { memoryBackend } from 'tidelog/server'
import { afterEach, describe, expect, it } from 'vitest'
import { freshStoreId, type Todo, todoEvents, todoSchema, todoTables } from './helpers/todo-schema.js'
import { backendLog, turn, within } from './helpers/wait.js'

const open: Store<any>[] = []
afterEach(async () => {
  await Promise.all(open.splice(0).map((s) => s.close()))
})
async function makeStore<S extends Schema<any>>(options: Partial<StoreOptions<S>> & { schema: S }) {
  const s = await createStore<S>({ storeId: freshStoreId('commit'), ...options })
  open.push(s)
  return s
}

const { todoCreated, todoCompleted, tagAdded, filterChanged } = todoSchema.events
const todosQuery = sql`SELECT * FROM todos ORDER BY id`

describe('store.commit()', () => {
  it('updates state before it returns', async () => {
    const s = await makeStore({ schema: todoSchema })
    s.commit(todoCreated({ id: 'a', text: 'milk' }))
    expect(s.query<Todo>(todosQuery).value).toEqual([{ id: 'a', text: 'milk', completed: 0 }])
  })

  it('runs effects observing an affected query before it returns', async () => {
    const s = await makeStore({ schema: todoSchema })
    const todos = s.query<Todo>(todosQuery)
    let returned = false
    const seen: { rows: Todo[]; returned: boolean }[] = []
    const dispose = effect(() => {
      seen.push({ rows: todos.value, returned })
    })
    s.commit(todoCreated({ id: 'a', text: 'milk' }))
    returned = true
    dispose()
    expect(seen).toEqual([
      { rows: [], returned: false },
      { rows: [{ id: 'a', text: 'milk', completed: 0 }], returned: false },
    ])
  })

  it('applies several events atomically with one signal notification', async () => {
    const s = await makeStore({ schema: todoSchema })
    const joined = s.query(sql`SELECT t.id, t.completed, g.tag FROM todos t LEFT JOIN tags g ON g.todo_id = t.id ORDER BY t.id`)
    let runs = 0
    const dispose = effect(() => {
      joined.value
      runs++
    })
    s.commit(todoCreated({ id: 'a', text: 'milk' }), todoCreated({ id: 'b', text: 'eggs' }), todoCompleted({ id: 'a' }), tagAdded({ todoId: 'b', tag: 'shop' }))
    dispose()
    expect(runs).toBe(2)
    expect(joined.value).toEqual([
      { id: 'a', completed: 1, tag: null },
      { id: 'b', completed: 0, tag: 'shop' },
    ])
  })

  it('needs at least one event', async () => {
    const s = await makeStore({ schema: todoSchema })
    expect(() => s.commit()).toThrow(TidelogError)
  })

  it('passes ctx.event and ctx.query to materializers', async () => {
    const seen: unknown[] = []
    const schema = defineSchema({
      tables: { todos: todoTables.todos },
      events: {
        ...todoEvents(),
        todoCopied: defineEvent<{ from: string; to: string }>({
          materialize: ({ from, to }, ctx) => {
            seen.push(ctx.event)
            const [row] = ctx.query<Todo>(sql`SELECT text FROM todos WHERE id = ${from}`)
            return sql`INSERT INTO todos (id, text) VALUES (${to}, ${row!.text})`
          },
        }),
      },
    })
    const s = await makeStore({ schema, dev: false })
    // ctx.query sees what earlier events of the same commit wrote
    const r = s.commit(schema.events.todoCreated({ id: 'a', text: 'milk' }), schema.events.todoCopied({ from: 'a', to: 'b' }))
    expect(s.query<Todo>(sql`SELECT id, text FROM todos ORDER BY id`).value).toEqual([
      { id: 'a', text: 'milk' },
      { id: 'b', text: 'milk' },
    ])
    expect(seen).toEqual([{ name: 'todoCopied', id: r.events[1]!.id, clientId: s.clientId, seq: null }])
  })
})

describe('CommitReceipt', () => {
  it('describes the committed events', async () => {
    const s = await makeStore({ schema: todoSchema })
    const r1 = s.commit(todoCreated({ id: 'a', text: 'milk' }))
    const r2 = s.commit(todoCreated({ id: 'b', text: 'eggs' }), todoCompleted({ id: 'b' }))
    expect(r1.event).toMatchObject({
      id: `${s.clientId}:1`,
      name: 'todoCreated',
      args: { id: 'a', text: 'milk' },
      clientId: s.clientId,
      sessionId: s.sessionId,
      seq: null,
    })
    expect(typeof r1.event.createdAt).toBe('number')
    expect(r2.event.id).toBe(`${s.clientId}:2`)
    expect(r2.events.map((e) => e.id)).toEqual([`${s.clientId}:2`, `${s.clientId}:3`])
    expect(s.events().map((e) => e.id)).toEqual([r1.event.id, ...r2.events.map((e) => e.id)])
    await expect(r1.persisted).resolves.toBeUndefined()
    await expect(r2.persisted).resolves.toBeUndefined()
  })

  it('confirmed resolves with the global seq once synced', async () => {
    const backend = memoryBackend()
    const s = await makeStore({ schema: todoSchema, transport: localTransport(backend) })
    const r1 = s.commit(todoCreated({ id: 'a', text: 'milk' }))
    const r2 = s.commit(todoCreated({ id: 'b', text: 'eggs' }), todoCompleted({ id: 'b' }))
    await expect(within(r1.confirmed, 'r1.confirmed')).resolves.toBe(1)
    // a commit of several events confirms with the seq of its last one
    await expect(within(r2.confirmed, 'r2.confirmed')).resolves.toBe(3)
    expect(s.events().map((e) => e.seq)).toEqual([1, 2, 3])
  })

  // `confirmed` is made lazily: reading it only after the events were confirmed must still settle
  it('confirmed resolves when first read after the events were confirmed', async () => {
    const backend = memoryBackend()
    const s = await makeStore({ schema: todoSchema, transport: localTransport(backend) })
    const r = s.commit(todoCreated({ id: 'a', text: 'milk' }))
    await within(s.sync.flush(), 'flush')
    await expect(within(r.confirmed, 'confirmed read after flush', 2000)).resolves.toBe(1)
  })

  it('confirmed is null at once for local-only commits', async () => {
    const s = await makeStore({ schema: todoSchema })
    const r = s.commit(filterChanged({ filter: 'done' }))
    await expect(r.confirmed).resolves.toBeNull()
    expect(r.event.seq).toBeNull()
  })

  it('confirmed rejects with StoreClosedError when the store closes first', async () => {
    const s = await makeStore({ schema: todoSchema })
    const r = s.commit(todoCreated({ id: 'a', text: 'milk' }))
    const confirmed = r.confirmed
    await s.close()
    await expect(confirmed).rejects.toBeInstanceOf(StoreClosedError)
  })

  it('causes no unhandledRejection when nobody awaits a receipt that close() rejects', async () => {
    const unhandled: unknown[] = []
    const listener = (reason: unknown) => unhandled.push(reason)
    process.on('unhandledRejection', listener)
    try {
      const s = await makeStore({ schema: todoSchema, transport: localTransport(memoryBackend()) })
      s.sync.pause()
      s.commit(todoCreated({ id: 'a', text: 'milk' })) // receipt dropped on the floor
      const observed = s.commit(todoCreated({ id: 'b', text: 'eggs' }))
      void observed.confirmed // made, but nobody awaits it
      await s.close()
      await turn()
      await turn()
      expect(unhandled).toEqual([])
      await expect(observed.confirmed).rejects.toMatchObject({ name: 'StoreClosedError' })
    } finally {
      process.off('unhandledRejection', listener)
    }
  })
})

describe('store.commit() failures', () => {
  const failing = defineSchema({
    tables: todoTables,
    events: {
      ...todoEvents(),
      boom: defineEvent<{ id: string }>({
        materialize: () => {
          throw new Error('kaboom')
        },
      }),
      halfway: defineEvent<{ id: string }>({
        // the first statement succeeds, the second violates the primary key
        materialize: ({ id }) => [sql`INSERT INTO notes (id, body) VALUES (${id + '-note'}, 'x')`, sql`INSERT INTO todos (id, text) VALUES (${id}, 'dup')`],
      }),
      badSql: defineEvent<{ id: string }>({ materialize: () => sql`INSERT INTO nowhere VALUES (1)` }),
      badReturn: defineEvent<{ id: string }>({ materialize: () => 'DELETE FROM todos' as never }),
    },
  })

  async function seeded() {
    const s = await makeStore({ schema: failing })
    s.commit(failing.events.todoCreated({ id: 'a', text: 'milk' }))
    const todos = s.query<Todo>(todosQuery)
    const notes = s.query(sql`SELECT * FROM notes`)
    let runs = 0
    const dispose = effect(() => {
      todos.value
      notes.value
      runs++
    })
    return { s, todos, notes, runs: () => runs, dispose }
  }

  it.each([
    ['throws', 'boom'],
    ['fails its SQL after earlier statements ran', 'halfway'],
    ['writes a table that does not exist', 'badSql'],
    ['returns something that is not sql', 'badReturn'],
  ] as const)('rolls back state, eventlog and signals when a materializer %s (I1)', async (_what, name) => {
    const { s, todos, notes, runs, dispose } = await seeded()
    const before = { todos: todos.value, events: s.events(), runs: runs() }
    let error: unknown
    try {
      s.commit(
        failing.events.todoCreated({ id: 'b', text: 'eggs' }),
        failing.events.noteAdded({ id: 'n', body: 'first' }),
        failing.events[name]({ id: 'a' }),
        failing.events.todoCompleted({ id: 'a' }),
      )
    } catch (e) {
      error = e
    }
    expect(error).toBeInstanceOf(MaterializeError)
    const m = error as MaterializeError
    expect(m.name).toBe('MaterializeError')
    expect(m.code).toBe('materialize_failed')
    expect(m.eventName).toBe(name)
    expect(m.eventId).toBe(`${s.clientId}:4`)
    expect(m.message).toContain(`"${name}"`)
    expect(m.message).toMatch(/rolled back/)
    expect(m.cause).toBeDefined()

    expect(runs()).toBe(before.runs)
    expect(todos.value).toBe(before.todos)
    expect(notes.value).toEqual([])
    expect(s.events()).toEqual(before.events)
    expect(s.sync.status.value.pending).toBe(1)

    // the store stays usable, and ids continue without a hole
    const r = s.commit(failing.events.todoCreated({ id: 'c', text: 'bread' }))
    expect(r.event.id).toBe(`${s.clientId}:2`)
    expect(todos.value.map((t) => t.id)).toEqual(['a', 'c'])
    expect(runs()).toBe(before.runs + 1)
    dispose()
  })

  it('throws UnknownEventError for values not made by the schema', async () => {
    const s = await makeStore({ schema: todoSchema })
    const other = defineSchema({ tables: {}, events: { somethingElse: defineEvent({ materialize: () => undefined }) } })
    const attempts = [
      () => s.commit(other.events.somethingElse({})),
      () => s.commit({ name: 'todoCreated', args: { id: 'a', text: 'x' } } as never),
      () => s.commit('todoCreated' as never),
      () => s.commit(undefined as never),
      () => s.commit(todoCreated({ id: 'a', text: 'x' }), { name: 'nope', args: {}, argsJson: '{}' }),
    ]
    for (const attempt of attempts) {
      let error: unknown
      try {
        attempt()
      } catch (e) {
        error = e
      }
      expect(error).toBeInstanceOf(UnknownEventError)
      expect((error as UnknownEventError).code).toBe('unknown_event')
      expect((error as Error).message).toContain('todoCreated') // lists the known events
    }
    expect(s.events()).toEqual([])
    expect(s.query(todosQuery).value).toEqual([])
  })

  it('catches a non-deterministic materializer in dev mode', async () => {
    const schema = defineSchema({
      tables: { notes: todoTables.notes },
      events: {
        noteAdded: defineEvent<{ body: string }>({
          materialize: ({ body }) => sql`INSERT INTO notes (id, body) VALUES (${String(Math.random())}, ${body})`,
        }),
      },
    })
    const dev = await makeStore({ schema, dev: true })
    let error: unknown
    try {
      dev.commit(schema.events.noteAdded({ body: 'x' }))
    } catch (e) {
      error = e
    }
    expect(error).toBeInstanceOf(MaterializeError)
    expect((error as Error).message).toMatch(/deterministic/)
    expect(dev.query(sql`SELECT * FROM notes`).value).toEqual([])

    const prod = await makeStore({ schema, dev: false })
    prod.commit(schema.events.noteAdded({ body: 'x' }))
    expect(prod.query(sql`SELECT body FROM notes`).value).toEqual([{ body: 'x' }])
  })
})

describe('store.close()', () => {
  it('makes commit, query, queryOne, events and flush throw StoreClosedError', async () => {
    const s = await makeStore({ schema: todoSchema })
    const todos = s.query<Todo>(todosQuery)
    s.commit(todoCreated({ id: 'a', text: 'milk' }))
    const last = todos.value
    await s.close()
    const calls: [string, () => unknown][] = [
      ['commit', () => s.commit(todoCreated({ id: 'b', text: 'x' }))],
      ['query', () => s.query(todosQuery)],
      ['queryOne', () => s.queryOne(todosQuery)],
      ['events', () => s.events()],
    ]
    for (const [what, call] of calls) {
      let error: unknown
      try {
        call()
      } catch (e) {
        error = e
      }
      expect(error, what).toBeInstanceOf(StoreClosedError)
      expect((error as StoreClosedError).code).toBe('store_closed')
      expect((error as Error).message).toMatch(/createStore/)
    }
    await expect(s.sync.flush()).rejects.toBeInstanceOf(StoreClosedError)
    // a signal made before close keeps its last value
    expect(todos.value).toBe(last)
    // closing twice is harmless
    await expect(s.close()).resolves.toBeUndefined()
  })
})

describe('defineEvent({ local: true })', () => {
  it('are committed and materialized, confirmed null, and never sent', async () => {
    const backend = memoryBackend()
    const storeId = freshStoreId('local')
    const s = await makeStore({ schema: todoSchema, storeId, transport: localTransport(backend) })
    const ui = s.queryOne<{ v: string }>(sql`SELECT v FROM ui WHERE k = 'filter'`)
    const local = s.commit(filterChanged({ filter: 'done' }))
    const mixed = s.commit(filterChanged({ filter: 'all' }), todoCreated({ id: 'a', text: 'milk' }))
    expect(ui.value).toEqual({ v: 'all' })
    expect(s.sync.status.value.pending).toBe(1) // local events are never pending
    await expect(local.confirmed).resolves.toBeNull()
    await expect(local.persisted).resolves.toBeUndefined()
    await expect(within(mixed.confirmed, 'mixed.confirmed')).resolves.toBe(1)
    await within(s.sync.flush(), 'flush')
    const log = await backendLog(backend, storeId)
    expect(log.map((e) => e.name)).toEqual(['todoCreated'])
    // store.events() is the synced eventlog: local events are not part of it
    expect(s.events().map((e) => e.name)).toEqual(['todoCreated'])
  })

  const overlapping = defineSchema({
    tables: todoTables,
    events: {
      ...todoEvents(),
      todoDrafted: defineEvent<{ id: string }>({ local: true, materialize: ({ id }) => sql`INSERT INTO todos (id, text) VALUES (${id}, 'draft')` }),
      uiShared: defineEvent<{ v: string }>({ materialize: ({ v }) => sql`INSERT OR REPLACE INTO ui (k, v) VALUES ('shared', ${v})` }),
    },
  })

  it('throw SchemaError and roll back when writing a table synced events write (I5)', async () => {
    const s = await makeStore({ schema: overlapping })
    s.commit(overlapping.events.todoCreated({ id: 'a', text: 'milk' }))
    const todos = s.query<Todo>(todosQuery)
    const before = todos.value
    let runs = 0
    const dispose = effect(() => {
      todos.value
      runs++
    })
    let error: unknown
    try {
      s.commit(overlapping.events.noteAdded({ id: 'n', body: 'x' }), overlapping.events.todoDrafted({ id: 'b' }))
    } catch (e) {
      error = e
    }
    dispose()
    expect(error).toBeInstanceOf(SchemaError)
    expect((error as Error).message).toContain('"todoDrafted"')
    expect((error as Error).message).toContain('"todos"')
    expect(runs).toBe(1)
    expect(todos.value).toBe(before)
    expect(s.query(sql`SELECT * FROM notes`).value).toEqual([])
    expect(s.events().map((e) => e.name)).toEqual(['todoCreated'])
  })

  it('make a synced event that writes their table throw SchemaError and roll back (I5, reverse order)', async () => {
    const s = await makeStore({ schema: overlapping })
    s.commit(overlapping.events.filterChanged({ filter: 'done' }))
    let error: unknown
    try {
      s.commit(overlapping.events.todoCreated({ id: 'a', text: 'milk' }), overlapping.events.uiShared({ v: 'x' }))
    } catch (e) {
      error = e
    }
    expect(error).toBeInstanceOf(SchemaError)
    expect((error as Error).message).toContain('"uiShared"')
    expect(s.query(sql`SELECT k, v FROM ui`).value).toEqual([{ k: 'filter', v: 'done' }])
    expect(s.query(todosQuery).value).toEqual([])
    expect(s.events()).toEqual([])
  })
})

describe('error classes', () => {
  const cause = new Error('root')
  const samples: [string, string, TidelogError][] = [
    ['ValidationError', 'validation_failed', new ValidationError('e', [{ message: 'bad', path: ['x'] }])],
    ['MaterializeError', 'materialize_failed', new MaterializeError('e', 'c:1', cause)],
    ['QueryError', 'query_failed', new QueryError('SELECT', cause)],
    ['StoreClosedError', 'store_closed', new StoreClosedError('commit')],
    ['UnknownEventError', 'unknown_event', new UnknownEventError('e', ['a'])],
    ['SchemaError', 'schema_invalid', new SchemaError('bad')],
    ['BackendResetError', 'backend_reset', new BackendResetError('x', 'y')],
    ['TransportError', 'transport_failed', new TransportError('down')],
    ['StorageLockedError', 'storage_locked', new StorageLockedError('memory:x')],
    ['StorageError', 'storage_failed', new StorageError('bad')],
    ['ConflictDroppedError', 'conflict_dropped', new ConflictDroppedError('c:1')],
    ['WasmLoadError', 'wasm_load_failed', new WasmLoadError('/sql-wasm.wasm', 'status 404', 'Serve the file.')],
  ]

  it.each(samples)('%s is a TidelogError with a stable name and code', (name, code, error) => {
    expect(error).toBeInstanceOf(TidelogError)
    expect(error).toBeInstanceOf(Error)
    expect(error.name).toBe(name)
    expect(error.code).toBe(code)
    expect(error.message).not.toBe('')
    expect(isTidelogError(error)).toBe(true)
  })

  it('TIDELOG_ERROR_NAMES names exactly the error classes tidelog exports', () => {
    const classes = Object.entries(tidelog).filter(
      ([, value]) => value === TidelogError || (typeof value === 'function' && value.prototype instanceof TidelogError),
    )
    expect(classes.map(([exported]) => exported).sort()).toEqual([...TIDELOG_ERROR_NAMES].sort())
    // and each class's instances carry that name (samples above construct one of each)
    expect(samples.map(([name]) => name).sort()).toEqual(TIDELOG_ERROR_NAMES.filter((n) => n !== 'TidelogError').sort())
  })

  it.each([...TIDELOG_ERROR_NAMES])('isTidelogError recognizes a %s from another copy of the library', (name) => {
    expect(isTidelogError(Object.assign(new Error('x'), { name, code: 'some_code' }))).toBe(true)
  })

  it('isTidelogError recognizes errors from another copy of the library by name and code', () => {
    const foreign = Object.assign(new Error('x'), { name: 'StoreClosedError', code: 'store_closed' })
    expect(isTidelogError(foreign)).toBe(true)
    expect(isTidelogError(Object.assign(new Error('x'), { name: 'RangeError', code: 'x' }))).toBe(false)
    expect(isTidelogError(new Error('x'))).toBe(false)
    expect(isTidelogError('StoreClosedError')).toBe(false)
  })

  it('TransportError carries retryable and protocolCode; MaterializeError its cause', () => {
    const t = new TransportError('too big', { retryable: false, protocolCode: 'too_large' })
    expect(t.retryable).toBe(false)
    expect(t.protocolCode).toBe('too_large')
    expect(t.code).toBe('too_large')
    expect(new MaterializeError('e', 'c:1', cause).cause).toBe(cause)
  })
})
