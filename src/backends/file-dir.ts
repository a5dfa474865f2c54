import { type FileHandle, mkdir, open, readdir, readFile, rename, stat } from 'node:fs/promises'
import { join } from 'node:path'
import { StorageError, StorageLockedError } from '../errors.js'
import { lockFile } from '../file-lock.js'
import { randomId } from '../ids.js'
import { legacyLogNames, logFileName } from './file-names.js'

/**
 * The file backend's data directory: creating it, its lock (one backend at a
 * time), its `backend-id` (written atomically, read once), renaming logs of
 * older releases once, and fsyncing the directory after entries are created
 * or renamed.
 */
export function dataDir(dir: string, sync: (file: FileHandle) => Promise<void>, onError: (error: unknown, context: string) => void) {
  let backendId: Promise<string> | undefined
  let unlock: (() => Promise<void>) | undefined

  // two backends appending to the same logs would interleave their records: the second one is refused
  const lock = async () => {
    const path = join(dir, 'lock')
    try {
      return await lockFile(path, { wait: false, where: dir })
    } catch (error) {
      if (!(error instanceof StorageLockedError)) throw error
      const pid = (await readFile(path, 'utf8').catch(() => '')).trim() || 'unknown'
      throw new StorageError(
        `fileBackend: the data directory ${dir} is in use by another backend (process ${pid}${pid === String(process.pid) ? ', this one' : ''}; see ${path}). Two backends on one directory would corrupt its logs: stop the other one first, or give this one a directory of its own.`,
      )
    }
  }

  // a new or renamed directory entry is durable only once the directory itself is fsynced
  const syncDir = async () => {
    const handle = await open(dir, 'r')
    try {
      await sync(handle)
    } catch (error) {
      if (!['EISDIR', 'EPERM', 'EINVAL'].includes(errorCode(error))) throw error // platforms that cannot fsync a directory
    } finally {
      await handle.close()
    }
  }

  async function openDir(): Promise<string> {
    await mkdir(dir, { recursive: true })
    unlock ??= await lock()
    // logs named before storeIds shared one encoding with fileStorage get their new names once
    let renamed = false
    for (const { name, storeId } of legacyLogNames(await readdir(dir))) {
      const target = join(dir, logFileName(storeId))
      if (
        await stat(target).then(
          () => true,
          () => false,
        )
      ) {
        onError(
          new StorageError(`fileBackend: both ${join(dir, name)} and ${target} hold store "${storeId}"; ${target} is served. Merge or remove one.`),
          'opening the data directory',
        )
        continue
      }
      await rename(join(dir, name), target)
      renamed = true
    }
    if (renamed) await syncDir()
    const path = join(dir, 'backend-id')
    try {
      const id = (await readFile(path, 'utf8')).trim()
      if (/^[0-9a-z]{8,64}$/.test(id)) return id
      throw new StorageError(
        `fileBackend: ${path} does not hold a backendId. Restore it from a backup; delete it only if the logs in ${dir} are to count as a new, reset log.`,
      )
    } catch (error) {
      if (errorCode(error) !== 'ENOENT') throw error
    }
    // written atomically: a crash leaves either no backend-id or a complete one
    const id = randomId(16)
    const temp = `${path}.${randomId(6)}.tmp`
    const file = await open(temp, 'w')
    try {
      await file.writeFile(`${id}\n`)
      await sync(file)
    } finally {
      await file.close()
    }
    await rename(temp, path)
    await syncDir()
    return id
  }

  return {
    syncDir,
    /** Lets go of the directory (the backend closes); the next backendId() takes it again. */
    async release() {
      const u = unlock
      unlock = undefined
      backendId = undefined
      await u?.()
    },
    /** The directory's backendId, once it is open (a failed open is tried again on the next call). */
    backendId: (): Promise<string> =>
      (backendId ??= openDir().catch((error) => {
        backendId = undefined
        throw storageError(`cannot open the data directory ${dir}`, error)
      })),
  }
}

export function errorCode(error: unknown): string {
  return typeof error === 'object' && error !== null && typeof (error as { code?: unknown }).code === 'string' ? (error as { code: string }).code : ''
}

/** A StorageError saying what the file backend could not do and why. */
export function storageError(what: string, cause: unknown): StorageError {
  if (cause instanceof StorageError) return cause
  return new StorageError(`fileBackend: ${what}: ${cause instanceof Error ? cause.message : String(cause)}`, { cause })
}
