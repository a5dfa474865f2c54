// createStore loads sql.js and the storage side by side (in a browser the wasm downloads and
// compiles while IndexedDB is read), and a sql.js that fails to load leaves the storage unlocked.

import { createStore, defineEvent, defineSchema, memoryStorage, type Storage, sql } from 'tidelog'
import { describe, expect, it, vi } from 'vitest'
import { within } from './helpers/wait.js'

const control = vi.hoisted(() => ({ gate: undefined as undefined | ((load: () => Promise<unknown>) => Promise<unknown>) }))
vi.mock('../src/database.js', async (importOriginal) => {
  const real = await importOriginal<typeof import('../src/database.js')>()
  return {
    ...real,
    loadSqlJs: (options?: Parameters<typeof real.loadSqlJs>[0]) => (control.gate ? control.gate(() => real.loadSqlJs(options)) : real.loadSqlJs(options)),
  }
})

const schema = defineSchema({
  tables: { notes: sql`CREATE TABLE notes (id TEXT PRIMARY KEY)` },
  events: { noted: defineEvent<{ id: string }>({ materialize: ({ id }) => sql`INSERT INTO notes (id) VALUES (${id})` }) },
})

/** A storage that tells when the store first loads it. */
function watched(inner: Storage) {
  let loaded!: () => void
  const loading = new Promise<void>((resolve) => (loaded = resolve))
  const storage: Storage = {
    name: inner.name,
    async open(storeId, options) {
      const handle = await inner.open(storeId, options)
      return { ...handle, load: () => (loaded(), handle.load()) }
    },
  }
  return { storage, loading }
}

describe('createStore: sql.js and the storage load side by side', () => {
  it('opens and loads the storage while sql.js is still loading', async () => {
    const { storage, loading } = watched(memoryStorage())
    // sql.js finishes only once the storage was asked for its log: waiting for sql.js first would never get there
    control.gate = async (load) => {
      await loading
      return load()
    }
    try {
      const store = await within(createStore({ schema, storage }), 'the store to open with sql.js waiting for the storage load')
      store.commit(schema.events.noted({ id: 'a' }))
      expect(store.query<{ id: string }>(sql`SELECT id FROM notes`).value).toEqual([{ id: 'a' }])
      await store.close()
    } finally {
      control.gate = undefined
    }
  })

  it('releases the storage when sql.js fails to load, and says why', async () => {
    const storage = memoryStorage()
    const failure = new Error('the wasm could not be loaded')
    control.gate = () => Promise.reject(failure)
    try {
      await expect(createStore({ schema, storage })).rejects.toBe(failure)
    } finally {
      control.gate = undefined
    }
    // the lock is free: a store opens on the same storage without waiting
    const store = await within(createStore({ schema, storage }), 'a store on the storage after the failed one')
    expect(store.sync.status.value.pending).toBe(0)
    await store.close()
  })
})
