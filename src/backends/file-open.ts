import { type FileHandle, open } from 'node:fs/promises'
import type { StorageError } from '../errors.js'
import { checkpointPath, readCheckpoint } from './file-checkpoint.js'
import { errorCode, storageError } from './file-dir.js'
import { type LogDamage, Offsets, type StoreDamagedError, scanLog } from './file-log.js'
import { createIdIndex, type IdIndex } from './id-index.js'

export interface Waiter {
  seq: number
  resolve: () => void
  reject: (error: unknown) => void
}

/** One open log of the file backend. Fields past `ids` describe staged records (invariant 1). */
export interface Log {
  storeId: string
  path: string
  file: FileHandle | undefined // created at the first append
  ino: number | undefined
  head: number
  size: number
  offsets: Offsets
  ids: IdIndex
  staged: { id: string; frame: Buffer }[] // seq head + 1 + i; frames of the first `writing` are being written
  stagedIds: Map<string, number>
  writing: number
  waiters: Waiter[]
  turn: Promise<unknown> // the push being judged (invariant 3)
  epoch: number // bumped when staged records are thrown away
  users: number // requests in progress: an evicted log must have none
  damaged: StoreDamagedError | undefined
  broken: StorageError | undefined // its file's tail is unknown: dropped from the cache, reopened on next use
  saved: number // the head its checkpoint holds (-1: none)
}

/** What opening a log needs from the backend. */
export interface OpenContext {
  /** The most events the log is known to have held (0 when nothing is known). */
  knownHead(storeId: string): number
  quarantine(log: Log, damage: LogDamage): StoreDamagedError
  onWarning(message: string): void
  sync(file: FileHandle): Promise<void>
}

/**
 * Opens a storeId's log: from its checkpoint when one checks out, else reading
 * all of it; trims a torn tail, quarantines damage (through `ctx.quarantine`).
 * A missing file is an empty log, unless the log is known to have held events.
 */
export async function openLog(storeId: string, path: string, ctx: OpenContext): Promise<Log> {
  const { quarantine, onWarning, sync } = ctx
  const log: Log = {
    storeId,
    path,
    file: undefined,
    ino: undefined,
    head: 0,
    size: 0,
    offsets: undefined as never,
    ids: undefined as never,
    staged: [],
    stagedIds: new Map(),
    writing: 0,
    waiters: [],
    turn: Promise.resolve(),
    epoch: 0,
    users: 0,
    damaged: undefined,
    broken: undefined,
    saved: -1,
  }
  let file: FileHandle
  try {
    file = await open(path, 'r+')
  } catch (error) {
    if (errorCode(error) !== 'ENOENT') throw storageError(`cannot open ${path}`, error)
    const saved = await readCheckpoint(path, undefined, 0)
    const known = Math.max(ctx.knownHead(storeId), saved?.head ?? 0)
    if (known)
      quarantine(log, {
        path,
        record: 1,
        offset: 0,
        problem: `the file is missing, but it held ${known} events (its checkpoint or this server says so); it was deleted or moved`,
      })
    return Object.assign(log, emptyIndexes())
  }
  try {
    const fileStat = await file.stat()
    const saved = await readCheckpoint(path, file, fileStat.size)
    if (saved && 'stale' in saved) onWarning(`${checkpointPath(path)} is not used, ${saved.stale}; reading the whole log instead`)
    const start = saved && !('stale' in saved) ? saved : undefined
    const scanned = await scanLog(file, fileStat.size, path, start)
    if ('problem' in scanned) {
      await file.close()
      quarantine(log, scanned)
      return Object.assign(log, emptyIndexes())
    }
    Object.assign(log, {
      file,
      ino: fileStat.ino,
      head: scanned.head,
      size: scanned.size,
      offsets: scanned.offsets,
      ids: scanned.ids,
      saved: start?.head ?? -1,
    })
    const known = Math.max(ctx.knownHead(storeId), saved?.head ?? 0)
    if (scanned.head < known) {
      quarantine(log, {
        path,
        record: scanned.head + 1,
        offset: scanned.size,
        problem: `the file ends at record ${scanned.head}, but it held ${known} events (its checkpoint or this server says so); it was cut or replaced`,
      })
      return log
    }
    if (scanned.torn) {
      await file.truncate(scanned.size)
      await sync(file)
      onWarning(
        `${path}: trimmed a torn tail of ${scanned.torn.bytes} bytes after record ${scanned.head} (${scanned.torn.problem}): an append cut short by a crash, never acknowledged`,
      )
    }
    if (start) void scrub(log, file, start.size, quarantine)
    return log
  } catch (error) {
    await file.close().catch(() => {})
    throw storageError(`cannot read ${path}`, error)
  }
}

/**
 * After an open from a checkpoint, checks the records it covers in the
 * background, as a full open would have: damage there quarantines the store
 * (reads check each record's CRC meanwhile, so nothing damaged is served).
 */
async function scrub(log: Log, file: FileHandle, end: number, quarantine: OpenContext['quarantine']): Promise<void> {
  let found: LogDamage | undefined
  try {
    const scanned = await scanLog(file, end, log.path, undefined, { indexIds: false })
    if ('problem' in scanned) found = scanned
    else if (scanned.torn || scanned.size !== end)
      found = {
        path: log.path,
        record: scanned.head + 1,
        offset: scanned.size,
        problem: `the records stop short of where its checkpoint says (${scanned.torn?.problem ?? 'no batch end'})`,
      }
  } catch {
    return // closed meanwhile (evicted or quarantined): the next open checks again
  }
  if (found && log.file === file) quarantine(log, found)
}

function emptyIndexes(): { offsets: Offsets; ids: IdIndex } {
  return { offsets: new Offsets(), ids: createIdIndex() }
}
