// Source maps ship with their sources: every map in the packed package carries
// the text of each source it names, so that stack traces and debuggers show
// the TypeScript of an installed tidelog (its src/ is not in the tarball).
import { execFileSync } from 'node:child_process'
import { readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { describe, expect, it } from 'vitest'
import { packedProject } from './fixtures/packaging/packed.js'

const root = fileURLToPath(new URL('..', import.meta.url))

function mapsUnder(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name)
    if (entry.isDirectory()) return mapsUnder(path)
    return entry.name.endsWith('.map') ? [path] : []
  })
}

/** The texts a repository source may have had when dist/ was built: as it is now, or as last committed (while it is being edited). */
const versions = new Map<string, string[]>()
function versionsOf(path: string): string[] {
  const known = versions.get(path)
  if (known) return known
  const texts = [readFileSync(join(root, path), 'utf8')]
  versions.set(path, texts)
  try {
    texts.push(execFileSync('git', ['show', `HEAD:${path}`], { cwd: root, encoding: 'utf8', maxBuffer: 16 << 20 }))
  } catch {
    // not committed yet
  }
  return texts
}

describe('packed package: source maps', () => {
  it('carries the sources of every mapped file, equal to the repository sources', () => {
    const { project } = packedProject()
    const dist = join(project, 'node_modules/tidelog/dist')
    const maps = mapsUnder(dist)
    expect(maps.map((m) => m.slice(dist.length + 1))).toEqual(
      expect.arrayContaining(['index.js.map', 'index.cjs.map', 'server/index.js.map', 'tidelog.iife.js.map']),
    )
    let checked = 0
    for (const file of maps) {
      const map = JSON.parse(readFileSync(file, 'utf8')) as { sources: string[]; sourcesContent?: (string | null)[] }
      const where = file.slice(dist.length + 1)
      expect(map.sourcesContent?.length, `${where}: sourcesContent for its ${map.sources.length} sources`).toBe(map.sources.length)
      map.sources.forEach((source, i) => {
        const content = map.sourcesContent![i]
        expect(typeof content === 'string' && content.length > 0, `${where}: the text of ${source}`).toBe(true)
        // sources of this repository (not node_modules) are its files
        const own = /(?:^|\/)((?:src|transports|adapters)\/.+\.ts)$/.exec(source)?.[1]
        if (own && !source.includes('node_modules')) {
          expect(versionsOf(own).includes(content as string), `${where}: the text of ${own} is that file`).toBe(true)
          checked++
        }
      })
    }
    expect(checked, 'repository sources compared').toBeGreaterThan(20)
  })
})
