/**
 * S1: sync server memory over a long history. A fresh child process
 * (bench/file-backend-rss-child.ts) opens a fileBackend log of 100k and of
 * 500k events, pages through it, retries and appends a push, and pulls 20k
 * storeIds nobody wrote; the figure is its RSS growth (after gc) against the
 * log's size on disk, what holding the history in memory would take at least.
 * Its notes give the reopen time with and without the log's checkpoint.
 */
import { execFile } from 'node:child_process'
import { mkdtemp, rm, stat } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import type { ResultLine, Row } from './harness.js'

const run = promisify(execFile)
const script = fileURLToPath(new URL('./file-backend-rss-child.ts', import.meta.url))
const MB = 1024 * 1024

interface ChildResult {
  before: number
  after: number
  maxGapMs: number
  openMs: number
}

async function open(dir: string, events: number, unknown: number): Promise<ChildResult> {
  const { stdout } = await run(process.execPath, ['--expose-gc', '--import', 'tsx', script, 'open', dir, String(events), String(unknown)])
  return JSON.parse(stdout.trim().split('\n').pop()!) as ChildResult
}

/** RSS growth over a log of `events`, and how long opening it takes: read in full, then from its checkpoint. */
async function measure(events: number): Promise<{ growthMB: number; fileMB: number; maxGapMs: number; fullOpenMs: number; checkpointOpenMs: number }> {
  const dir = await mkdtemp(join(tmpdir(), 'tidelog-bench-s1-'))
  try {
    await run(process.execPath, ['--import', 'tsx', script, 'write', dir, String(events)])
    const fileMB = (await stat(join(dir, 'store-big.events'))).size / MB
    const full = await open(dir, events, 20_000) // no checkpoint yet: reads the whole log; its close writes one
    const fromCheckpoint = await open(dir, events + 1, 0)
    return { growthMB: (full.after - full.before) / MB, fileMB, maxGapMs: full.maxGapMs, fullOpenMs: full.openMs, checkpointOpenMs: fromCheckpoint.openMs }
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
}

export const S1: Row = {
  id: 'S1',
  what: 'server RSS growth, fileBackend log + 20k unknown storeIds',
  async run(): Promise<ResultLine[]> {
    const lines: ResultLine[] = []
    for (const events of [100_000, 500_000]) {
      const r = await measure(events)
      lines.push({
        id: 'S1',
        what: `server RSS growth after ${events / 1000}k events (vs log size on disk)`,
        baseline: r.fileMB,
        tidelog: r.growthMB,
        unit: 'MB',
        ratio: r.growthMB / r.fileMB,
        target: '≤ 100 MB',
        pass: r.growthMB <= 100,
        notes: [
          `${events / 1000}k: reopen (first pull after a restart) ${r.fullOpenMs.toFixed(0)} ms reading the whole log, ${r.checkpointOpenMs.toFixed(0)} ms from its checkpoint (the rest is checked in the background); log ${r.fileMB.toFixed(1)} MB on disk, RSS +${r.growthMB.toFixed(1)} MB after opening it, 50 pages of 1,000, a retried and a new push, 20k pulls of never-written storeIds (default cacheBytes 64 MiB); longest event-loop gap while opening ${r.maxGapMs.toFixed(0)} ms`,
        ],
      })
    }
    return lines
  },
}
