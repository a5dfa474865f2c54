/**
 * P11 (fresh process → first query rows) and P12 (snapshot size), on a
 * 100k-event file store with 11 tables, closed right after writing. Each P11
 * run is a new `node` process (bench/boot-child.mjs) timing itself from its
 * first line: raw sql.js imports sql.js, inits it, reads the raw export, opens
 * it and counts; tidelog imports the library (bundled from src/ by esbuild,
 * as an app meets a build), opens the store and counts.
 */
import { execFile } from 'node:child_process'
import { mkdir, readdir, stat } from 'node:fs/promises'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { closedStoreAndRawExport } from './boot.js'
import { loadFileStorage } from './commit.js'
import { benchSchema } from './fixtures.js'
import { check, interleave, median, notRun, now, pair, type ResultLine, type Row, ratioLine } from './harness.js'

const EVENTS = 100_000
const SIDE_TABLES = 10
const STORE_ID = 'fresh'
const run = promisify(execFile)
const here = (p: string) => fileURLToPath(new URL(p, import.meta.url))

interface DataSet {
  dir: string
  folder: string
  rawExport: string
  rawBytes: number
  bundle: string
  buildMs: number
}
let dataSet: Promise<DataSet | { reason: string }> | undefined

/** Builds (once) the closed 11-table store, the raw export of the same state and the tidelog bundle the child imports. */
function getDataSet(): Promise<DataSet | { reason: string }> {
  dataSet ??= (async () => {
    const fs = await loadFileStorage()
    if ('reason' in fs) return fs
    const t0 = now()
    const { dir, storage, rawExport, rawBytes } = await closedStoreAndRawExport(fs.fileStorage, {
      prefix: 'tidelog-bench-fresh-',
      storeId: STORE_ID,
      events: EVENTS,
      schema: benchSchema({ sideTables: SIDE_TABLES }),
    })
    // inside the repository, so that the bundle's bare imports (sql.js, signals) resolve from node_modules
    const outdir = here('../node_modules/.cache/tidelog-bench')
    await mkdir(outdir, { recursive: true })
    const bundle = join(outdir, 'boot-entry.mjs')
    const { build } = await import('esbuild')
    await build({
      entryPoints: [here('./boot-entry.ts')],
      bundle: true,
      format: 'esm',
      platform: 'node',
      target: 'node20',
      outfile: bundle,
      external: ['sql.js', '@preact/signals-core'],
      logLevel: 'silent',
    })
    return { dir, folder: storage.folderOf(STORE_ID), rawExport, rawBytes, bundle, buildMs: now() - t0 }
  })()
  return dataSet
}

interface ChildFigures {
  n: number
  first: number
  afterBoot: number
  afterIdle: number
  steady: number
  startup: number
}

async function child(args: string[]): Promise<ChildFigures> {
  const { stdout } = await run(process.execPath, [here('./boot-child.mjs'), ...args], { env: { ...process.env, NODE_ENV: 'production' }, timeout: 60_000 })
  const out = JSON.parse(stdout.trim().split('\n').pop()!) as ChildFigures
  check(out.n === EVENTS, `the child counted ${EVENTS} rows (got ${out.n})`)
  return out
}

export const P11: Row = {
  id: 'P11',
  what: `fresh process → first query rows, ${EVENTS / 1000}k events, ${SIDE_TABLES + 1} tables, file storage`,
  async run(): Promise<ResultLine[]> {
    const ds = await getDataSet()
    if ('reason' in ds) return [notRun('P11', this.what, '≤ 1.5×', ds.reason)]
    const figures = { raw: [] as ChildFigures[], tidelog: [] as ChildFigures[] }
    const r = await interleave(
      {
        raw: async () => {
          const f = await child(['raw', ds.rawExport])
          figures.raw.push(f)
          return f.first
        },
        tidelog: async () => {
          const f = await child(['tidelog', ds.bundle, ds.dir, STORE_ID, String(SIDE_TABLES)])
          figures.tidelog.push(f)
          return f.first
        },
      },
      { warmup: 1, reps: 5 },
    )
    // the measured rounds only (the warm-up runs are the first of each list)
    const raw = figures.raw.slice(1)
    const tl = figures.tidelog.slice(1)
    const side = (k: 'afterBoot' | 'afterIdle' | 'steady') =>
      pair(
        raw.map((f) => f[k]),
        tl.map((f) => f[k]),
      )
    const lines = [
      ratioLine('P11', this.what, 'ms', pair(r.raw, r.tidelog), 1.5, [
        `each run a new node process (NODE_ENV=production) timed from its first line: raw = import sql.js + init + readFile + new SQL.Database + SELECT count(*); tidelog = import the library (esbuild bundle of src/) + createStore(fileStorage) + store.query(the same count).value; node's own startup before that: raw ${median(raw.map((f) => f.startup)).toFixed(0)} ms, tidelog ${median(tl.map((f) => f.startup)).toFixed(0)} ms`,
        `data set (closed store + raw export) built in ${(ds.buildMs / 1000).toFixed(1)} s`,
      ]),
      ratioLine('P11b', 'the same count right after boot', 'ms', side('afterBoot'), 1.2, [
        'a second store.query(count).value (new query signal) vs db.exec(count), in the same child, right after the first rows',
      ]),
      ratioLine('P11c', 'the same count after 2 s idle', 'ms', side('afterIdle'), 1.2, []),
      ratioLine('P11d', 'the same count, steady', 'ms', side('steady'), 1.2, ['median of 21 runs after the idle one']),
    ]
    return lines
  },
}

export const P12: Row = {
  id: 'P12',
  what: `snapshot on disk, ${EVENTS / 1000}k events, ${SIDE_TABLES + 1} tables`,
  async run(): Promise<ResultLine[]> {
    const ds = await getDataSet()
    if ('reason' in ds) return [notRun('P12', this.what, '≤ 1.5×', ds.reason)]
    const files = await Promise.all((await readdir(ds.folder)).map(async (name) => ({ name, size: (await stat(join(ds.folder, name))).size })))
    const snapshots = files.filter((f) => /^snapshot-\d+\.snap$/.test(f.name)).sort((a, b) => (a.name < b.name ? 1 : -1))
    const segments = files.filter((f) => /^journal-\d+\.log$/.test(f.name))
    check(snapshots.length > 0, 'the closed store left a snapshot')
    const newest = snapshots[0]!.size
    const ratio = newest / ds.rawBytes
    const mb = (b: number) => b / 2 ** 20
    return [
      {
        id: 'P12',
        what: this.what,
        unit: 'MB',
        baseline: mb(ds.rawBytes),
        tidelog: mb(newest),
        ratio,
        target: '≤ 1.5×',
        pass: ratio <= 1.5,
        notes: [
          `newest snapshot file vs raw db.export() of the same state (${mb(ds.rawBytes).toFixed(1)} MB); the folder also holds ${snapshots.length - 1} older snapshot(s) (${mb(snapshots.slice(1).reduce((s, f) => s + f.size, 0)).toFixed(1)} MB) and ${segments.length} journal segment(s) (${mb(segments.reduce((s, f) => s + f.size, 0)).toFixed(1)} MB): ${files.map((f) => `${f.name} ${mb(f.size).toFixed(1)} MB`).join(', ')}`,
        ],
      },
    ]
  },
}
