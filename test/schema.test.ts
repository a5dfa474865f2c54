import {
  createStore,
  defineEvent,
  defineSchema,
  isTidelogError,
  SchemaError,
  type StandardSchemaV1,
  type Store,
  sql,
  TidelogError,
  ValidationError,
} from 'tidelog'
import { afterEach, describe, expect, it } from 'vitest'
import { type Todo, todoEvents, todoIndexes, todoSchema, todoTables } from './helpers/todo-schema.js'

const open: Store<any>[] = []
afterEach(async () => {
  await Promise.all(open.splice(0).map((s) => s.close()))
})
async function store<S extends Parameters<typeof createStore>[0]['schema']>(schema: S) {
  const s = await createStore({ schema })
  open.push(s)
  return s
}

/** A hand-made Standard Schema validator: `{ id: string, text: non-empty string }`, trimming `text`. */
const todoArgs: StandardSchemaV1<unknown, { id: string; text: string }> = {
  '~standard': {
    version: 1,
    vendor: 'test',
    validate(value: unknown) {
      const v = value as Record<string, unknown>
      const issues: { message: string; path?: readonly unknown[] }[] = []
      if (typeof v?.id !== 'string') issues.push({ message: 'expected string', path: ['id'] })
      if (typeof v?.text !== 'string') issues.push({ message: 'expected string', path: [{ key: 'text' }] })
      else if (v.text.trim() === '') issues.push({ message: 'must not be empty', path: ['text'] })
      if (issues.length) return { issues }
      return { value: { id: v.id as string, text: (v.text as string).trim() } }
    },
  },
}

const validatedSchema = defineSchema({
  tables: { todos: todoTables.todos },
  events: {
    todoCreated: defineEvent<{ id: string; text: string }>({
      schema: todoArgs,
      materialize: ({ id, text }) => sql`INSERT INTO todos (id, text) VALUES (${id}, ${text})`,
    }),
  },
})

describe('sql``', () => {
  it('turns every interpolation into a bound parameter', () => {
    const id = 'a'
    const n = 3
    expect(sql`SELECT * FROM todos WHERE id = ${id} AND completed = ${n}`).toEqual({
      sql: 'SELECT * FROM todos WHERE id = ? AND completed = ?',
      params: ['a', 3],
    })
    expect(sql`SELECT 1`).toEqual({ sql: 'SELECT 1', params: [] })
  })

  it('gives every run of one call site its own values, and a hand-made strings array its own text', () => {
    const at = (id: string) => sql`SELECT * FROM todos WHERE id = ${id}`
    expect([at('a'), at('b')]).toEqual([
      { sql: 'SELECT * FROM todos WHERE id = ?', params: ['a'] },
      { sql: 'SELECT * FROM todos WHERE id = ?', params: ['b'] },
    ])
    const strings = Object.assign(['SELECT ', ''], { raw: ['SELECT ', ''] }) as unknown as TemplateStringsArray
    expect(sql(strings, 1).sql).toBe('SELECT ?')
    ;(strings as unknown as string[])[0] = 'VALUES ('
    ;(strings as unknown as string[])[1] = ')'
    expect(sql(strings, 1).sql).toBe('VALUES (?)')
  })

  it('keeps an injection attempt as data, in materializers and in queries', async () => {
    const s = await store(todoSchema)
    const evil = "x'); DROP TABLE todos; --"
    const evilId = "' OR '1'='1"
    s.commit(todoSchema.events.todoCreated({ id: evilId, text: evil }))
    s.commit(todoSchema.events.todoCreated({ id: 'b', text: 'plain' }))
    const rows = s.query<Todo>(sql`SELECT * FROM todos ORDER BY id`).value
    expect(rows.map((r) => r.text)).toEqual([evil, 'plain'])
    // the same string as a query parameter matches only itself
    expect(s.query<Todo>(sql`SELECT * FROM todos WHERE id = ${evilId}`).value).toHaveLength(1)
    expect(s.query<Todo>(sql`SELECT * FROM todos WHERE id = ${"nope' OR '1'='1"}`).value).toEqual([])
  })
})

describe('defineSchema()', () => {
  const base = () => ({ tables: { ...todoTables }, indexes: [...todoIndexes], events: todoEvents() })

  it('gives equal schemas the same hash', () => {
    expect(defineSchema(base()).hash).toBe(defineSchema(base()).hash)
    expect(defineSchema(base()).hash).toBe(todoSchema.hash)
  })

  it('ignores whitespace differences in DDL and the order of table keys', () => {
    const spaced = base()
    spaced.tables.todos = sql`CREATE TABLE todos (id TEXT PRIMARY KEY,
        text TEXT NOT NULL,   completed INTEGER NOT NULL DEFAULT 0)`
    expect(defineSchema(spaced).hash).toBe(todoSchema.hash)
    const { todos, ...rest } = todoTables
    expect(defineSchema({ ...base(), tables: { ...rest, todos } }).hash).toBe(todoSchema.hash)
  })

  it('does not depend on materializer code (its meaning is versioned explicitly)', () => {
    const events = todoEvents()
    const changed = {
      ...events,
      todoCreated: defineEvent<{ id: string; text: string }>({ materialize: ({ id }) => sql`INSERT INTO todos (id, text) VALUES (${id}, '')` }),
    }
    expect(defineSchema({ ...base(), events: changed }).hash).toBe(todoSchema.hash)
  })

  it.each([
    ['a table', () => ({ ...base(), tables: { ...todoTables, extra: sql`CREATE TABLE extra (x)` } })],
    ['a table definition', () => ({ ...base(), tables: { ...todoTables, notes: sql`CREATE TABLE notes (id TEXT PRIMARY KEY, body TEXT)` } })],
    ['an index', () => ({ ...base(), indexes: [...todoIndexes, sql`CREATE INDEX todos_text ON todos(text)`] })],
    ['no indexes', () => ({ ...base(), indexes: [] })],
    [
      'an event name',
      () => {
        const { todoDeleted, ...events } = todoEvents()
        return { ...base(), events: { ...events, todoRemoved: todoDeleted } }
      },
    ],
    ['an added event', () => ({ ...base(), events: { ...todoEvents(), extra: defineEvent({ materialize: () => undefined }) } })],
    [
      'an event version',
      () => ({
        ...base(),
        events: {
          ...todoEvents(),
          todoCompleted: defineEvent<{ id: string }>({ version: 2, materialize: ({ id }) => sql`UPDATE todos SET completed = 1 WHERE id = ${id}` }),
        },
      }),
    ],
    [
      'an event becoming local',
      () => ({
        ...base(),
        events: { ...todoEvents(), noteAdded: defineEvent<{ id: string; body: string }>({ local: true, materialize: () => undefined }) },
      }),
    ],
    ['the schema version', () => ({ ...base(), version: 1 })],
  ])('changes the hash with %s', (_what, make) => {
    expect(defineSchema(make() as Parameters<typeof defineSchema>[0]).hash).not.toBe(todoSchema.hash)
  })

  it('rejects tables that are not sql fragments, DDL with parameters and reserved names', () => {
    expect(() => defineSchema({ tables: { t: 'CREATE TABLE t (x)' as never }, events: {} })).toThrow(SchemaError)
    expect(() => defineSchema({ tables: { t: sql`CREATE TABLE t (x DEFAULT ${1})` }, events: {} })).toThrow(SchemaError)
    expect(() => defineSchema({ tables: { __tl_x: sql`CREATE TABLE __tl_x (x)` }, events: {} })).toThrow(/reserved/)
    expect(() => defineSchema({ tables: {}, indexes: ['CREATE INDEX i ON t(x)' as never], events: {} })).toThrow(SchemaError)
    expect(() => defineSchema({ tables: {}, events: { e: { materialize: 1 } as never } })).toThrow(SchemaError)
  })

  it('fails createStore() with SchemaError when the DDL is invalid', async () => {
    const bad = defineSchema({ tables: { t: sql`CREATE TABLE t (x` }, events: {} })
    const err = await createStore({ schema: bad }).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(SchemaError)
    expect((err as SchemaError).message).toMatch(/defineSchema/)
  })
})

describe('defineEvent()', () => {
  it('needs a materialize function and a Standard Schema validator', () => {
    expect(() => defineEvent({} as never)).toThrow(SchemaError)
    expect(() => defineEvent({ schema: { validate: () => ({}) } as never, materialize: () => undefined })).toThrow(/Standard Schema/)
  })
})

describe('schema.events.<name>(args)', () => {
  it('returns an event value with the args in JSON form', () => {
    const when = new Date(0)
    const value = todoSchema.events.todoCreated({ id: 'a', text: 'milk', when, skip: undefined } as never)
    expect(value.name).toBe('todoCreated')
    expect(value.args).toEqual({ id: 'a', text: 'milk', when: when.toISOString() })
    expect(JSON.parse(value.argsJson)).toEqual(value.args)
    expect(todoSchema.events.todoCreated.eventName).toBe('todoCreated')
  })

  it('uses the validator output as the committed args', async () => {
    const s = await store(validatedSchema)
    const receipt = s.commit(validatedSchema.events.todoCreated({ id: 'a', text: '  milk  ' }))
    expect(receipt.event.args).toEqual({ id: 'a', text: 'milk' })
    expect(s.query<Todo>(sql`SELECT text FROM todos`).value).toEqual([{ text: 'milk' }])
  })

  it('throws ValidationError naming the field, and nothing is committed', async () => {
    const s = await store(validatedSchema)
    let error: unknown
    try {
      s.commit(validatedSchema.events.todoCreated({ id: 'a', text: 42 as unknown as string }))
    } catch (e) {
      error = e
    }
    expect(error).toBeInstanceOf(ValidationError)
    const v = error as ValidationError
    expect(v.name).toBe('ValidationError')
    expect(v.code).toBe('validation_failed')
    expect(v.eventName).toBe('todoCreated')
    expect(v.message).toContain('todoCreated')
    expect(v.message).toContain('text: expected string')
    expect(v.message).toContain('Nothing was committed')
    expect(v.issues).toHaveLength(1)
    expect(s.events()).toEqual([])
    expect(s.query(sql`SELECT * FROM todos`).value).toEqual([])
  })

  it('reports every failing field', () => {
    expect(() => validatedSchema.events.todoCreated({} as never)).toThrow(/id: expected string; text: expected string/)
    expect(() => validatedSchema.events.todoCreated({ id: 'a', text: ' ' })).toThrow(/text: must not be empty/)
  })

  it('rejects an asynchronous validator', () => {
    const asyncSchema = defineSchema({
      tables: {},
      events: {
        e: defineEvent<{ x: number }>({
          schema: { '~standard': { version: 1, vendor: 'test', validate: async (value: unknown) => ({ value: value as { x: number } }) } },
          materialize: () => undefined,
        }),
      },
    })
    let error: unknown
    try {
      asyncSchema.events.e({ x: 1 })
    } catch (e) {
      error = e
    }
    expect(error).toBeInstanceOf(ValidationError)
    expect((error as Error).message).toMatch(/asynchronous/)
    expect((error as Error).message).toContain('Nothing was committed')
  })

  it('rejects args that are not JSON-serializable', () => {
    const circular: Record<string, unknown> = { id: 'a' }
    circular.self = circular
    expect(() => todoSchema.events.todoCreated(circular as never)).toThrow(ValidationError)
    expect(() => todoSchema.events.todoCreated({ id: 'a', text: 1n } as never)).toThrow(/JSON/)
  })

  it('throws errors that are TidelogErrors', () => {
    try {
      todoSchema.events.todoCreated({ id: 'a', text: 1n } as never)
    } catch (e) {
      expect(e).toBeInstanceOf(TidelogError)
      expect(isTidelogError(e)).toBe(true)
    }
    expect.assertions(2)
  })
})
