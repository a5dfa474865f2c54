/**
 * fileBackend opens a log once, however requests interleave with the open: a
 * pull that looked for the log just before another request finished opening
 * it must get that same log, never a second one over the same file (two
 * writers would put two pushes at one seq, and a pull could answer an older
 * head than a push already acknowledged).
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { PendingEvent } from 'tidelog'
import { fileBackend } from 'tidelog/server'
import { describe, expect, it } from 'vitest'
import { pullAll } from './helpers/backend.js'

const event = (id: string): PendingEvent => ({ id, name: 'noted', args: { id }, clientId: id.split(':')[0]!, sessionId: 's', createdAt: 1 })
const turn = () => new Promise<void>((resolve) => setImmediate(resolve))

describe('fileBackend() opening a log', () => {
  it('gives every request racing the open the same log: no acknowledged push is lost or answered behind', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'tidelog-open-race-'))
    try {
      const seed = fileBackend({ dir })
      await seed.push('race', { parentSeq: 0, events: Array.from({ length: 200 }, (_, i) => event(`seed:${i + 1}`)) })
      await seed.close()
      let head = 200
      const acknowledged: string[] = []
      for (let round = 0; round < 25; round++) {
        const backend = fileBackend({ dir })
        const first = backend.push('race', { parentSeq: head, events: [event(`a:${round}`)] })
        // pulls spread over the open, so that some look for the log just as it finishes opening
        const pulls = []
        for (let i = 0; i < 40; i++) {
          pulls.push(backend.pull('race', head, 1))
          await turn()
        }
        const pushed = await first
        expect(pushed).toMatchObject({ type: 'pushed', firstSeq: head + 1 })
        acknowledged.push(`a:${round}`)
        head++
        await Promise.all(pulls)
        // every later answer knows the acknowledged push
        expect((await backend.pull('race', 0, 1)).head).toBe(head)
        const second = await backend.push('race', { parentSeq: head, events: [event(`b:${round}`)] })
        expect(second).toMatchObject({ type: 'pushed', firstSeq: head + 1 })
        acknowledged.push(`b:${round}`)
        head++
        await backend.close()
      }
      const reader = fileBackend({ dir })
      const ids = (await pullAll(reader, 'race')).map((e) => e.id)
      await reader.close()
      expect(ids.length).toBe(head)
      for (const id of acknowledged) expect(ids).toContain(id)
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  })
})
