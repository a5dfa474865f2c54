/**
 * The rules every `Storage` keeps, whatever platform it writes to: a valid
 * storeId, no use of a closed handle, a journal that stays dense (each append
 * continues at the end), and a load that hands the store a replayable log.
 * Adapters apply it to the storage they return (`withStoragePolicy`) and load
 * through `loadLog`, so that they only read, write and repair what it tells them.
 */
import { StorageError } from './errors.js'
import { isValidStoreId, STORE_ID_RULE } from './protocol.js'
import type { JournalRecord, LoadedLog, Snapshot, Storage, StorageHandle, StorageOpenOptions } from './storage.js'

/**
 * Wraps `storage.open` in the storage policy; returns the same object, so that
 * the adapter's own properties (getters included) stay as they are.
 * @example return withStoragePolicy({ name: 'memory', open: async (storeId) => handleOf(storeId) })
 */
export function withStoragePolicy<S extends Storage>(storage: S): S {
  const open = storage.open.bind(storage)
  storage.open = async (storeId: string, options?: StorageOpenOptions): Promise<StorageHandle> => {
    if (!isValidStoreId(storeId)) throw new StorageError(`Invalid storeId ${JSON.stringify(storeId)}: use ${STORE_ID_RULE}`)
    return policed(await open(storeId, options), `${storage.name}/${storeId}`)
  }
  return storage
}

/**
 * What an adapter reads and repairs for `loadLog`; the choice of snapshot, the
 * refusal, the gap rule and the notes are the policy's, written once.
 */
export interface LogReader {
  /** `where` in messages, e.g. `file:/data/todos`. */
  readonly where: string
  /** What the user can do when the log cannot be rebuilt (the end of the refusal's message). */
  readonly fix: string
  /** Positions of the snapshots present, in any order. */
  snapshotPositions(): Promise<number[]>
  /** The snapshot at `position` if its checksum verifies, else undefined. */
  readSnapshot(position: number): Promise<Snapshot | undefined>
  /** How a snapshot is named in notes, e.g. `snapshot-000000000000006.snap`. */
  snapshotName(position: number): string
  /**
   * The journal records that may follow position `from` (records at or before it may come first and
   * are skipped), in stored order, with notes on damage the adapter's own framing cut off (a torn tail).
   */
  readJournal(from: number): Promise<{ records: JournalRecord[]; dropped: string[] }>
  /**
   * Called only once the log is known to be loadable: discards the damaged snapshots (returning, per
   * snapshot, what was done: `deleted`, `moved to x.corrupt`) and, when `cutAt` is given, the journal
   * records from index `cutAt` of `readJournal`'s list on (they follow a gap: never replayable, and they
   * must not collide with the next appends).
   */
  repair(damaged: number[], cutAt: number | undefined): Promise<string[]>
}

/**
 * An adapter's `load`, the policy part: the newest snapshot that verifies, the
 * journal after it, dense; refuses (a `StorageError` with `reader.fix`) before
 * repairing anything when there is nothing to start from, i.e. no intact
 * snapshot and a journal (or only damaged snapshots) not starting at position
 * 1; then drops damaged snapshots and whatever follows a gap, saying so in `dropped`.
 */
export async function loadLog(reader: LogReader): Promise<LoadedLog> {
  const positions = (await reader.snapshotPositions()).sort((a, b) => b - a)
  let snapshot: Snapshot | undefined
  const damaged: number[] = []
  for (const position of positions) {
    snapshot = await reader.readSnapshot(position)
    if (snapshot) break
    damaged.push(position)
  }
  const from = snapshot?.position ?? 0
  const journal = await reader.readJournal(from)
  const found = journal.records
  let first = 0
  while (first < found.length && found[first]!.pos <= from) first++
  if (!snapshot && (damaged.length > 0 || first < found.length) && found[first]?.pos !== 1) {
    throw new StorageError(
      `Storage ${reader.where} has no intact snapshot and its journal does not start at position 1, so the log cannot be rebuilt. ${reader.fix}`,
    )
  }
  let gap = found.findIndex((r, i) => i >= first && r.pos !== from + (i - first) + 1)
  if (gap < 0) gap = found.length
  const records = found.slice(first, gap)
  const dropped = [...journal.dropped]
  if (damaged.length > 0 || gap < found.length) {
    const done = await reader.repair(damaged, gap < found.length ? gap : undefined)
    const instead = snapshot ? `the snapshot at position ${from}` : 'the journal from position 1'
    for (const [i, position] of damaged.entries()) dropped.push(`${reader.snapshotName(position)}: checksum mismatch; ${done[i]}, loading ${instead} instead`)
  }
  if (gap < found.length) {
    dropped.push(
      `journal: found position ${found[gap]!.pos} where ${from + records.length + 1} was expected; ${found.length - gap} records from there on were dropped`,
    )
  }
  return { snapshot, records, dropped }
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
