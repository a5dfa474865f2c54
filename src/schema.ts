import { SchemaError, ValidationError } from './errors.js'
import type { JsonValue } from './protocol.js'
import { isSqlFragment, type SqlFragment } from './sql.js'

/** The Standard Schema v1 interface (zod, valibot, arktype, ... implement it); no validator library is a dependency. */
export interface StandardSchemaV1<Input = unknown, Output = Input> {
  readonly '~standard': {
    readonly version: 1
    readonly vendor: string
    readonly validate: (value: unknown) => StandardResult<Output> | Promise<StandardResult<Output>>
    readonly types?: { readonly input: Input; readonly output: Output } | undefined
  }
}
type StandardResult<Output> =
  | { readonly value: Output; readonly issues?: undefined }
  | { readonly issues: readonly { readonly message: string; readonly path?: readonly unknown[] }[] }

/** What a materializer gets besides the args. */
export interface MaterializeContext {
  /** The event being materialized; `seq` is null while it is pending. */
  readonly event: { readonly name: string; readonly id: string; readonly clientId: string; readonly seq: number | null }
  /** Reads current state (including what earlier statements of this commit wrote). */
  query<T = Record<string, unknown>>(fragment: SqlFragment): T[]
}

/**
 * Turns an event into SQL. Must be deterministic: the same args and state must
 * give the same statements on every client and on every replay, so no
 * `Date.now()`, `Math.random()` or outside state; put such values in the args.
 */
export type Materializer<A> = (args: A, ctx: MaterializeContext) => SqlFragment | readonly SqlFragment[] | void | undefined | null

export interface EventOptions<A> {
  /** Optional Standard Schema validator; args that fail it throw `ValidationError` when the event is made. */
  schema?: StandardSchemaV1<unknown, A> | undefined
  materialize: Materializer<A>
  /** Committed, materialized and persisted, but never synced. Must write only tables synced events never write. */
  local?: boolean
  /** Bump when the materializer's meaning changes: the state is rebuilt from the eventlog. */
  version?: number
}

/** An event definition made by `defineEvent`; put it in `defineSchema({ events })`. */
export interface EventDefinition<A> {
  readonly schema: StandardSchemaV1<unknown, A> | undefined
  readonly materialize: Materializer<A>
  readonly local: boolean
  readonly version: number
}

/** A value to pass to `store.commit()`, made by `schema.events.<name>(args)`. */
export interface EventValue<A = unknown> {
  readonly name: string
  readonly args: A
  /** `args` as JSON text: what is stored and sent, and what materializers see on every replay. */
  readonly argsJson: string
}

/** Makes an event value; also carries its name and definition. */
export type EventCreator<A> = ((args: A) => EventValue<A>) & {
  readonly eventName: string
  readonly definition: EventDefinition<A>
}

type ArgsOf<D> = D extends EventDefinition<infer A> ? A : never

export interface SchemaInput<E extends Record<string, EventDefinition<any>>> {
  /** One `CREATE TABLE` per table, keyed by table name. */
  tables: Record<string, SqlFragment>
  /** Extra DDL run after the tables: indexes, views, triggers. */
  indexes?: readonly SqlFragment[]
  events: E
  /** Bump to force a rebuild of state from the eventlog. */
  version?: number
}

/** A schema made by `defineSchema`. */
export interface Schema<E extends Record<string, EventDefinition<any>> = Record<string, EventDefinition<any>>> {
  readonly tables: Readonly<Record<string, SqlFragment>>
  readonly indexes: readonly SqlFragment[]
  readonly events: { readonly [K in keyof E]: EventCreator<ArgsOf<E[K]>> }
  readonly version: number
  /** Stable hash of tables, indexes, event names/versions/local flags and `version`; state is rebuilt when it changes. */
  readonly hash: string
}

/**
 * Declares one event type: how its args are validated and how it changes state.
 * @example defineEvent<{ id: string }>({ materialize: ({ id }) => sql`DELETE FROM todos WHERE id = ${id}` })
 */
export function defineEvent<A>(options: EventOptions<A>): EventDefinition<A> {
  if (typeof options?.materialize !== 'function') {
    throw new SchemaError('defineEvent() needs a materialize function: ({ ...args }) => sql`...`')
  }
  const schema = options.schema
  if (schema !== undefined && typeof schema?.['~standard']?.validate !== 'function') {
    throw new SchemaError('defineEvent({ schema }) must be a Standard Schema validator (an object with ["~standard"].validate)')
  }
  return { schema, materialize: options.materialize, local: options.local === true, version: options.version ?? 0 }
}

/**
 * Declares the state tables and the events of an app. Call once at module
 * level and pass the result to `createStore`.
 */
export function defineSchema<E extends Record<string, EventDefinition<any>>>(input: SchemaInput<E>): Schema<E> {
  if (typeof input !== 'object' || input === null) throw new SchemaError('defineSchema() needs { tables, events }')
  const tables = input.tables ?? {}
  for (const [name, ddl] of Object.entries(tables)) {
    if (!isSqlFragment(ddl)) throw new SchemaError(`Table "${name}" must be a sql\`CREATE TABLE ...\` fragment`)
    if (ddl.params.length) throw new SchemaError(`Table "${name}": DDL cannot take parameters`)
    if (name.startsWith('__tl_')) throw new SchemaError(`Table "${name}": names starting with __tl_ are reserved by tidelog`)
  }
  const indexes = input.indexes ?? []
  indexes.forEach((ddl, i) => {
    if (!isSqlFragment(ddl) || ddl.params.length) throw new SchemaError(`indexes[${i}] must be a sql\`...\` fragment without parameters`)
  })
  const events: Record<string, EventCreator<unknown>> = {}
  for (const [name, def] of Object.entries(input.events ?? {})) {
    if (typeof def?.materialize !== 'function') throw new SchemaError(`Event "${name}" must be made with defineEvent({ materialize })`)
    events[name] = makeCreator(name, def)
  }
  const version = input.version ?? 0
  const norm = (s: string) => s.replace(/\s+/g, ' ').trim()
  const hash = hashString(
    JSON.stringify({
      v: version,
      tables: Object.entries(tables)
        .sort(([a], [b]) => (a < b ? -1 : 1))
        .map(([n, d]) => [n, norm(d.sql)]),
      indexes: indexes.map((d) => norm(d.sql)),
      events: Object.entries(input.events ?? {})
        .sort(([a], [b]) => (a < b ? -1 : 1))
        .map(([n, d]) => [n, d.version, d.local]),
    }),
  )
  return Object.freeze({ tables, indexes, events, version, hash }) as unknown as Schema<E>
}

function makeCreator<A>(name: string, def: EventDefinition<A>): EventCreator<A> {
  const create = (args: A): EventValue<A> => {
    let value: unknown = args
    if (def.schema) {
      const result = def.schema['~standard'].validate(args)
      if (result instanceof Promise) {
        throw new ValidationError(name, [{ message: 'the validator is asynchronous; commit() is synchronous, so use a synchronous schema' }])
      }
      if (result.issues) throw new ValidationError(name, result.issues)
      value = result.value
    }
    let argsJson: string
    try {
      argsJson = JSON.stringify(value === undefined ? null : value)
    } catch (error) {
      throw new ValidationError(name, [{ message: `args must be JSON-serializable (${(error as Error).message})` }])
    }
    // Materializers always see the JSON form, so the commit and every replay see the same values.
    return { name, args: JSON.parse(argsJson) as A, argsJson }
  }
  return Object.assign(create, { eventName: name, definition: def })
}

/** 53-bit string hash (cyrb53), hex; stable across platforms. */
export function hashString(text: string): string {
  let h1 = 0xdeadbeef,
    h2 = 0x41c6ce57
  for (let i = 0; i < text.length; i++) {
    const ch = text.charCodeAt(i)
    h1 = Math.imul(h1 ^ ch, 2654435761)
    h2 = Math.imul(h2 ^ ch, 1597334677)
  }
  h1 = Math.imul(h1 ^ (h1 >>> 16), 2246822507) ^ Math.imul(h2 ^ (h2 >>> 13), 3266489909)
  h2 = Math.imul(h2 ^ (h2 >>> 16), 2246822507) ^ Math.imul(h1 ^ (h1 >>> 13), 3266489909)
  return (4294967296 * (2097151 & h2) + (h1 >>> 0)).toString(16).padStart(14, '0')
}

export type { JsonValue }
