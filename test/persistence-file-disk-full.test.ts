/**
 * A client store on fileStorage when its disk fills up (a small tmpfs): the
 * commits stay in the store and show in its queries, the warning says why, the
 * journal holds no partial record, a snapshot that cannot be written (at
 * close) is a warning and leaves no partial file behind, and once space is
 * freed everything is written and found again after a reopen.
 */
import { readdir, rm } from 'node:fs/promises'
import { join } from 'node:path'
import { createStore, defineEvent, defineSchema, sql } from 'tidelog'
import { fileStorage } from 'tidelog/adapters/filesystem'
import { afterEach, describe, expect, it } from 'vitest'
import { fillDisk, smallDisk } from './helpers/disk.js'

const cleanups: (() => Promise<unknown> | unknown)[] = []
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup()
})

const schema = defineSchema({
  tables: { notes: sql`CREATE TABLE notes (id TEXT PRIMARY KEY, text TEXT NOT NULL)` },
  events: {
    noteAdded: defineEvent<{ id: string; text: string }>({ materialize: ({ id, text }) => sql`INSERT INTO notes (id, text) VALUES (${id}, ${text})` }),
  },
})
const note = (id: string) => schema.events.noteAdded({ id, text: `${id} ${'x'.repeat(2000)}` })
const ids = (store: Awaited<ReturnType<typeof createStore<typeof schema>>>) =>
  store.query<{ id: string }>(sql`SELECT id FROM notes ORDER BY id`).value.map((r) => r.id)

describe('fileStorage() on a full disk, in a client store', () => {
  it('keeps commits queued and visible, writes them once space is freed, and leaves no partial file', async (context) => {
    const dir = await smallDisk('1m', cleanups)
    if (typeof dir !== 'string') return context.skip(dir.skip)
    const warnings: string[] = []
    const open1 = () => createStore({ schema, storeId: 'notes', storage: fileStorage({ dir }), dev: false, onWarning: (m) => warnings.push(m) })
    const store = await open1()
    await store.commit(note('a')).persisted

    const filler = await fillDisk(dir)
    const receipts = ['b', 'c', 'd'].map((id) => store.commit(note(id)))
    // the store shows them at once; the disk cannot take them
    expect(ids(store)).toEqual(['a', 'b', 'c', 'd'])
    const first = await Promise.race([receipts[2]!.persisted.then(() => 'persisted'), new Promise((r) => setTimeout(() => r('waiting'), 500))])
    expect(first).toBe('waiting')
    expect(warnings.find((w) => w.startsWith('Writing to storage failed'))).toMatch(/Could not append to file:.*ENOSPC.*retrying/)

    // space again: the next retry (at most a few seconds later) writes all three
    await rm(filler)
    await Promise.all(receipts.map((r) => r.persisted))

    // a snapshot on a full disk (close takes one) fails with a warning (the journal holds everything), and
    // leaves no partial file taking the space
    await fillDisk(dir)
    await store.close()
    expect(warnings.filter((w) => /^snapshot failed: Could not save a snapshot to .*ENOSPC.*nothing is lost/.test(w))).toHaveLength(1)
    const folder = fileStorage({ dir }).folderOf('notes')
    expect((await readdir(folder)).filter((n) => n.endsWith('.tmp'))).toEqual([])
    await rm(join(dir, 'filler'))

    warnings.length = 0
    const again = await open1()
    expect(ids(again)).toEqual(['a', 'b', 'c', 'd'])
    // nothing found damaged: the failed appends left no partial record
    expect(warnings).toEqual([])
    await again.close()
  }, 30_000)
})
