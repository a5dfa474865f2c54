// The storage policy (src/storage-policy.ts) around an adapter that breaks the
// load contract: the store must never be handed a log it cannot replay.

import { type JournalRecord, type LoadedLog, type LogReader, loadLog, type Storage, withStoragePolicy } from 'tidelog'
import { describe, expect, it } from 'vitest'

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

/** A reader over snapshots (position -> intact) and journal positions, recording what it was told to repair. */
function reader(snapshots: Record<number, boolean>, journal: number[]) {
  const repairs: { damaged: number[]; cutAt: number | undefined }[] = []
  const r: LogReader & { repairs: typeof repairs } = {
    where: 'test:/s',
    fix: 'Restore it.',
    repairs,
    snapshotName: (position) => `snap-${position}`,
    snapshotPositions: async () => Object.keys(snapshots).map(Number),
    readSnapshot: async (position) => (snapshots[position] ? { position, schemaHash: 'h', bytes: new Uint8Array(1) } : undefined),
    readJournal: async () => ({ records: journal.map(init), dropped: journal.length ? [] : ['nothing'] }),
    async repair(damaged, cutAt) {
      repairs.push({ damaged, cutAt })
      return damaged.map((p) => `put away ${p}`)
    },
  }
  return r
}

describe('loadLog() (the policy of every adapter that finds damage)', () => {
  it('lets a fresh log, a journal from position 1 and a log with an intact snapshot through, repairing nothing', async () => {
    expect(await loadLog(reader({}, []))).toEqual({ snapshot: undefined, records: [], dropped: ['nothing'] })
    expect((await loadLog(reader({}, [1, 2, 3]))).records.map((r) => r.pos)).toEqual([1, 2, 3])
    const after = reader({ 4: true }, [3, 4, 5, 6])
    const loaded = await loadLog(after)
    // records the snapshot holds are skipped
    expect([loaded.snapshot?.position, loaded.records.map((r) => r.pos), loaded.dropped, after.repairs]).toEqual([4, [5, 6], [], []])
  })

  it('takes the newest intact snapshot, and has the damaged newer ones put away with a note', async () => {
    const r = reader({ 2: true, 6: false, 9: false }, [3, 4, 5, 6, 7])
    const loaded = await loadLog(r)
    expect(loaded.snapshot?.position).toBe(2)
    expect(loaded.records.map((x) => x.pos)).toEqual([3, 4, 5, 6, 7])
    expect(r.repairs).toEqual([{ damaged: [9, 6], cutAt: undefined }])
    expect(loaded.dropped).toEqual([
      'snap-9: checksum mismatch; put away 9, loading the snapshot at position 2 instead',
      'snap-6: checksum mismatch; put away 6, loading the snapshot at position 2 instead',
    ])
  })

  it('drops what follows a gap, and tells the reader where to cut', async () => {
    const r = reader({ 2: true }, [1, 2, 3, 4, 7, 8])
    const loaded = await loadLog(r)
    expect(loaded.records.map((x) => x.pos)).toEqual([3, 4])
    expect(r.repairs).toEqual([{ damaged: [], cutAt: 4 }])
    expect(loaded.dropped).toEqual(['journal: found position 7 where 5 was expected; 2 records from there on were dropped'])
  })

  it('refuses a compacted journal, or only damaged snapshots, with no intact snapshot: a StorageError with the fix, before any repair', async () => {
    for (const r of [reader({}, [5, 6]), reader({ 3: false }, []), reader({ 3: false }, [4, 5])]) {
      await expect(loadLog(r)).rejects.toThrow(
        expect.objectContaining({
          name: 'StorageError',
          message: 'Storage test:/s has no intact snapshot and its journal does not start at position 1, so the log cannot be rebuilt. Restore it.',
        }),
      )
      expect(r.repairs).toEqual([])
    }
    // a damaged snapshot over a whole journal is not refused: the journal rebuilds the log
    const whole = reader({ 3: false }, [1, 2, 3, 4])
    expect((await loadLog(whole)).records).toHaveLength(4)
    expect(whole.repairs).toEqual([{ damaged: [3], cutAt: undefined }])
  })
})
