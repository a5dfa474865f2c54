/**
 * The store's journal (src/journal.ts) when appends fail, as on a full disk:
 * it retries with a growing delay, never spins; after eight failures in a row
 * the waiting commits' `persisted` rejects, but their records stay queued and
 * are written, in order, once the storage works again; flush fails instead of
 * hanging; stop ends the retries.
 */
import { afterEach, describe, expect, it, vi } from 'vitest'
import { createJournal, type NewRecord } from '../src/journal.js'
import type { JournalRecord, StorageHandle } from '../src/storage.js'

/** A handle whose appends fail while `full` is set; `written` is what it kept, `attempts` every call. */
function flakyHandle() {
  const state = { full: true, attempts: 0, written: [] as number[] }
  const error = Object.assign(new Error(''), { name: 'QuotaExceededError' })
  const handle: StorageHandle = {
    load: async () => ({ records: [], dropped: [] }),
    async append(records: JournalRecord[]) {
      state.attempts++
      // a spinning retry loop would call this without end: stop failing so that such a test ends, and fails
      if (state.full && state.attempts < 500) throw error
      state.written.push(...records.map((r) => r.pos))
    },
    saveSnapshot: async () => {},
    close: async () => {},
  }
  return { handle, state }
}

const commit: NewRecord = { t: 'commit', events: [] }

afterEach(() => {
  vi.useRealTimers()
})

describe('journal on a failing storage', () => {
  it('retries with a growing delay, rejects persisted after eight failures, and still writes everything once there is room', async () => {
    vi.useFakeTimers()
    const { handle, state } = flakyHandle()
    const warnings: string[] = []
    const journal = createJournal(handle, 0, (m) => warnings.push(m))
    const first = journal.add(commit)
    const outcome = first.then(
      () => 'persisted',
      (e: Error) => `rejected: ${e.name}`,
    )
    // eight attempts take 100 + 200 + ... + 6,400 ms of waiting; a minute of fake time is plenty
    await vi.advanceTimersByTimeAsync(60_000)
    expect(await outcome).toBe('rejected: QuotaExceededError')
    // after that, one attempt per 5 s at most: a spinning loop would be at 500 here
    expect(state.attempts).toBeGreaterThanOrEqual(8)
    expect(state.attempts).toBeLessThanOrEqual(8 + 60 / 5 + 1)
    // the warning names the error even though its message is empty; then one when the commits' persisted
    // rejects, then about one a minute, never one per attempt
    expect(warnings[0]).toBe('Writing to storage failed (QuotaExceededError); retrying. Commits stay pending until it succeeds.')
    expect(warnings[1]).toMatch(/^Writing to storage still fails after 8 attempts \(QuotaExceededError\); retrying every 5 s\.$/)
    expect(warnings.length).toBeLessThanOrEqual(3)

    // a commit made meanwhile gets one attempt of its own, not a burst
    const before = state.attempts
    const second = journal.add(commit)
    second.catch(() => {})
    await vi.advanceTimersByTimeAsync(0)
    expect(state.attempts).toBe(before + 1)

    // room again: the next retry writes both records, in order, and new commits persist at once
    state.full = false
    await vi.advanceTimersByTimeAsync(5_000)
    expect(state.written).toEqual([1, 2])
    expect(warnings[warnings.length - 1]).toMatch(/^Writing to storage works again after \d+ failed attempts\.$/)
    const third = journal.add(commit)
    await vi.advanceTimersByTimeAsync(0)
    await expect(third).resolves.toBeUndefined()
    expect(state.written).toEqual([1, 2, 3])
    await expect(journal.settled()).resolves.toBeUndefined()
  })

  it('flush fails with the storage error once appends gave up, instead of hanging; stop ends the retries', async () => {
    vi.useFakeTimers()
    const { handle, state } = flakyHandle()
    const journal = createJournal(handle, 0, () => {})
    journal.add(commit).catch(() => {})
    await vi.advanceTimersByTimeAsync(60_000)
    const flushed = journal.flush().then(
      () => 'flushed',
      (e: Error) => `rejected: ${e.name}`,
    )
    await vi.advanceTimersByTimeAsync(0)
    expect(await flushed).toBe('rejected: QuotaExceededError')
    journal.stop()
    const attempts = state.attempts
    await vi.advanceTimersByTimeAsync(60_000)
    expect(state.attempts).toBe(attempts)
    await expect(journal.flush()).resolves.toBeUndefined()
  })
})
