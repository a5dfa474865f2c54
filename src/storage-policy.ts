/**
 * The rules every `Storage` keeps, whatever platform it writes to: a valid
 * storeId, no use of a closed handle, a journal that stays dense (each append
 * continues at the end), and a load that hands the store a replayable log.
 * Adapters apply it to the storage they return (`withStoragePolicy`), so that
 * they only read and write.
 */
import { StorageError } from './errors.js'
import { isValidStoreId } from './protocol.js'
import type { JournalRecord, LoadedLog, Snapshot, Storage, StorageHandle, StorageOpenOptions } from './storage.js'

/**
 * Wraps `storage.open` in the storage policy; returns the same object, so that
 * the adapter's own properties (getters included) stay as they are.
 * @example return withStoragePolicy({ name: 'memory', open: async (storeId) => handleOf(storeId) })
 */
export function withStoragePolicy<S extends Storage>(storage: S): S {
  const open = storage.open.bind(storage)
  storage.open = async (storeId: string, options?: StorageOpenOptions): Promise<StorageHandle> => {
    if (!isValidStoreId(storeId)) throw new StorageError(`Invalid storeId ${JSON.stringify(storeId)}: use 1-128 characters of A-Z a-z 0-9 . _ ~ -`)
    return policed(await open(storeId, options), `${storage.name}/${storeId}`)
  }
  return storage
}

/**
 * For an adapter's load, before it repairs anything: throws when the log has
 * nothing to start from, i.e. no intact snapshot and a journal (or only
 * damaged snapshots) not starting at position 1. A fresh log has neither.
 * `fix` says what the user can do about it.
 */
export function refuseWithoutStart(
  where: string,
  found: { snapshot: Snapshot | undefined; firstPos: number | undefined; damagedSnapshots: number },
  fix: string,
): void {
  if (found.snapshot || (found.firstPos === undefined && found.damagedSnapshots === 0) || found.firstPos === 1) return
  throw new StorageError(`Storage ${where} has no intact snapshot and its journal does not start at position 1, so the log cannot be rebuilt. ${fix}`)
}

/** The `dropped` note of an adapter's load that found a gap in the journal and dropped what follows it. */
export function journalGapNote(found: number, expected: number, droppedCount: number): string {
  return `journal: found position ${found} where ${expected} was expected; ${droppedCount} records from there on were dropped`
}

function policed(handle: StorageHandle, where: string): StorageHandle {
  let open = true
  /** Position of the journal's last record, once a load said it. */
  let end: number | undefined
  let loading: Promise<number> | undefined

  const usable = () => {
    if (!open) throw new StorageError(`Storage ${where} was closed; open it again to use it.`)
  }
  const load = async (): Promise<LoadedLog> => {
    const loaded = await handle.load()
    const from = loaded.snapshot?.position ?? 0
    // the store replays these after the snapshot: a gap or a journal starting past 1 without a snapshot cannot be replayed
    loaded.records.forEach((record, i) => {
      if (record.pos !== from + i + 1) {
        throw new StorageError(
          `Storage ${where} loaded journal position ${record.pos} where ${from + i + 1} was expected (${loaded.snapshot ? `after the snapshot at ${from}` : 'with no snapshot'}), so the log cannot be replayed. The adapter must drop what follows a gap; restore the storage from a backup.`,
        )
      }
    })
    end = from + loaded.records.length
    return loaded
  }
  /** Where the journal ends: from the last load, or from one now (the first append of a session comes after a load). */
  const journalEnd = (): Promise<number> => {
    if (end !== undefined) return Promise.resolve(end)
    loading ??= load().then(
      () => end!,
      (error) => {
        loading = undefined
        throw error
      },
    )
    return loading
  }

  return {
    async load() {
      usable()
      return load()
    },
    async append(records: JournalRecord[]) {
      usable()
      const last = await journalEnd()
      if (records.length === 0) return
      records.forEach((record, i) => {
        if (record.pos !== last + i + 1) {
          throw new StorageError(`Cannot append position ${record.pos} to ${where}: the journal ends at ${last + i} and must stay dense. Nothing was appended.`)
        }
      })
      await handle.append(records)
      end = Math.max(end ?? 0, records[records.length - 1]!.pos)
    },
    async saveSnapshot(snapshot: Snapshot) {
      usable()
      await journalEnd()
      await handle.saveSnapshot(snapshot)
      end = Math.max(end ?? 0, snapshot.position)
    },
    async close() {
      if (!open) return
      open = false
      await handle.close()
    },
  }
}
