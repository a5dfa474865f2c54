/** A small disk for full-disk tests: a fresh tmpfs (root can mount one), filled on demand. */
import { execFileSync } from 'node:child_process'
import { mkdtemp, open, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

/** A fresh tmpfs of `size` (e.g. `512k`), or why there cannot be one here; `cleanups` get its unmount and removal. */
export async function smallDisk(size: string, cleanups: (() => unknown)[]): Promise<string | { skip: string }> {
  const dir = await mkdtemp(join(tmpdir(), 'tidelog-full-'))
  cleanups.push(() => rm(dir, { recursive: true, force: true }))
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${size}`, 'tidelog-full', dir], { stdio: 'pipe' })
  } catch (error) {
    return { skip: `cannot mount a tmpfs (${String((error as { stderr?: Buffer }).stderr ?? error).trim()})` }
  }
  cleanups.push(() => execFileSync('umount', [dir]))
  return dir
}

/** Writes `dir`/filler until the disk is full (bounded); returns its path, to remove for room again. */
export async function fillDisk(dir: string): Promise<string> {
  const path = join(dir, 'filler')
  const fh = await open(path, 'w')
  const chunk = Buffer.alloc(16 * 1024, 1)
  try {
    for (let i = 0; i < 10_000; i++) await fh.write(chunk)
    throw new Error('the disk never filled up')
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOSPC') throw error
  } finally {
    await fh.close()
  }
  return path
}
