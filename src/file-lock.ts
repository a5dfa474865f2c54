import { link, open, readFile, rename, stat, unlink } from 'node:fs/promises'
import { resolve } from 'node:path'
import { StorageError, StorageLockedError } from './errors.js'

const errno = (e: unknown) => (e as NodeJS.ErrnoException).code

// Lock files this process holds. A file naming our own pid that is not in here was left by an
// earlier process that had the same pid: a restarted container's app is PID 1 (or 7) every time.
const held = new Set<string>()

function alive(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false
  // signal 0 only checks: EPERM means the process exists but belongs to another user
  try {
    process.kill(pid, 0)
    return true
  } catch (e) {
    return errno(e) === 'EPERM'
  }
}

/**
 * Takes an exclusive lock for this process: a file created with 'wx' holding
 * the pid. A lock left by a dead process is taken over; a live holder means
 * `StorageLockedError`, or polling until it lets go when `wait` is set.
 * Resolves to the function that releases the lock.
 */
export async function lockFile(path: string, options: { wait: boolean; where: string }): Promise<() => Promise<void>> {
  const key = resolve(path)
  for (let delay = 5; ; delay = Math.min(delay * 2, 200)) {
    try {
      const file = await open(path, 'wx')
      try {
        await file.writeFile(String(process.pid))
      } catch (e) {
        // the file is ours, but it names no one (a full disk): left behind, it would look like a lock being written
        await file.close().catch(() => undefined)
        await unlink(path).catch(() => undefined)
        throw e
      }
      await file.close()
      held.add(key)
      // forgotten only once the file is gone, so that no one here takes the file being removed for a stale one
      return () =>
        unlink(path)
          .catch(() => undefined)
          .finally(() => held.delete(key))
    } catch (e) {
      if (errno(e) !== 'EEXIST') throw new StorageError(`Cannot create the lock file ${path}: ${(e as Error).message}`, { cause: e })
    }
    let holder: string
    try {
      holder = await readFile(path, 'utf8')
    } catch (e) {
      if (errno(e) === 'ENOENT') continue // released meanwhile
      throw new StorageError(`Cannot read the lock file ${path}: ${(e as Error).message}`, { cause: e })
    }
    // an empty file is a lock being written, unless its creator died right after creating it
    const stale =
      holder === ''
        ? Date.now() - (await stat(path).catch(() => ({ mtimeMs: Date.now() }))).mtimeMs > 5000
        : Number(holder) === process.pid
          ? !held.has(key)
          : !alive(Number(holder))
    if (stale) {
      // rename is atomic: of several processes taking over, only one moves the stale file
      const aside = `${path}.${process.pid}.${Math.random().toString(36).slice(2)}`
      if (
        await rename(path, aside).then(
          () => true,
          () => false,
        )
      ) {
        // a live lock made between our read and the rename was moved by mistake: put it back
        if ((await readFile(aside, 'utf8').catch(() => holder)) !== holder) await link(aside, path).catch(() => undefined)
        await unlink(aside).catch(() => undefined)
      }
      continue
    }
    if (!options.wait) throw new StorageLockedError(options.where)
    await new Promise((resolve) => setTimeout(resolve, delay))
  }
}
