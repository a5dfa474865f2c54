// Builds dist/ (`rollup -c`) when it is missing or older than the sources.
// Used by `npm run demo` and the browser tests' global setup.
//   node scripts/build.mjs [--force]
import { spawn } from 'node:child_process'
import { existsSync, readdirSync, statSync } from 'node:fs'
import { createRequire } from 'node:module'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'

const root = resolve(fileURLToPath(new URL('..', import.meta.url)))
const require = createRequire(import.meta.url)

/** Files whose change makes dist/ stale. */
const INPUTS = ['src', 'transports', 'adapters', 'rollup.config.mjs', 'tsconfig.json', 'tsconfig.build.json', 'package.json']
/** Outputs that must exist for dist/ to count as built (the IIFE is written last). */
const OUTPUTS = ['dist/index.js', 'dist/index.cjs', 'dist/index.d.ts', 'dist/server/index.js', 'dist/tidelog.iife.js', 'dist/sql-wasm.wasm']

function newestMtime(path) {
  if (!existsSync(path)) return 0
  const stat = statSync(path)
  if (!stat.isDirectory()) return stat.mtimeMs
  let newest = 0
  for (const name of readdirSync(path)) newest = Math.max(newest, newestMtime(join(path, name)))
  return newest
}

/** True when some output is missing or older than the newest input. */
export function distIsStale() {
  const built = OUTPUTS.map((p) => join(root, p))
  if (!built.every((p) => existsSync(p))) return true
  const oldestOutput = Math.min(...built.map((p) => statSync(p).mtimeMs))
  return Math.max(...INPUTS.map((p) => newestMtime(join(root, p)))) > oldestOutput
}

/**
 * Runs `rollup -c` in a child process and resolves once it succeeded; rejects
 * with rollup's message otherwise. A child, because a failed TypeScript build
 * leaves file watchers open that would keep the calling process alive.
 */
export function build({ log = console.log } = {}) {
  const rollupDir = dirname(require.resolve('rollup/package.json'))
  const { bin } = require('rollup/package.json')
  const rollupBin = join(rollupDir, typeof bin === 'string' ? bin : bin.rollup)
  return new Promise((resolveBuild, reject) => {
    const child = spawn(process.execPath, [rollupBin, '-c'], {
      cwd: root,
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, NO_COLOR: '1', FORCE_COLOR: '0' },
    })
    let output = ''
    child.stdout.on('data', (chunk) => (output += chunk))
    child.stderr.on('data', (chunk) => (output += chunk))
    child.on('error', reject)
    child.on('close', (code) => {
      // stack frames say nothing about the sources; the messages above them do
      const lines = output.split('\n').filter((line) => line.trim() && !/^\s+at /.test(line))
      if (code === 0) {
        for (const line of lines) log(line)
        resolveBuild()
      } else reject(new Error(`rollup -c failed (exit ${code}):\n${lines.join('\n')}`))
    })
  })
}

/** Builds only when dist/ is stale; returns whether it built. */
export async function ensureBuilt(options) {
  if (!distIsStale()) return false
  await build(options)
  return true
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  if (process.argv.includes('--force')) await build()
  else if (!(await ensureBuilt())) console.log('dist/ is up to date')
}
