import { afterEach, describe, expect, it } from 'vitest'
import type { JournalRecord, Storage, StorageHandle, StorageOpenOptions } from '../storage.js'

/** Makes a storage over a fresh place (new temp folder, unique database name); the kit calls it once per test. */
export type MakeStorage = () => Storage | Promise<Storage>

/** How `runStorageConformance` reaches the adapter's persisted data; every field is optional. */
export interface StorageConformanceOptions {
  /**
   * Returns a new `Storage` over the same place as `previous` (same folder, same
   * database), as a restarted process would make it. Without it the kit
   * reopens through the same instance, which is how `memoryStorage()` persists.
   */
  reopen?: (previous: Storage) => Storage | Promise<Storage>
  /**
   * Damages the newest snapshot of `storeId` in place (flip a byte, cut the
   * file) while no handle is open. With it, the kit checks that `load()` falls
   * back to the previous snapshot plus the journal after it.
   */
  corruptNewestSnapshot?: (storeId: string, storage: Storage) => void | Promise<void>
  /**
   * Removes the journal record at `pos` of `storeId` in place, leaving the
   * records around it intact, while no handle is open. With it, the kit checks
   * that `load()` stops at the hole, says so, and that appends continue there.
   */
  removeJournalRecord?: (storeId: string, storage: Storage, pos: number) => void | Promise<void>
  /** Size of the snapshot in the large-snapshot test; default 8 MiB. */
  largeSnapshotBytes?: number
}

let counter = 0
const uniqueId = (label: string) => `${label}-${Date.now().toString(36)}-${(counter++).toString(36)}`

/** Realistic records of every kind, dense from `from`; args carry unicode, nesting and numbers. */
function makeRecords(from: number, count: number): JournalRecord[] {
  const records: JournalRecord[] = []
  for (let pos = from; pos < from + count; pos++) {
    const event = {
      id: `c1:${pos}`,
      name: 'todoCreated',
      clientId: 'c1',
      sessionId: 's1',
      createdAt: 1_700_000_000_000 + pos,
      args: { id: `t${pos}`, text: `milk ✓ «${pos}» 🥛\n"quoted"`, n: pos / 3, tags: ['a', null, { deep: [true] }] },
    }
    switch (pos % 5) {
      case 1:
        records.push({ pos, t: 'init', clientId: 'c1' })
        break
      case 2:
        records.push({ pos, t: 'commit', events: [event, { ...event, id: `c1:${pos}b`, local: true }] })
        break
      case 3:
        records.push({ pos, t: 'upstream', events: [{ ...event, seq: pos }], backendId: 'b1', pending: [event] })
        break
      case 4:
        records.push({ pos, t: 'confirm', firstSeq: pos, count: 2, backendId: 'b1' })
        break
      default:
        records.push({ pos, t: 'reset', pending: [event] })
    }
  }
  return records
}

/** Deterministic bytes (xorshift), so a failure can be replayed exactly. */
function makeBytes(size: number, seed: number): Uint8Array {
  const bytes = new Uint8Array(size)
  let x = seed | 1
  for (let i = 0; i < size; i++) {
    x ^= x << 13
    x ^= x >>> 17
    x ^= x << 5
    bytes[i] = x & 0xff
  }
  return bytes
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false
  return true
}

/**
 * Registers the storage acceptance suite (vitest) for an adapter; adapter
 * authors call it from a test file, and an adapter is done when it passes.
 * `makeStorage` is called once per test and should return a storage over a
 * fresh place (new temp folder, unique database name).
 * @example runStorageConformance('fileStorage', () => fileStorage({ dir: mkdtempSync(join(tmpdir(), 'tl-')) }), { reopen: (s) => fileStorage({ dir: (s as FileStorage).dir }) })
 */
export function runStorageConformance(name: string, makeStorage: MakeStorage, options: StorageConformanceOptions = {}): void {
  describe(`${name} (storage conformance)`, () => {
    const opened: StorageHandle[] = []
    const open = async (storage: Storage, storeId: string, openOptions?: StorageOpenOptions) => {
      const handle = await storage.open(storeId, openOptions)
      opened.push(handle)
      return handle
    }
    // a reopened instance stands for a restarted process: close every handle first
    const restart = async (storage: Storage) => (options.reopen ? options.reopen(storage) : storage)
    const expectLocked = async (promise: Promise<unknown>) => {
      const error = await promise.then(
        () => undefined,
        (e: unknown) => e,
      )
      expect((error as Error | undefined)?.name, 'second open of a locked storeId').toBe('StorageLockedError')
    }

    afterEach(async () => {
      for (const handle of opened.splice(0)) await handle.close().catch(() => undefined)
    })

    it('load() of a fresh storeId finds no snapshot, no records, nothing dropped', async () => {
      const handle = await open(await makeStorage(), uniqueId('fresh'))
      const loaded = await handle.load()
      expect(loaded.snapshot).toBeUndefined()
      expect(loaded.records).toEqual([])
      expect(loaded.dropped).toEqual([])
    })

    it('append() then reopen: every record comes back, in order, equal', async () => {
      const storage = await makeStorage()
      const storeId = uniqueId('append')
      const records = makeRecords(1, 40)
      const handle = await open(storage, storeId)
      await handle.load()
      for (let at = 0, size = 1; at < records.length; at += size, size++) await handle.append(records.slice(at, at + size))
      await handle.close()
      const again = await open(await restart(storage), storeId)
      const loaded = await again.load()
      expect(loaded.records).toEqual(records)
      expect(loaded.dropped).toEqual([])
    })

    it('append() after a reopen continues the same journal', async () => {
      let storage = await makeStorage()
      const storeId = uniqueId('continue')
      for (let round = 0; round < 3; round++) {
        const handle = await open(storage, storeId)
        const loaded = await handle.load()
        expect(loaded.records).toEqual(makeRecords(1, round * 5))
        await handle.append(makeRecords(round * 5 + 1, 5))
        await handle.close()
        storage = await restart(storage)
      }
    })

    it('append() stores a copy: changing the records afterwards changes nothing stored', async () => {
      const storage = await makeStorage()
      const storeId = uniqueId('copy')
      const handle = await open(storage, storeId)
      await handle.load()
      const records = makeRecords(1, 3)
      await handle.append(records)
      ;(records[0] as { clientId: string }).clientId = 'changed'
      records.length = 0
      await handle.close()
      const loaded = await (await open(await restart(storage), storeId)).load()
      expect(loaded.records).toEqual(makeRecords(1, 3))
    })

    it('saveSnapshot() then more records: load() returns the snapshot and only the records after it', async () => {
      const storage = await makeStorage()
      const storeId = uniqueId('snapshot')
      const handle = await open(storage, storeId)
      await handle.load()
      await handle.append(makeRecords(1, 10))
      const bytes = makeBytes(1000, 7)
      await handle.saveSnapshot({ position: 10, schemaHash: 'hash-1', bytes })
      await handle.append(makeRecords(11, 3))
      await handle.append(makeRecords(14, 2))
      await handle.close()
      const loaded = await (await open(await restart(storage), storeId)).load()
      expect(loaded.snapshot?.position).toBe(10)
      expect(loaded.snapshot?.schemaHash).toBe('hash-1')
      expect(sameBytes(loaded.snapshot!.bytes, makeBytes(1000, 7))).toBe(true)
      expect(loaded.records).toEqual(makeRecords(11, 5))
      expect(loaded.dropped).toEqual([])
    })

    it('saveSnapshot() at the journal end: load() returns the snapshot and no records', async () => {
      const storage = await makeStorage()
      const storeId = uniqueId('snapshot-end')
      const handle = await open(storage, storeId)
      await handle.load()
      await handle.append(makeRecords(1, 4))
      await handle.saveSnapshot({ position: 4, schemaHash: 'h', bytes: makeBytes(10, 1) })
      const loaded = await handle.load()
      expect(loaded.snapshot?.position).toBe(4)
      expect(loaded.records).toEqual([])
    })

    it('two snapshots: load() returns the newest and the records after it', async () => {
      const storage = await makeStorage()
      const storeId = uniqueId('two-snapshots')
      const handle = await open(storage, storeId)
      await handle.load()
      await handle.append(makeRecords(1, 5))
      await handle.saveSnapshot({ position: 5, schemaHash: 'h', bytes: makeBytes(100, 1) })
      await handle.append(makeRecords(6, 5))
      await handle.saveSnapshot({ position: 10, schemaHash: 'h2', bytes: makeBytes(200, 2) })
      await handle.append(makeRecords(11, 5))
      await handle.saveSnapshot({ position: 15, schemaHash: 'h3', bytes: makeBytes(300, 3) })
      await handle.append(makeRecords(16, 2))
      await handle.close()
      const loaded = await (await open(await restart(storage), storeId)).load()
      expect(loaded.snapshot?.position).toBe(15)
      expect(loaded.snapshot?.schemaHash).toBe('h3')
      expect(sameBytes(loaded.snapshot!.bytes, makeBytes(300, 3))).toBe(true)
      expect(loaded.records).toEqual(makeRecords(16, 2))
    })

    it('append() may run while saveSnapshot() is still writing (commits go on during a snapshot)', async () => {
      const storage = await makeStorage()
      const storeId = uniqueId('overlap')
      const handle = await open(storage, storeId)
      await handle.load()
      await handle.append(makeRecords(1, 5))
      const saving = handle.saveSnapshot({ position: 5, schemaHash: 'h', bytes: makeBytes(2 * 1024 * 1024, 5) })
      const appending = (async () => {
        for (let pos = 6; pos <= 10; pos++) await handle.append(makeRecords(pos, 1))
      })()
      await Promise.all([saving, appending])
      await handle.close()
      const loaded = await (await open(await restart(storage), storeId)).load()
      expect(loaded.snapshot?.position).toBe(5)
      expect(loaded.records).toEqual(makeRecords(6, 5))
    })

    it.runIf(!!options.corruptNewestSnapshot)(
      'a corrupt newest snapshot: load() falls back to the previous one plus the journal after it, and says so',
      async () => {
        const storage = await makeStorage()
        const storeId = uniqueId('corrupt')
        const handle = await open(storage, storeId)
        await handle.load()
        await handle.append(makeRecords(1, 5))
        await handle.saveSnapshot({ position: 5, schemaHash: 'old', bytes: makeBytes(5000, 5) })
        await handle.append(makeRecords(6, 5))
        await handle.saveSnapshot({ position: 10, schemaHash: 'new', bytes: makeBytes(5000, 10) })
        await handle.append(makeRecords(11, 2))
        await handle.close()
        await options.corruptNewestSnapshot!(storeId, storage)
        const again = await open(await restart(storage), storeId)
        const loaded = await again.load()
        expect(loaded.snapshot?.position).toBe(5)
        expect(loaded.snapshot?.schemaHash).toBe('old')
        expect(sameBytes(loaded.snapshot!.bytes, makeBytes(5000, 5))).toBe(true)
        expect(loaded.records).toEqual(makeRecords(6, 7))
        expect(loaded.dropped.length).toBeGreaterThan(0)
        // the log keeps working after the fallback
        await again.append(makeRecords(13, 1))
        await again.saveSnapshot({ position: 13, schemaHash: 'next', bytes: makeBytes(50, 13) })
        await again.close()
        const last = await (await open(await restart(storage), storeId)).load()
        expect(last.snapshot?.position).toBe(13)
        expect(last.records).toEqual([])
      },
    )

    it.runIf(!!options.removeJournalRecord)(
      'a hole in the journal: load() returns the records before it and says so; appends continue there, and what followed the hole is gone',
      async () => {
        const storage = await makeStorage()
        const storeId = uniqueId('hole')
        const handle = await open(storage, storeId)
        await handle.load()
        await handle.append(makeRecords(1, 10))
        await handle.close()
        await options.removeJournalRecord!(storeId, storage, 6)
        const again = await open(await restart(storage), storeId)
        const loaded = await again.load()
        expect(loaded.records, 'the records before the hole').toEqual(makeRecords(1, 5))
        expect(loaded.dropped.join('\n')).toMatch(/found position 7 where 6 was expected; 4 records/)
        const next = makeRecords(6, 3).map((r) => (r.t === 'init' ? { ...r, clientId: 'after-the-hole' } : r))
        await again.append(next)
        await again.close()
        const last = await (await open(await restart(storage), storeId)).load()
        expect(last.records).toEqual([...makeRecords(1, 5), ...next])
        expect(last.dropped).toEqual([])
      },
    )

    it('open() locks: a second open of the same storeId throws StorageLockedError, another storeId opens', async () => {
      const storage = await makeStorage()
      const storeId = uniqueId('lock')
      await open(storage, storeId)
      await expectLocked(storage.open(storeId))
      if (options.reopen) await expectLocked((await options.reopen(storage)).open(storeId))
      const other = await open(storage, uniqueId('lock-other'))
      expect((await other.load()).records).toEqual([])
    })

    it('open({ waitForLock: true }) waits until the holder closes, then sees its records', async () => {
      const storage = await makeStorage()
      const storeId = uniqueId('wait')
      const first = await open(storage, storeId)
      await first.load()
      let acquired = false
      const waiting = storage.open(storeId, { waitForLock: true }).then((h) => {
        acquired = true
        opened.push(h)
        return h
      })
      await first.append(makeRecords(1, 3))
      // give a wrong adapter the chance to grant the lock early
      await new Promise((resolve) => setTimeout(resolve, 50))
      expect(acquired).toBe(false)
      await first.close()
      const second = await waiting
      expect((await second.load()).records).toEqual(makeRecords(1, 3))
    })

    it('close() releases the lock, also for a new instance; closing twice is harmless', async () => {
      const storage = await makeStorage()
      const storeId = uniqueId('close')
      const handle = await open(storage, storeId)
      await handle.close()
      await handle.close()
      const again = await open(storage, storeId)
      await again.close()
      const fromNew = await open(await restart(storage), storeId)
      expect((await fromNew.load()).records).toEqual([])
    })

    it('a large snapshot round-trips byte-exact', async () => {
      const size = options.largeSnapshotBytes ?? 8 * 1024 * 1024
      const storage = await makeStorage()
      const storeId = uniqueId('large')
      const handle = await open(storage, storeId)
      await handle.load()
      await handle.append(makeRecords(1, 2))
      await handle.saveSnapshot({ position: 2, schemaHash: 'big', bytes: makeBytes(size, 42) })
      await handle.close()
      const loaded = await (await open(await restart(storage), storeId)).load()
      expect(loaded.snapshot?.bytes.length).toBe(size)
      expect(sameBytes(loaded.snapshot!.bytes, makeBytes(size, 42))).toBe(true)
    })

    it('storeIds are isolated: records and snapshots of one never show up in another', async () => {
      const storage = await makeStorage()
      const a = uniqueId('iso-a')
      const b = uniqueId('iso-b')
      const ha = await open(storage, a)
      const hb = await open(storage, b)
      await ha.load()
      await hb.load()
      await ha.append(makeRecords(1, 3))
      await hb.append(makeRecords(1, 6))
      await ha.saveSnapshot({ position: 3, schemaHash: 'a', bytes: makeBytes(10, 3) })
      await ha.append(makeRecords(4, 1))
      await ha.close()
      await hb.close()
      const next = await restart(storage)
      const la = await (await open(next, a)).load()
      const lb = await (await open(next, b)).load()
      expect(la.snapshot?.schemaHash).toBe('a')
      expect(la.records).toEqual(makeRecords(4, 1))
      expect(lb.snapshot).toBeUndefined()
      expect(lb.records).toEqual(makeRecords(1, 6))
    })

    const failure = (promise: Promise<unknown>) =>
      promise.then(
        () => undefined,
        (e: unknown) => e as Error,
      )

    it('open() refuses a storeId outside the protocol alphabet with a StorageError, touching nothing', async () => {
      const storage = await makeStorage()
      for (const bad of ['', '../escape', 'a/b', 'x'.repeat(129)]) {
        const error = await failure(storage.open(bad))
        expect(error?.name, `open(${JSON.stringify(bad)})`).toBe('StorageError')
        expect(error?.message).toContain('Invalid storeId')
      }
    })

    it('a closed handle refuses load(), append() and saveSnapshot() with a StorageError', async () => {
      const storage = await makeStorage()
      const storeId = uniqueId('closed')
      const handle = await open(storage, storeId)
      await handle.load()
      await handle.append(makeRecords(1, 2))
      await handle.close()
      for (const [call, run] of [
        ['load', () => handle.load()],
        ['append', () => handle.append(makeRecords(3, 1))],
        ['saveSnapshot', () => handle.saveSnapshot({ position: 2, schemaHash: 'h', bytes: makeBytes(4, 2) })],
      ] as const) {
        const error = await failure(run())
        expect(error?.name, `${call}() after close()`).toBe('StorageError')
        expect(error?.message).toContain('was closed')
      }
      const loaded = await (await open(await restart(storage), storeId)).load()
      expect(loaded.records).toEqual(makeRecords(1, 2))
      expect(loaded.snapshot).toBeUndefined()
    })

    it('append() that does not continue the journal densely fails with a StorageError and appends nothing', async () => {
      const storage = await makeStorage()
      const storeId = uniqueId('dense')
      const handle = await open(storage, storeId)
      await handle.load()
      await handle.append(makeRecords(1, 3))
      const past = await failure(handle.append(makeRecords(5, 2)))
      expect(past?.name, 'append after a gap').toBe('StorageError')
      expect(past?.message).toContain('must stay dense')
      const again = await failure(handle.append(makeRecords(3, 2)))
      expect(again?.name, 'append over records already there').toBe('StorageError')
      const holed = [...makeRecords(4, 1), ...makeRecords(6, 1)]
      expect((await failure(handle.append(holed)))?.name, 'append with a hole inside the batch').toBe('StorageError')
      await handle.append(makeRecords(4, 1))
      await handle.close()
      expect((await (await open(await restart(storage), storeId)).load()).records).toEqual(makeRecords(1, 4))
    })

    it('append() as the first call of a handle continues the stored journal (and refuses what does not)', async () => {
      const storage = await makeStorage()
      const storeId = uniqueId('first-append')
      const first = await open(storage, storeId)
      await first.load()
      await first.append(makeRecords(1, 2))
      await first.close()
      const second = await open(await restart(storage), storeId)
      expect((await failure(second.append(makeRecords(1, 1))))?.name, 'append of position 1 again').toBe('StorageError')
      await second.append(makeRecords(3, 1))
      await second.close()
      expect((await (await open(await restart(storage), storeId)).load()).records).toEqual(makeRecords(1, 3))
    })
  })
}
