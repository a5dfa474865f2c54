import { type Transport, TransportError, type TransportHandlers } from 'tidelog'
import { mulberry32 as prng } from './random.js'

/** Fault knobs, shared and switchable at run time. Probabilities per message. */
export interface Faults {
  enabled: boolean
  seed: number
  /** A request never reaches the backend; a live notification is lost (and the connection resets, as a real wire would). */
  drop: number
  /** A push is sent twice; a live notification is delivered twice. */
  duplicate: number
  /** The backend applies the request but the answer is lost. */
  loseAnswer: number
  maxDelayMs: number
}

/**
 * Wraps a transport and injects faults: dropped, duplicated and delayed
 * messages, answers lost after the backend applied the request, and
 * connection resets after a lost notification.
 */
export function faultyTransport(inner: Transport, faults: Faults): Transport {
  const rnd = prng(faults.seed)
  const hit = (p: number) => faults.enabled && rnd() < p
  const delay = () =>
    faults.enabled && faults.maxDelayMs > 0 ? new Promise((r) => setTimeout(r, Math.floor(rnd() * (faults.maxDelayMs + 1)))) : Promise.resolve()
  const lost = (what: string) => new TransportError(`injected fault: ${what}`, { retryable: true })

  const request = async <T>(call: () => Promise<T>, duplicable: boolean): Promise<T> => {
    await delay()
    if (hit(faults.drop)) throw lost('request dropped')
    if (duplicable && hit(faults.duplicate)) await call().catch(() => {})
    const answer = await call()
    await delay()
    if (hit(faults.loseAnswer)) throw lost('answer lost')
    return answer
  }

  return {
    connect(h) {
      return inner.connect({
        storeId: h.storeId,
        onStatus: (s) => h.onStatus(s),
        onEvents: (events, head) => {
          if (hit(faults.drop)) {
            // a lost message on a real wire means a broken connection: reconnect, which makes the engine pull
            setTimeout(
              () => {
                h.onStatus({ state: 'offline' })
                h.onStatus({ state: 'online' })
              },
              Math.floor(rnd() * 3),
            )
            return
          }
          const copies = hit(faults.duplicate) ? 2 : 1
          for (let i = 0; i < copies; i++) {
            if (faults.enabled && faults.maxDelayMs > 0) setTimeout(() => h.onEvents(structuredClone(events), head), Math.floor(rnd() * faults.maxDelayMs))
            else h.onEvents(structuredClone(events), head)
          }
        },
      })
    },
    pull: (req) => request(() => inner.pull(req), false),
    push: (req) => request(() => inner.push(req), true),
    close: () => inner.close(),
  }
}
export type { TransportHandlers }
