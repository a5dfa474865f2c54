// Packs tidelog (`npm pack`, from a built dist/) and installs the tarball once per
// test run into a fresh project outside the repository, next to the bundlers the
// packaging and example tests build with. Those tests get the paths through
// provide/inject; other test runs skip all of it.
//
// The project is kept in the OS temp directory between runs, keyed by the tools'
// versions and the checkout, so that a rerun only reinstalls the tarball (from the npm cache
// otherwise: every tool is pinned to the version this repository's lockfile holds).
import { execFile } from 'node:child_process'
import { createHash } from 'node:crypto'
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import type { TestProject } from 'vitest/node'
import { ensureBuilt } from '../scripts/build.mjs'

const run = promisify(execFile)
const root = fileURLToPath(new URL('..', import.meta.url))

/** What the packaging tests learn about the packed package. */
export type PackState = { ok: true; tarball: string; project: string } | { ok: false; error: string }

declare module 'vitest' {
  export interface ProvidedContext {
    tidelogPack: PackState
  }
}

/** Installed next to the tarball: the apps' frameworks and the bundlers, at the versions this repository uses. */
export const TOOLS = [
  '@preact/signals-core',
  'vue',
  'svelte',
  'vite',
  '@vitejs/plugin-vue',
  '@sveltejs/vite-plugin-svelte',
  'webpack',
  'esbuild',
  'rollup',
  '@rollup/plugin-node-resolve',
  '@rollup/plugin-commonjs',
]

const version = (name: string): string => JSON.parse(readFileSync(join(root, 'node_modules', name, 'package.json'), 'utf8')).version

const testDir = fileURLToPath(new URL('.', import.meta.url))
const packTests = readdirSync(testDir)
  .filter((f) => /^(packaging|browser-example|browser-inspector).*\.test\.ts$/.test(f))
  .map((f) => `test/${f}`)

function selected(project: TestProject): boolean {
  const filters = (project.vitest as unknown as { filenamePattern?: string[] }).filenamePattern
  if (!filters?.length) return true
  return filters.some((filter) => packTests.some((file) => file.includes(filter.replace(/^\.\//, '')) || filter.includes(file)))
}

const npm = (args: string[], cwd: string) =>
  run('npm', [...args, '--no-audit', '--no-fund', '--loglevel=error'], {
    cwd,
    timeout: 300_000,
    maxBuffer: 16 << 20,
    env: { ...process.env, npm_config_update_notifier: 'false' },
  })

/** Runs `fn` holding a lock directory, so that two test runs never npm-install into one project at once. */
async function withLock<T>(path: string, fn: () => Promise<T>): Promise<T> {
  const deadline = Date.now() + 300_000
  for (;;) {
    try {
      mkdirSync(path)
      break
    } catch (error) {
      if ((error as { code?: string }).code !== 'EEXIST') throw error
      const age = Date.now() - (statSync(path, { throwIfNoEntry: false })?.mtimeMs ?? Date.now())
      if (age > 600_000)
        rmSync(path, { recursive: true, force: true }) // left by a run that was killed
      else if (Date.now() > deadline) throw new Error(`another test run has held ${path} for 5 minutes; remove it if none is running`)
      else await new Promise((r) => setTimeout(r, 250))
    }
  }
  try {
    return await fn()
  } finally {
    rmSync(path, { recursive: true, force: true })
  }
}

/** Packs and installs; returns the tarball and the project directory. */
export async function packAndInstall(log: (line: string) => void = () => {}): Promise<{ tarball: string; project: string }> {
  await ensureBuilt({ log })
  const tools = Object.fromEntries(TOOLS.map((name) => [name, version(name)]))
  // keyed by the checkout too: test runs of two checkouts at once must not install over each other's tarball
  const key = createHash('sha256').update(JSON.stringify({ tools, root })).digest('hex').slice(0, 12)
  const project = join(tmpdir(), `tidelog-packed-${key}`)
  mkdirSync(project, { recursive: true })
  return withLock(`${project}.lock`, () => install(project, tools))
}

async function install(project: string, tools: Record<string, string>): Promise<{ tarball: string; project: string }> {
  const packDir = join(project, 'pack')
  rmSync(packDir, { recursive: true, force: true })
  mkdirSync(packDir, { recursive: true })
  // dist/ is built above; --ignore-scripts skips prepack's second build
  const { stdout } = await npm(['pack', '--ignore-scripts', '--json', '--pack-destination', packDir, root], root)
  const tarball = join(packDir, JSON.parse(stdout)[0].filename)
  const sha = createHash('sha256').update(readFileSync(tarball)).digest('hex')
  const marker = join(project, '.installed')
  if (existsSync(marker) && readFileSync(marker, 'utf8') === sha && existsSync(join(project, 'node_modules/tidelog/package.json'))) return { tarball, project }
  rmSync(marker, { force: true })
  const fresh = !existsSync(join(project, 'node_modules'))
  if (fresh)
    writeFileSync(join(project, 'package.json'), JSON.stringify({ name: 'tidelog-packed-apps', private: true, type: 'module', dependencies: tools }, null, 2))
  // the tarball by path (not file:), as a user installs a downloaded package
  await npm(['install', '--prefer-offline', '--ignore-scripts', tarball], project)
  writeFileSync(marker, sha)
  return { tarball, project }
}

export default async function setup(project: TestProject): Promise<void> {
  if (!selected(project)) {
    project.provide('tidelogPack', { ok: false, error: 'not packed: no packaging test was selected' })
    return
  }
  const started = Date.now()
  try {
    const packed = await packAndInstall()
    console.log(`global setup: packed and installed tidelog in ${Date.now() - started} ms (${packed.project})`)
    project.provide('tidelogPack', { ok: true, ...packed })
  } catch (error) {
    const message =
      error instanceof Error ? `${error.message}${(error as { stderr?: string }).stderr ? `\n${(error as { stderr?: string }).stderr}` : ''}` : String(error)
    console.error(`global setup: packing tidelog failed; the packaging tests will fail:\n${message}`)
    project.provide('tidelogPack', { ok: false, error: `packing tidelog failed: ${message}` })
  }
}
