/**
 * Keeps the README true: its quick start runs as written, against the built
 * package, resolved by name ('tidelog', 'tidelog/server') like an app would.
 */
import { execFile } from 'node:child_process'
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { describe, expect, inject, it } from 'vitest'

const root = fileURLToPath(new URL('..', import.meta.url))

describe('README quick start', () => {
  it('runs as written and prints the synced todo', async () => {
    const dist = inject('tidelogDist')
    if (!dist.ok) throw new Error(`dist/ is not built: ${dist.error}`)
    const readme = readFileSync(`${root}README.md`, 'utf8')
    const section = readme.slice(readme.indexOf('## Quick start'))
    const code = /```js\n([\s\S]*?)```/.exec(section)?.[1]
    expect(code).toContain("from 'tidelog'")
    // inside the package folder, so that 'tidelog' resolves to this package through its exports map
    const dir = `${root}.tmp/readme-${process.pid}`
    mkdirSync(dir, { recursive: true })
    try {
      writeFileSync(`${dir}/quickstart.mjs`, code!)
      const { stdout } = await promisify(execFile)(process.execPath, [`${dir}/quickstart.mjs`], { cwd: root, timeout: 20_000 })
      expect(stdout).toContain("bob sees [ 'milk ✓' ]")
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })
})
