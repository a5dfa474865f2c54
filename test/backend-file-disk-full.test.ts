/**
 * A full disk never splits a batch (fileBackend invariant 4): on a small
 * tmpfs, 20-event pushes run until the disk is full; the failed ones answer a
 * retryable error, the file holds whole batches only, nothing answered
 * `pushed` is missing after a restart, and once space is freed the same
 * backend takes pushes again.
 */
import { mkdir, readdir, rm, stat, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import type { PendingEvent } from 'tidelog'
import { checkFileBackend, fileBackend } from 'tidelog/server'
import { afterEach, describe, expect, it } from 'vitest'
import { pullAll } from './helpers/backend.js'
import { fillDisk, smallDisk } from './helpers/disk.js'

const cleanups: (() => Promise<unknown> | unknown)[] = []
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup()
})

function batch(n: number): PendingEvent[] {
  return Array.from({ length: 20 }, (_, i) => ({
    id: `c:${n * 20 + i + 1}`,
    name: 'e',
    args: { n, i, pad: 'x'.repeat(200) },
    clientId: 'c',
    sessionId: 's',
    createdAt: 0,
  }))
}

/** A small tmpfs, or undefined with the test skipped (and why printed) where none can be mounted. */
async function diskOrSkip(size: string, context: { skip(): void }): Promise<string | undefined> {
  const disk = await smallDisk(size, cleanups)
  if (typeof disk === 'string') return disk
  console.log(`disk-full test skipped: ${disk.skip}`)
  context.skip()
  return undefined
}

describe('fileBackend() on a full disk', () => {
  it('rolls a failed append back to the last whole batch, answers a retryable error, and takes pushes again once space is freed', async (context) => {
    const disk = await diskOrSkip('512k', context)
    if (!disk) return
    // a filler takes most of the disk, so that freeing it later makes room
    const filler = join(disk, 'filler')
    await writeFile(filler, Buffer.alloc(200 * 1024, 1))
    const backend = fileBackend({ dir: disk, onError: () => {} })
    cleanups.push(() => backend.close())

    let pushed = 0
    let failure: unknown
    for (let n = 0; n < 200 && failure === undefined; n++) {
      try {
        const answer = await backend.push('full', { parentSeq: pushed * 20, events: batch(pushed) })
        expect(answer).toMatchObject({ type: 'pushed', firstSeq: pushed * 20 + 1 })
        pushed++
      } catch (error) {
        failure = error
      }
    }
    expect(pushed).toBeGreaterThan(5)
    // a storage failure (answered `internal`, retryable, by the server), saying what happened
    expect(failure).toMatchObject({ name: 'StorageError', message: expect.stringContaining('nothing of the push was stored'), cause: { code: 'ENOSPC' } })
    const log = join(disk, (await readdir(disk)).find((f) => f.endsWith('.events'))!)
    const wholeSize = (await stat(log)).size
    // the file ends after the last acknowledged batch: no torn or half batch left behind
    expect((await checkFileBackend(disk)).stores).toEqual([{ storeId: 'full', path: log, head: pushed * 20 }])

    // still full: the retry fails the same way and leaves the file as it was
    await expect(backend.push('full', { parentSeq: pushed * 20, events: batch(pushed) })).rejects.toMatchObject({ name: 'StorageError' })
    expect((await stat(log)).size).toBe(wholeSize)
    expect(await pullAll(backend, 'full')).toHaveLength(pushed * 20)

    // space comes back: the same backend, no restart, takes the push
    await rm(filler)
    expect(await backend.push('full', { parentSeq: pushed * 20, events: batch(pushed) })).toMatchObject({ type: 'pushed', firstSeq: pushed * 20 + 1 })
    pushed++
    await backend.close()

    const reopened = fileBackend({
      dir: disk,
      onWarning: (m) => {
        throw new Error(`unexpected warning: ${m}`)
      },
    })
    const stored = await pullAll(reopened, 'full')
    expect(stored.map((e) => e.id)).toEqual(Array.from({ length: pushed }, (_, n) => batch(n).map((e) => e.id)).flat())
    await reopened.close()
  })

  it('opens no data directory whose lock it cannot write, and leaves no empty lock that would refuse the next start', async (context) => {
    const disk = await diskOrSkip('256k', context)
    if (!disk) return
    const dir = join(disk, 'data')
    await mkdir(dir)
    const filler = await fillDisk(disk)
    const backend = fileBackend({ dir })
    await expect(backend.pull('s', 0, 10)).rejects.toMatchObject({
      name: 'StorageError',
      message: expect.stringMatching(/Cannot create the lock file .*ENOSPC/),
    })
    expect(await readdir(dir)).toEqual([])
    // space again: the same backend opens the directory at its next request
    await rm(filler)
    expect(await backend.pull('s', 0, 10)).toMatchObject({ type: 'pulled', head: 0 })
    expect(await readdir(dir)).toContain('lock')
    await backend.close()
  })
})
