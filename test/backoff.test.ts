import { describe, expect, it } from 'vitest'
import { backoffDelay } from '../src/backoff.js'

describe('backoffDelay()', () => {
  it('stays within [0, min · 2^attempt) and never above max', () => {
    for (let attempt = 0; attempt < 12; attempt++) {
      const window = Math.min(30_000, 250 * 2 ** attempt)
      for (let i = 0; i < 50; i++) {
        const delay = backoffDelay(attempt)
        expect(delay).toBeGreaterThanOrEqual(0)
        expect(delay).toBeLessThan(window)
      }
    }
  })

  it('keeps a finite delay within max after a very long outage or a negative attempt', () => {
    for (const attempt of [31, 1_000, 1e9, Number.MAX_SAFE_INTEGER, -5]) {
      const delay = backoffDelay(attempt, 100, 5_000)
      expect(Number.isFinite(delay), `attempt ${attempt}`).toBe(true)
      expect(delay).toBeLessThan(attempt < 0 ? 100 : 5_000)
    }
  })
})
