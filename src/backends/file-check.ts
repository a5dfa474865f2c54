import { open, readdir, readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { StorageError } from '../errors.js'
import { readCheckpoint } from './file-checkpoint.js'
import { scanLog } from './file-log.js'
import { legacyLogNames, storeIdOfLogFile } from './file-names.js'

/** What `checkFileBackend` found in one log file. */
export interface StoreCheck {
  storeId: string
  path: string
  /** Events a server would serve (0 for a damaged store, which is not served). */
  head: number
  /** Set when the store is damaged: where and how. */
  damage?: { record: number; offset: number; problem: string }
  /** A torn tail the next open will trim (never acknowledged, so nothing is lost). */
  tornBytes?: number
}

/** The result of `checkFileBackend`: every log, and the damaged ones apart. */
export interface FileBackendCheck {
  dir: string
  stores: StoreCheck[]
  damaged: StoreCheck[]
  /** Problems of the directory itself, such as an unreadable backend-id. */
  problems: string[]
}

/**
 * Checks every log of a `fileBackend` data directory the way the server would
 * open it, and changes nothing (what `tidelog check --data DIR` runs). Safe
 * while a server uses the directory; a log appended meanwhile is checked up to
 * where it ended when it was read.
 * @example const { damaged } = await checkFileBackend('./tidelog-data'); if (damaged.length) process.exitCode = 1
 */
export async function checkFileBackend(dir: string): Promise<FileBackendCheck> {
  let names: string[]
  try {
    names = (await readdir(dir)).sort()
  } catch (error) {
    throw new StorageError(`checkFileBackend: cannot read the data directory ${dir}: ${(error as Error).message}`, { cause: error })
  }
  const problems: string[] = []
  const id = await readFile(join(dir, 'backend-id'), 'utf8').then(
    (text) => text.trim(),
    (error) => (error.code === 'ENOENT' ? undefined : `unreadable (${error.message})`),
  )
  if (id !== undefined && !/^[0-9a-z]{8,64}$/.test(id)) problems.push(`${join(dir, 'backend-id')} does not hold a backendId: ${id}`)
  const legacy = new Map(legacyLogNames(names).map((l) => [l.name, l.storeId]))
  const stores: StoreCheck[] = []
  for (const name of names) {
    const storeId = storeIdOfLogFile(name) ?? legacy.get(name)
    if (storeId === undefined) continue
    const path = join(dir, name)
    const file = await open(path, 'r')
    try {
      const size = (await file.stat()).size
      const scanned = await scanLog(file, size, path)
      // the checkpoint's head is what the log held when it was last closed: less now means lost events
      const saved = await readCheckpoint(path, file, size)
      const known = saved?.head ?? 0
      if ('problem' in scanned) stores.push({ storeId, path, head: 0, damage: { record: scanned.record, offset: scanned.offset, problem: scanned.problem } })
      else if (scanned.head < known)
        stores.push({
          storeId,
          path,
          head: 0,
          damage: {
            record: scanned.head + 1,
            offset: scanned.size,
            problem: `the file ends at record ${scanned.head}, but its checkpoint says it held ${known} events; it was cut or replaced`,
          },
        })
      else stores.push({ storeId, path, head: scanned.head, ...(scanned.torn ? { tornBytes: scanned.torn.bytes } : {}) })
    } finally {
      await file.close()
    }
  }
  return { dir, stores, damaged: stores.filter((s) => s.damage), problems }
}
