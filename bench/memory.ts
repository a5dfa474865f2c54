/**
 * P8: peak RSS of 100k commits in memory, tidelog vs raw sql.js doing the same
 * writes, each side in a fresh child process (bench/rss-child.ts).
 */
import { spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { median, type ResultLine, type Row } from './harness.js'

const COUNT = 100_000
const PAIRS = 2

interface ChildResult {
  mode: string
  count: number
  peakRssMB: number
  baseRssMB: number
  peakWithCloseMB: number
  heapUsedMB: number
  ms: number
}

function child(mode: 'tidelog' | 'raw'): Promise<ChildResult> {
  const script = fileURLToPath(new URL('./rss-child.ts', import.meta.url))
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, ['--import', 'tsx', script, mode, String(COUNT)], { stdio: ['ignore', 'pipe', 'pipe'] })
    let out = ''
    let err = ''
    p.stdout.on('data', (d) => (out += d))
    p.stderr.on('data', (d) => (err += d))
    p.on('error', reject)
    p.on('close', (code) => {
      const last = out.trim().split('\n').pop() ?? ''
      if (code !== 0 || !last.startsWith('{'))
        return reject(new Error(`rss-child ${mode} exited with ${code}: ${err.trim().split('\n').slice(-3).join(' | ')}`))
      resolve(JSON.parse(last) as ChildResult)
    })
  })
}

export const P8: Row = {
  id: 'P8',
  what: `peak RSS, ${COUNT / 1000}k commits in memory`,
  async run(): Promise<ResultLine[]> {
    const raw: ChildResult[] = []
    const tl: ChildResult[] = []
    for (let i = 0; i < PAIRS; i++) {
      // alternate who goes first, as in compare()
      if (i % 2 === 0) {
        raw.push(await child('raw'))
        tl.push(await child('tidelog'))
      } else {
        tl.push(await child('tidelog'))
        raw.push(await child('raw'))
      }
    }
    const b = median(raw.map((r) => r.peakRssMB))
    const s = median(tl.map((r) => r.peakRssMB))
    const ratio = s / b
    return [
      {
        id: 'P8',
        what: this.what,
        baseline: b,
        tidelog: s,
        unit: 'MB',
        ratio,
        target: '≤ 1.5×',
        pass: ratio <= 1.5,
        notes: [
          `separate child processes (node --import tsx), ${PAIRS} each; RSS sampled every 1,000 commits and every 10 ms while yielding; both yield to the event loop every 1,000 commits`,
          `RSS before the writes (node + tsx + sql.js loaded): raw ${median(raw.map((r) => r.baseRssMB)).toFixed(0)} MB, tidelog ${median(tl.map((r) => r.baseRssMB)).toFixed(0)} MB; growth during the run: raw ${(b - median(raw.map((r) => r.baseRssMB))).toFixed(0)} MB, tidelog ${(s - median(tl.map((r) => r.baseRssMB))).toFixed(0)} MB`,
          `tidelog peak including store.close() (no storage: no final snapshot): ${median(tl.map((r) => r.peakWithCloseMB)).toFixed(0)} MB; wall time raw ${(median(raw.map((r) => r.ms)) / 1000).toFixed(1)} s, tidelog ${(median(tl.map((r) => r.ms)) / 1000).toFixed(1)} s`,
        ],
        runs: { baseline: raw.map((r) => r.peakRssMB), tidelog: tl.map((r) => r.peakRssMB) },
      },
    ]
  },
}
