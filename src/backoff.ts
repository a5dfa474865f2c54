/**
 * Delay before retry `attempt` (0-based): full jitter, a random delay in
 * [0, min(maxMs, minMs · 2^attempt)). The sync engine, the transports'
 * reconnects and the PostgreSQL listener all back off with it.
 * @example setTimeout(reconnect, backoffDelay(attempt++)) // 250 ms … 30 s
 */
export function backoffDelay(attempt: number, minMs = 250, maxMs = 30_000): number {
  // the exponent is clamped so that a long outage cannot overflow to Infinity or NaN
  const window = Math.min(maxMs, minMs * 2 ** Math.min(Math.max(attempt, 0), 30))
  return Math.random() * window
}
