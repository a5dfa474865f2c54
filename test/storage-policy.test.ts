// The storage policy (src/storage-policy.ts) around an adapter that breaks the
// load contract: the store must never be handed a log it cannot replay.

import { type JournalRecord, type LoadedLog, type Storage, withStoragePolicy } from 'tidelog'
import { describe, expect, it } from 'vitest'
import { refuseWithoutStart } from '../src/storage-policy.js'

const init = (pos: number): JournalRecord => ({ pos, t: 'init', clientId: 'c' })

/** A storage whose load() returns `loaded` as it is, and that records what reached it. */
function rawStorage(loaded: LoadedLog) {
  const appended: JournalRecord[][] = []
  let tabsRead = 0
  const storage = withStoragePolicy<Storage & { readonly reads: number }>({
    name: 'raw',
    get tabs() {
      tabsRead++
      return undefined
    },
    get reads() {
      return tabsRead
    },
    open: async () => ({
      load: async () => loaded,
      append: async (records) => void appended.push(records),
      saveSnapshot: async () => {},
      close: async () => {},
    }),
  })
  return { storage, appended }
}

describe('withStoragePolicy()', () => {
  it('refuses a loaded journal with a gap, naming the position', async () => {
    const { storage } = rawStorage({ records: [init(1), init(2), init(4)], dropped: [] })
    const handle = await storage.open('s')
    await expect(handle.load()).rejects.toMatchObject({
      name: 'StorageError',
      message: expect.stringContaining('loaded journal position 4 where 3 was expected'),
    })
  })

  it('refuses a journal that starts past position 1 with no snapshot, and one that does not follow the snapshot', async () => {
    const bare = rawStorage({ records: [init(3)], dropped: [] })
    await expect((await bare.storage.open('s')).load()).rejects.toMatchObject({ name: 'StorageError', message: expect.stringContaining('with no snapshot') })
    const after = rawStorage({ snapshot: { position: 5, schemaHash: 'h', bytes: new Uint8Array(1) }, records: [init(7)], dropped: [] })
    await expect((await after.storage.open('s')).load()).rejects.toMatchObject({ message: expect.stringContaining('after the snapshot at 5') })
  })

  it('continues the journal after the snapshot it loaded, and passes on nothing it refuses', async () => {
    const { storage, appended } = rawStorage({ snapshot: { position: 5, schemaHash: 'h', bytes: new Uint8Array(1) }, records: [init(6)], dropped: [] })
    const handle = await storage.open('s')
    await expect(handle.append([init(6)])).rejects.toMatchObject({ name: 'StorageError' })
    await handle.append([init(7), init(8)])
    expect(appended).toEqual([[init(7), init(8)]])
  })

  it("keeps the adapter's own properties, getters read on each access", async () => {
    const { storage } = rawStorage({ records: [], dropped: [] })
    void storage.tabs
    void storage.tabs
    expect(storage.reads).toBe(2)
    expect(storage.name).toBe('raw')
  })
})

describe('refuseWithoutStart() (the adapters call it in load, before repairing anything)', () => {
  const snapshot = { position: 4, schemaHash: 'h', bytes: new Uint8Array(1) }
  it('lets a fresh log, a journal from position 1 and a log with an intact snapshot through', () => {
    expect(() => refuseWithoutStart('x', { snapshot: undefined, firstPos: undefined, damagedSnapshots: 0 }, 'fix')).not.toThrow()
    expect(() => refuseWithoutStart('x', { snapshot: undefined, firstPos: 1, damagedSnapshots: 2 }, 'fix')).not.toThrow()
    expect(() => refuseWithoutStart('x', { snapshot, firstPos: 9, damagedSnapshots: 1 }, 'fix')).not.toThrow()
  })

  it('refuses a compacted journal, or only damaged snapshots, with no intact snapshot: a StorageError with the fix', () => {
    for (const found of [
      { snapshot: undefined, firstPos: 5, damagedSnapshots: 1 },
      { snapshot: undefined, firstPos: undefined, damagedSnapshots: 1 },
    ]) {
      expect(() => refuseWithoutStart('file:/d/s', found, 'Restore it.')).toThrow(
        expect.objectContaining({
          name: 'StorageError',
          message: 'Storage file:/d/s has no intact snapshot and its journal does not start at position 1, so the log cannot be rebuilt. Restore it.',
        }),
      )
    }
  })
})
