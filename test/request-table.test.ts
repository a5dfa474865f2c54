import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { createRequestTable } from '../src/request-table.js'

describe('createRequestTable()', () => {
  beforeEach(() => void vi.useFakeTimers())
  afterEach(() => void vi.useRealTimers())

  const table = (onTimeout?: (error: Error, data: string) => void) =>
    createRequestTable<string>({ timeoutMs: 100, timeoutError: (what, rid) => new Error(`no answer to ${what} (rid ${rid})`), onTimeout })

  it('settles a request by its answer once: a second take finds nothing (R1)', async () => {
    const t = table()
    const { rid, answer } = t.open<string>('pull')
    expect(t.size).toBe(1)
    const taken = t.take(rid)!
    expect(taken.data).toBe('pull')
    taken.resolve('pulled')
    expect(await answer).toBe('pulled')
    expect(t.take(rid)).toBeUndefined()
    expect(t.size).toBe(0)
  })

  it('rejects a request nobody answered after timeoutMs, naming it, and ignores the late answer (R2)', async () => {
    const seen: string[] = []
    const t = table((error, data) => seen.push(`${data}: ${error.message}`))
    const { rid, answer } = t.open('push')
    const outcome = answer.catch((error: Error) => error.message)
    vi.advanceTimersByTime(99)
    expect(t.size).toBe(1)
    vi.advanceTimersByTime(1)
    expect(await outcome).toBe(`no answer to push (rid ${rid})`)
    expect(seen).toEqual([`push: no answer to push (rid ${rid})`])
    expect(t.take(rid)).toBeUndefined()
  })

  it('rejectAll rejects every waiting request and clears their timers', async () => {
    const t = table()
    const a = t.open('a').answer.catch((e: Error) => e.message)
    const b = t.open('b').answer.catch((e: Error) => e.message)
    t.rejectAll(new Error('connection lost'))
    expect(await Promise.all([a, b])).toEqual(['connection lost', 'connection lost'])
    expect(vi.getTimerCount()).toBe(0)
  })

  it('builds rids with the given function and lists waiting requests oldest first', () => {
    const t = createRequestTable<string>({ timeoutMs: 100, timeoutError: () => new Error('late'), rid: (n) => `client-1:${n}` })
    for (const what of ['a', 'b']) t.open(what).answer.catch(() => {})
    expect(t.pending()).toEqual([
      { rid: 'client-1:1', data: 'a' },
      { rid: 'client-1:2', data: 'b' },
    ])
    expect(t.take(1)).toBeUndefined()
    expect(t.take('client-1:1')?.data).toBe('a')
    t.rejectAll(new Error('closed'))
  })
})
