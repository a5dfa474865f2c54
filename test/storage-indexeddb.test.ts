import 'fake-indexeddb/auto'
import { crc32 } from 'node:zlib'
import { createStore, del, get, set, type UseStore } from 'idb-keyval'
import type { JournalRecord, Storage } from 'tidelog'
import { type IndexedDbStorage, indexedDbStorage } from 'tidelog/adapters/indexeddb'
import { runStorageConformance } from 'tidelog/testing'
import { afterEach, describe, expect, it, vi } from 'vitest'
import { checksum64 } from '../src/checksum64.js'

let counter = 0
const uniqueName = () => `tidelog-test-${Date.now().toString(36)}-${counter++}`
const dbNames = new Map<Storage, string>()
const make = (name: string, navigatorValue?: unknown, persist?: boolean): IndexedDbStorage => {
  // the adapter reads navigator when it is made, so a scoped stand-in is enough
  const storage = withNavigator(navigatorValue, () => indexedDbStorage({ name, persist }))
  dbNames.set(storage, name)
  return storage
}

function withNavigator<T>(value: unknown, fn: () => T): T {
  if (value === undefined) return fn()
  const previous = Object.getOwnPropertyDescriptor(globalThis, 'navigator')
  Object.defineProperty(globalThis, 'navigator', { value, configurable: true })
  try {
    return fn()
  } finally {
    if (previous) Object.defineProperty(globalThis, 'navigator', previous)
    else delete (globalThis as { navigator?: unknown }).navigator
  }
}

/** A LockManager with the semantics the adapter relies on: exclusive, ifAvailable, held until the callback settles. */
function fakeLockManager(): LockManager {
  const held = new Map<string, (() => void)[]>()
  return {
    async request(name: string, options: LockOptions, callback: (lock: Lock | null) => unknown) {
      const waiters = held.get(name)
      if (waiters && options.ifAvailable) return callback(null)
      if (waiters) await new Promise<void>((resolve) => waiters.push(resolve))
      else held.set(name, [])
      try {
        return await callback({ name, mode: 'exclusive' } as Lock)
      } finally {
        const next = held.get(name)!.shift()
        if (next) next()
        else held.delete(name)
      }
    },
    query: async () => ({ held: [], pending: [] }),
  } as unknown as LockManager
}

const corruptNewestSnapshot = async (storeId: string, storage: Storage) => {
  const raw: UseStore = createStore(dbNames.get(storage)!, 'tidelog')
  const keys = (await raw(
    'readonly',
    (s) =>
      new Promise<IDBValidKey[]>((resolve) => {
        const request = s.getAllKeys(IDBKeyRange.bound(`${storeId}/s/`, `${storeId}/s/\uffff`))
        request.onsuccess = () => resolve(request.result)
      }),
  )) as string[]
  const newest = keys[keys.length - 1]!
  const value = await get<{ bytes: Blob }>(newest, raw)
  const bytes = new Uint8Array(await value!.bytes.arrayBuffer())
  bytes[10] = bytes[10]! ^ 0x40
  await set(newest, { ...value, bytes: new Blob([bytes]) }, raw)
}

const removeJournalRecord = async (storeId: string, storage: Storage, pos: number) => {
  await del(`${storeId}/j/${String(pos).padStart(15, '0')}`, createStore(dbNames.get(storage)!, 'tidelog'))
}

runStorageConformance('indexedDbStorage()', () => make(uniqueName()), {
  reopen: (previous) => make(dbNames.get(previous)!),
  corruptNewestSnapshot,
  removeJournalRecord,
})

const locks = fakeLockManager()
runStorageConformance('indexedDbStorage() with Web Locks', () => make(uniqueName(), { locks }), {
  reopen: (previous) => make(dbNames.get(previous)!, { locks }),
  corruptNewestSnapshot,
  largeSnapshotBytes: 1024 * 1024,
})

const records = (from: number, count: number): JournalRecord[] =>
  Array.from({ length: count }, (_, i) => ({ pos: from + i, t: 'init', clientId: `c${from + i}` }))

describe('indexedDbStorage() durability', () => {
  afterEach(() => vi.restoreAllMocks())

  it('writes records and snapshots in strict-durability transactions', async () => {
    const transaction = vi.spyOn(IDBDatabase.prototype, 'transaction')
    const handle = await make(uniqueName()).open('strict')
    await handle.load()
    await handle.append(records(1, 3))
    await handle.saveSnapshot({ position: 3, schemaHash: 'h', bytes: new Uint8Array(10) })
    await handle.close()
    const writes = transaction.mock.calls.filter((call) => call[1] === 'readwrite')
    expect(writes.length).toBeGreaterThanOrEqual(2)
    for (const call of writes) expect(call[2]).toEqual({ durability: 'strict' })
  })

  it('checksums snapshots with checksum64, for every length, and drops one whose bytes no longer match it', async () => {
    const name = uniqueName()
    const handle = await make(name).open('sum')
    await handle.load()
    const raw: UseStore = createStore(name, 'tidelog')
    for (const size of [0, 1, 7, 8, 9, 15, 16, 17, 1000, 4099]) {
      const bytes = Uint8Array.from({ length: size }, (_, i) => (i * 2654435761) >>> 24)
      await handle.saveSnapshot({ position: size + 1, schemaHash: 'h', bytes })
      const stored = await get<{ sum: string; crc?: number }>(`sum/s/${String(size + 1).padStart(15, '0')}`, raw)
      expect({ size, sum: stored?.sum, crc: stored?.crc }).toEqual({ size, sum: checksum64(bytes), crc: undefined })
    }
    await handle.close()
    // the newest snapshot (4,099 bytes at position 4100) keeps its sum but loses its last byte: the older one boots
    const key = `sum/s/${String(4100).padStart(15, '0')}`
    const stored = await get<{ bytes: Blob }>(key, raw)
    await set(key, { ...stored, bytes: new Blob([new Uint8Array(await stored!.bytes.arrayBuffer()).subarray(0, 4098)]) }, raw)
    const again = await make(name).open('sum')
    const loaded = await again.load()
    expect({ position: loaded.snapshot?.position, dropped: loaded.dropped.length }).toEqual({ position: 1001, dropped: 1 })
    await again.close()
  })

  it('keeps snapshot bytes as a Blob, and still reads a snapshot stored as a Uint8Array by an older version', async () => {
    const name = uniqueName()
    const raw: UseStore = createStore(name, 'tidelog')
    const handle = await make(name).open('blob')
    await handle.load()
    await handle.append(records(1, 2))
    const bytes = Uint8Array.from({ length: 3000 }, (_, i) => (i * 7) & 255)
    await handle.saveSnapshot({ position: 2, schemaHash: 'h', bytes })
    await handle.close()
    const stored = await get<{ bytes: unknown }>(`blob/s/${String(2).padStart(15, '0')}`, raw)
    expect(stored?.bytes).toBeInstanceOf(Blob)
    const again = await make(name).open('blob')
    expect([...((await again.load()).snapshot?.bytes ?? [])]).toEqual([...bytes])
    await again.close()

    // as versions before the Blob stored it
    const old = Uint8Array.from({ length: 500 }, (_, i) => (i * 3) & 255)
    await set(`legacy/s/${String(1).padStart(15, '0')}`, { position: 1, schemaHash: 'h', bytes: old, crc: crc32(old) }, raw)
    const legacy = await make(name).open('legacy')
    const loaded = await legacy.load()
    expect({ position: loaded.snapshot?.position, same: [...(loaded.snapshot?.bytes ?? [])].join() === [...old].join(), dropped: loaded.dropped }).toEqual({
      position: 1,
      same: true,
      dropped: [],
    })
    await legacy.close()
  })

  it('adds its object store to an existing database made by someone else', async () => {
    const name = uniqueName()
    const request = indexedDB.open(name)
    request.onupgradeneeded = () => request.result.createObjectStore('other').put(1, 'unrelated')
    ;(await new Promise<IDBDatabase>((resolve) => (request.onsuccess = () => resolve(request.result)))).close()
    const handle = await make(name).open('shared-db')
    await handle.append(records(1, 2))
    expect((await handle.load()).records).toEqual(records(1, 2))
    await handle.close()
    expect(await get('unrelated', createStore(name, 'other'))).toBe(1)
  })
})

describe('indexedDbStorage({ persist })', () => {
  it('asks navigator.storage.persist() once and exposes the answer', async () => {
    const persist = vi.fn(async () => true)
    const storage = make(uniqueName(), { storage: { persist } }, true)
    await (await storage.open('a')).close()
    await (await storage.open('b')).close()
    expect(await storage.persisted).toBe(true)
    expect(persist).toHaveBeenCalledTimes(1)
  })

  it('does not ask without persist: true, nor where the API is missing', async () => {
    const persist = vi.fn(async () => true)
    expect(await make(uniqueName(), { storage: { persist } }).persisted).toBeUndefined()
    expect(persist).not.toHaveBeenCalled()
    const storage = withNavigator({}, () => indexedDbStorage({ name: uniqueName(), persist: true }))
    expect(await storage.persisted).toBeUndefined()
  })
})

describe('indexedDbStorage() where IndexedDB cannot be opened', () => {
  afterEach(() => {
    vi.unstubAllGlobals()
    vi.restoreAllMocks()
  })

  const failures = {
    'open() throws': () => {
      throw new DOMException('The operation is insecure.', 'SecurityError')
    },
    'the open request fails': () => {
      const request = {} as { error?: DOMException; onerror?: () => void }
      setTimeout(() => {
        request.error = new DOMException('A mutation operation was attempted on a database that did not allow mutations.', 'InvalidStateError')
        request.onerror?.()
      })
      return request
    },
  }
  for (const [how, open] of Object.entries(failures)) {
    it(`falls back to memory with a warning when ${how}`, async () => {
      const warn = vi.spyOn(console, 'warn').mockImplementation(() => undefined)
      vi.stubGlobal('indexedDB', { open })
      const storage = indexedDbStorage({ name: uniqueName() })
      const handle = await storage.open('private')
      await handle.append(records(1, 2))
      await handle.close()
      expect((await (await storage.open('private')).load()).records).toEqual(records(1, 2))
      await expect(storage.open('private')).rejects.toMatchObject({ name: 'StorageLockedError' })
      expect(warn).toHaveBeenCalledTimes(1)
      expect(String(warn.mock.calls[0]![0])).toMatch(/will not survive a reload/)
    })
  }
})
