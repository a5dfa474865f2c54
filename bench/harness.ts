/**
 * Benchmark harness: every row compares tidelog with a baseline (raw sql.js
 * doing the same SQL) in the same process. The machines are shared and noisy,
 * so absolute times drift; what we report is the ratio, measured from
 * interleaved pairs so that drift hits both sides alike.
 */
import { rmSync } from 'node:fs'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { performance } from 'node:perf_hooks'

/** Milliseconds since an arbitrary origin, sub-millisecond resolution. */
export const now = (): number => performance.now()

const gcFn = (globalThis as { gc?: () => void }).gc

/** Collects garbage between runs when node runs with --expose-gc, so one run's garbage is not billed to the next. */
export function collect(): void {
  gcFn?.()
}

/** Whether runs are separated by a forced GC (node --expose-gc). */
export const canCollect = gcFn !== undefined

/** Lets timers, microtasks and I/O callbacks run. */
export const tick = (): Promise<void> => new Promise((resolve) => setImmediate(resolve))

/** Median of a non-empty list. */
export function median(values: readonly number[]): number {
  const s = [...values].sort((a, b) => a - b)
  const m = s.length >> 1
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2
}

/** One timed run: does its own (untimed) setup and teardown and returns the measured figure. */
export type Run = () => Promise<number> | number

export interface CompareOptions {
  /** Runs of each side whose figures are thrown away (JIT warm-up, caches). */
  warmup?: number
  /** Measured pairs. */
  reps?: number
  baseline: Run
  subject: Run
}

export interface Comparison {
  baseline: number
  subject: number
  /** Median of the per-pair ratios subject / baseline. */
  ratio: number
  baselineRuns: number[]
  subjectRuns: number[]
}

/**
 * Runs several sides in interleaved rounds after a warm-up, with a GC before
 * every run; the order rotates each round (AB BA ..., ABCD BCDA ...) so no
 * side always goes first. Returns every side's measured figures, round by round.
 */
export async function interleave<K extends string>(runs: Record<K, Run>, options: { warmup?: number; reps?: number } = {}): Promise<Record<K, number[]>> {
  const { warmup = 1, reps = 5 } = options
  const keys = Object.keys(runs) as K[]
  for (let i = 0; i < warmup; i++) {
    for (const k of keys) {
      collect()
      await runs[k]()
    }
  }
  const out = Object.fromEntries(keys.map((k) => [k, [] as number[]])) as Record<K, number[]>
  for (let i = 0; i < reps; i++) {
    const order = keys.map((_, j) => keys[(i + j) % keys.length]!)
    for (const k of order) {
      collect()
      out[k].push(await runs[k]())
    }
  }
  return out
}

/** Medians of two sides measured round by round, and the median of the per-round ratios subject / baseline. */
export function pair(baselineRuns: number[], subjectRuns: number[]): Comparison {
  return {
    baseline: median(baselineRuns),
    subject: median(subjectRuns),
    ratio: median(subjectRuns.map((x, i) => x / baselineRuns[i]!)),
    baselineRuns,
    subjectRuns,
  }
}

/** The same comparison in another unit (e.g. total ms -> µs per operation); ratios are unchanged. */
export function scaled(c: Comparison, f: (x: number) => number): Comparison {
  return { ...c, baseline: f(c.baseline), subject: f(c.subject), baselineRuns: c.baselineRuns.map(f), subjectRuns: c.subjectRuns.map(f) }
}

/**
 * Runs baseline and subject in interleaved pairs (ABBA order) after a warm-up,
 * with a GC before every run. Reports each side's median and the median of the
 * per-pair ratios: a pair runs close in time, so a slow phase of the machine
 * inflates both halves of the pair.
 */
export async function compare(options: CompareOptions): Promise<Comparison> {
  const r = await interleave({ baseline: options.baseline, subject: options.subject }, options)
  return pair(r.baseline, r.subject)
}

/** One line of the results table. */
export interface ResultLine {
  id: string
  what: string
  /** Baseline figure, in `unit`. */
  baseline: number | null
  /** tidelog figure, in `unit`. */
  tidelog: number | null
  unit: string
  ratio: number | null
  /** Human-readable target, e.g. '≤ 2×'. */
  target: string
  /** true = met, false = missed, null = informative only or not run. */
  pass: boolean | null
  /** Anything a reader needs to judge the figures (how it was measured, side figures, why it did not run). */
  notes: string[]
  /** Raw per-run figures, for results.json. */
  runs?: { baseline: number[]; tidelog: number[] }
}

/** A benchmark row: an id from TARGETS.md and a function producing one or more lines. */
export interface Row {
  id: string
  what: string
  run(): Promise<ResultLine[]>
}

/** A line for a row that could not run, saying why. */
export function notRun(id: string, what: string, target: string, reason: string): ResultLine {
  return { id, what, baseline: null, tidelog: null, unit: '', ratio: null, target, pass: null, notes: [`not run: ${reason}`] }
}

/** Builds a line from a comparison against a ratio ceiling. */
export function ratioLine(id: string, what: string, unit: string, c: Comparison, maxRatio: number, notes: string[] = []): ResultLine {
  return {
    id,
    what,
    unit,
    baseline: c.baseline,
    tidelog: c.subject,
    ratio: c.ratio,
    target: `≤ ${maxRatio}×`,
    pass: c.ratio <= maxRatio,
    notes,
    runs: { baseline: c.baselineRuns, tidelog: c.subjectRuns },
  }
}

/** Formats a figure with about three significant digits. */
export function fmt(x: number | null, unit = ''): string {
  if (x === null || !Number.isFinite(x)) return '-'
  const abs = Math.abs(x)
  const digits = abs >= 100 ? 0 : abs >= 10 ? 1 : abs >= 1 ? 2 : 3
  return `${x.toFixed(digits)}${unit ? ' ' + unit : ''}`
}

/** Throws when a benchmark's own sanity check fails: a fast wrong answer must never pass. */
export function check(condition: unknown, message: string): asserts condition {
  if (!condition) throw new Error(`benchmark sanity check failed: ${message}`)
}

const cleanups: (() => Promise<void> | void)[] = []

/** Registers work to do when the bench ends (temporary folders shared by several rows). */
export function onCleanup(fn: () => Promise<void> | void): void {
  cleanups.push(fn)
}

/** A temporary folder removed when the bench ends, also when it dies halfway (then the cleanups never run). */
export async function benchDir(prefix: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), prefix))
  onCleanup(() => rm(dir, { recursive: true, force: true }))
  process.once('exit', () => rmSync(dir, { recursive: true, force: true }))
  return dir
}

/** Runs the registered cleanups, newest first. */
export async function cleanup(): Promise<void> {
  while (cleanups.length) await cleanups.pop()!()
}
