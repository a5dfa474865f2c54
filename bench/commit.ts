/**
 * P1 and P2: committing events one per `commit()`, against raw sql.js running
 * the same INSERT in its own transaction (BEGIN / INSERT / COMMIT through
 * prepared statements).
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { SqlJsStatic } from 'sql.js'
import type { CommitReceipt, Storage } from '../src/index.js'
import { createStore } from '../src/index.js'
import { benchSchema, INSERT_SQL, itemArgs, rawDb, sqlJs } from './fixtures.js'
import { check, compare, median, notRun, now, type ResultLine, type Row, ratioLine, scaled, tick } from './harness.js'

const N = 10_000

/** Raw sql.js: N single-INSERT transactions; `yieldEvery` > 0 yields to the event loop between groups, as the subject does. */
async function rawPerTransaction(SQL: SqlJsStatic, yieldEvery = 0): Promise<number> {
  const db = rawDb(SQL)
  const begin = db.prepare('BEGIN')
  const commit = db.prepare('COMMIT')
  const ins = db.prepare(INSERT_SQL)
  const t0 = now()
  for (let i = 0; i < N; i++) {
    begin.run()
    const a = itemArgs(i)
    ins.run([a.id, a.grp, a.text])
    commit.run()
    if (yieldEvery && (i + 1) % yieldEvery === 0) await tick()
  }
  const ms = now() - t0
  const count = db.exec('SELECT count(*) FROM items')[0]!.values[0]![0]
  check(count === N, `raw wrote ${N} rows (found ${count})`)
  begin.free()
  commit.free()
  ins.free()
  db.close()
  return ms
}

interface CommitRun {
  total: number
  syncPart: number
  fsyncs?: number
}

/** tidelog: N commits (production mode), timed until the last receipt's `persisted` resolved. */
async function tidelogCommits(storage: Storage | undefined, yieldEvery = 0, fsyncs?: () => number): Promise<CommitRun> {
  const schema = benchSchema()
  const store = await createStore({ schema, storeId: 'commit', storage, dev: false })
  const created = schema.events.itemCreated
  const persisted: Promise<void>[] = []
  const before = fsyncs?.() ?? 0
  let syncPart = 0
  const t0 = now()
  if (!yieldEvery) {
    for (let i = 0; i < N; i++) persisted.push(store.commit(created(itemArgs(i))).persisted)
    syncPart = now() - t0
  } else {
    // per-commit timing only here: with yields, the loop's time also holds the journal's work
    for (let i = 0; i < N; i++) {
      const t = now()
      const r: CommitReceipt = store.commit(created(itemArgs(i)))
      syncPart += now() - t
      persisted.push(r.persisted)
      if ((i + 1) % yieldEvery === 0) await tick()
    }
  }
  await Promise.all(persisted)
  const total = now() - t0
  const after = fsyncs?.() ?? 0
  const count = store.query<{ n: number }>({ sql: 'SELECT count(*) AS n FROM items', params: [] }).value[0]!.n
  check(count === N, `tidelog wrote ${N} rows (found ${count})`)
  await store.close()
  return { total, syncPart, fsyncs: fsyncs ? after - before : undefined }
}

/** Runs tidelog trials through `compare`, keeping the side figures of each measured run. */
function tracked(run: () => Promise<CommitRun>) {
  const runs: CommitRun[] = []
  return {
    runs,
    subject: async () => {
      const r = await run()
      runs.push(r)
      return r.total
    },
  }
}

const perCommit = (ms: number) => (ms / N) * 1000

export const P1: Row = {
  id: 'P1',
  what: `commit in memory, ${N / 1000}k events, one per commit()`,
  async run(): Promise<ResultLine[]> {
    const SQL = await sqlJs()
    const t = tracked(() => tidelogCommits(undefined))
    const c = await compare({ warmup: 1, reps: 5, baseline: () => rawPerTransaction(SQL), subject: t.subject })
    const measured = t.runs.slice(-5)
    const syncShare = median(measured.map((r) => r.syncPart / r.total))
    const line = ratioLine('P1', this.what, 'µs/commit', scaled(c, perCommit), 2, [
      'dev: false, no storage (the store journals nothing); timed until the last receipt.persisted resolved',
      `synchronous commit() calls are ${(syncShare * 100).toFixed(0)}% of that time (median ${perCommit(median(measured.map((r) => r.syncPart))).toFixed(1)} µs/commit), the receipts' promises the rest`,
    ])
    return [line]
  },
}

/** The file storage adapter, or why it cannot be used. */
export async function loadFileStorage(): Promise<{ fileStorage: typeof import('../adapters/filesystem.js').fileStorage } | { reason: string }> {
  try {
    const mod = await import('../adapters/filesystem.js')
    if (typeof mod.fileStorage !== 'function') return { reason: 'adapters/filesystem.ts exports no fileStorage' }
    return mod
  } catch (error) {
    return { reason: `adapters/filesystem.ts cannot be loaded (${(error as Error).message.split('\n')[0]})` }
  }
}

export const P2: Row = {
  id: 'P2',
  what: `commit, file storage, ${N / 1000}k events, all persisted`,
  async run(): Promise<ResultLine[]> {
    const target = '≤ 4×'
    const fs = await loadFileStorage()
    if ('reason' in fs) return [notRun('P2', this.what, target, fs.reason), notRun('P2b', `${this.what}, yielding every 10 commits`, target, fs.reason)]
    const SQL = await sqlJs()
    const lines: ResultLine[] = []
    for (const [id, what, yieldEvery, reps] of [
      ['P2', this.what, 0, 5],
      ['P2b', `${this.what}, yielding every 10 commits`, 10, 3],
    ] as const) {
      const t = tracked(async () => {
        const dir = await mkdtemp(join(tmpdir(), 'tidelog-bench-'))
        try {
          const storage = fs.fileStorage({ dir })
          return await tidelogCommits(storage, yieldEvery, () => storage.stats().fsyncs)
        } finally {
          await rm(dir, { recursive: true, force: true })
        }
      })
      const c = await compare({ warmup: 1, reps, baseline: () => rawPerTransaction(SQL, yieldEvery), subject: t.subject })
      const measured = t.runs.slice(-reps)
      const fsyncs = median(measured.map((r) => r.fsyncs ?? 0))
      lines.push(
        ratioLine(id, what, 'µs/commit', scaled(c, perCommit), 4, [
          `fileStorage in ${tmpdir()}; baseline is raw sql.js in memory, one transaction per INSERT${yieldEvery ? `, yielding (setImmediate) every ${yieldEvery} INSERTs like the subject` : ''}`,
          `journal fsyncs during the run: median ${fsyncs} for ${N} commits (${(fsyncs / N).toFixed(4)} per commit: group commit)`,
          `synchronous commit() calls: median ${perCommit(median(measured.map((r) => r.syncPart))).toFixed(1)} µs/commit`,
        ]),
      )
    }
    return lines
  },
}
