/**
 * `npm run bench [-- P1 P7 ...]`: runs the TARGETS.md benchmark rows (all, or
 * the ids given), prints a table and writes bench/results.json.
 * Run as `node --expose-gc --import tsx bench/run.ts` so runs are separated by a GC.
 */
import { writeFile } from 'node:fs/promises'
import os from 'node:os'
import { fileURLToPath } from 'node:url'
import { P13 } from './batch.js'
import { P5, P6 } from './boot.js'
import { P11, P12 } from './boot-fresh.js'
import { B1 } from './browser-boot.js'
import { P14 } from './catch-up.js'
import { P1, P2 } from './commit.js'
import { canCollect, cleanup, fmt, notRun, now, type ResultLine, type Row } from './harness.js'
import { P8 } from './memory.js'
import { P3, P4 } from './query.js'
import { P7 } from './rebase.js'
import { S2 } from './server-flood.js'
import { S1 } from './server-memory.js'
import { P10 } from './sync.js'

/**
 * P9 (browser bundle, min+gz): core + websocket transport + IndexedDB adapter,
 * bundled and minified the way an app bundler would, sql.js and signals external.
 * The baseline column is sql.js's own JS glue for scale; the target is absolute.
 */
const P9: Row = {
  id: 'P9',
  what: 'browser bundle: core + one transport + IndexedDB adapter, min+gz',
  run: async () => {
    const { measureP9 } = await import('../scripts/size.mjs')
    const r = await measureP9()
    const kb = (b: number) => b / 1024
    return [
      {
        id: 'P9',
        what: 'browser bundle: core + websocket + IndexedDB, min+gz, excl. sql.js and signals',
        baseline: null,
        tidelog: kb(r.coreWebsocketIndexedDb.gzip),
        unit: 'KB',
        ratio: null,
        target: `≤ ${kb(r.limitGzip)} KB`,
        pass: r.pass,
        notes: [
          `P9: core alone ${kb(r.core.gzip).toFixed(2)} KB, + websocket ${kb(r.coreWebsocket.gzip).toFixed(2)} KB, + IndexedDB ${kb(r.coreWebsocketIndexedDb.gzip).toFixed(2)} KB (gzip -9 of terser output)`,
        ],
      },
    ]
  },
}

/** Every row: the TARGETS.md rows in order, then the server rows and the browser rows. */
const ROWS: Row[] = [P1, P2, P3, P4, P5, P6, P7, P8, P9, P10, P11, P12, P13, P14, S1, S2, B1]

/** Rows that threw (a broken benchmark rather than a missed target). */
let crashed = 0

function selectRows(args: string[]): Row[] {
  const wanted = args.map((a) => a.toUpperCase())
  if (wanted.length === 0) return ROWS
  const unknown = wanted.filter((w) => !ROWS.some((r) => r.id === w))
  if (unknown.length) {
    console.error(`Unknown row id(s): ${unknown.join(', ')}. Rows: ${ROWS.map((r) => r.id).join(' ')}`)
    process.exit(2)
  }
  return ROWS.filter((r) => wanted.includes(r.id))
}

function table(lines: ResultLine[]): string {
  const head = ['row', 'what', 'baseline', 'tidelog', 'ratio', 'target', 'result']
  const body = lines.map((l) => [
    l.id,
    l.what,
    fmt(l.baseline, l.unit),
    fmt(l.tidelog, l.unit),
    l.ratio === null ? '-' : `${l.ratio.toFixed(2)}×`,
    l.target,
    l.pass === null ? (l.notes[0]?.startsWith('not run') ? 'not run' : 'info') : l.pass ? 'pass' : 'FAIL',
  ])
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((r) => r[i]!.length)))
  const fmtRow = (r: string[]) => r.map((c, i) => (i >= 2 && i <= 4 ? c.padStart(widths[i]!) : c.padEnd(widths[i]!))).join('  ')
  return [fmtRow(head), widths.map((w) => '-'.repeat(w)).join('  '), ...body.map(fmtRow)].join('\n')
}

async function main() {
  const rows = selectRows(process.argv.slice(2))
  if (!canCollect) console.warn('note: run with node --expose-gc for a GC between runs (npm run bench does)')
  const machine = {
    node: process.version,
    v8: process.versions.v8,
    platform: `${process.platform} ${os.release()} ${process.arch}`,
    cpus: os.cpus().length,
    cpuModel: os.cpus()[0]?.model ?? 'unknown',
    totalMemoryMB: Math.round(os.totalmem() / 2 ** 20),
    loadAverageAtStart: os.loadavg().map((x) => Number(x.toFixed(2))),
    date: new Date().toISOString(),
    gcBetweenRuns: canCollect,
  }
  const lines: ResultLine[] = []
  const started = now()
  for (const row of rows) {
    const t0 = now()
    process.stderr.write(`${row.id} ${row.what} ...`)
    let out: ResultLine[]
    try {
      out = await row.run()
    } catch (error) {
      const e = error as Error
      crashed++
      out = [{ ...notRun(row.id, row.what, '-', `failed: ${e.message}`), pass: false }]
      process.stderr.write(`\n${e.stack ?? e.message}\n`)
    }
    lines.push(...out)
    process.stderr.write(` ${((now() - t0) / 1000).toFixed(1)} s\n`)
  }
  await cleanup()
  const seconds = (now() - started) / 1000
  console.log()
  console.log(table(lines))
  console.log()
  for (const l of lines) for (const n of l.notes) console.log(`${l.id}: ${n}`)
  console.log()
  console.log(
    `ratios are medians of interleaved baseline/tidelog pairs; ${machine.cpus} × ${machine.cpuModel}, node ${machine.node}, ${seconds.toFixed(0)} s in all`,
  )
  const path = fileURLToPath(new URL('./results.json', import.meta.url))
  await writeFile(path, JSON.stringify({ machine, seconds: Number(seconds.toFixed(1)), rows: lines }, null, 2) + '\n')
  console.log(`wrote ${path}`)
  const failed = lines.filter((l) => l.pass === false).length
  if (failed) console.log(`${failed} line(s) missed their target`)
  return crashed
}

const broken = await main()
// stores and timers are closed by the rows; exit anyway so a stray handle cannot keep the bench alive.
// A missed target is a finding, not an error; a row that crashed is (exit 1).
process.exit(broken > 0 ? 1 : 0)
