/**
 * fileBackend memory does not grow with history, and opening a large log
 * does not hold the event loop: a child process (fresh heap, --expose-gc)
 * opens a 400k-event log, pages through it, and pulls 20k storeIds nobody
 * wrote; RSS growth and the longest gap of a 10 ms ticker during the open
 * are bounded loosely (memory and responsiveness bounds, not speed).
 */
import { execFile } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { afterAll, describe, expect, it } from 'vitest'

const run = promisify(execFile)
const root = fileURLToPath(new URL('..', import.meta.url))
const child = fileURLToPath(new URL('../bench/file-backend-rss-child.ts', import.meta.url))
const dirs: string[] = []
afterAll(async () => {
  await Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true })))
})

describe('fileBackend() memory', () => {
  it('stays within 100 MB of RSS growth over a 400k-event log and 20k never-written storeIds, and opens the log without a long event-loop gap', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'tidelog-file-memory-'))
    dirs.push(dir)
    await run(process.execPath, ['--import', 'tsx', child, 'write', dir, '400000'], { cwd: root })
    const { stdout } = await run(process.execPath, ['--expose-gc', '--import', 'tsx', child, 'open', dir, '400000', '20000'], { cwd: root })
    const result = JSON.parse(stdout.trim().split('\n').pop()!) as { before: number; after: number; maxGapMs: number; head: number; cached: { logs: number } }
    console.log(
      `fileBackend over 400k events: RSS +${((result.after - result.before) / 1e6).toFixed(1)} MB, longest event-loop gap while opening ${result.maxGapMs.toFixed(0)} ms`,
    )
    expect(result.head).toBe(400_000)
    expect(result.after - result.before).toBeLessThan(100e6)
    expect(result.maxGapMs).toBeLessThan(500)
    // the 20k storeIds nobody wrote left nothing open
    expect(result.cached.logs).toBe(1)
  }, 120_000)
})
