/**
 * The client half's table of requests waiting for their answer, keyed by the
 * `rid` that the server echoes (PROTOCOL.md, "Writing a transport"). Every
 * transport keeps one: `open` a request before sending it, `take` it when an
 * answer with its rid arrives, `rejectAll` when the connection drops or the
 * transport closes.
 *
 * Invariants:
 *  R1. A request settles exactly once: by its answer, by its timeout, or by
 *      `rejectAll`; whichever comes first removes it, and the others find
 *      nothing (a late answer is ignored).
 *  R2. No request waits longer than `timeoutMs`: it then rejects with
 *      `timeoutError`, so a lost answer never hangs a caller.
 */

/** The id a request carries and its answer echoes. */
export type Rid = string | number

/** A request taken from the table: settle it with its answer. */
export interface TakenRequest<D> {
  readonly rid: Rid
  /** What the caller stored with the request (the message, the answer types it expects, …). */
  readonly data: D
  resolve(answer: unknown): void
  reject(error: Error): void
}

/** Options of `createRequestTable`. */
export interface RequestTableOptions<D> {
  /** How long a request waits for its answer before it rejects (R2). */
  timeoutMs: number
  /** The error a timed-out request rejects with; name the request and say what to do. */
  timeoutError(data: D, rid: Rid): Error
  /** Runs after a request timed out and rejected (e.g. to treat the peer as gone). */
  onTimeout?(error: Error, data: D, rid: Rid): void
  /** Builds the rid of the n-th request (n from 1); default the number itself. */
  rid?(n: number): Rid
}

/** See the module comment. */
export interface RequestTable<D> {
  /** Registers a request under a fresh rid; send it with that rid after this call. */
  open<T>(data: D): { rid: Rid; answer: Promise<T> }
  /** Removes and returns the request with `rid`, or undefined when none waits (answered, timed out, or never sent). */
  take(rid: unknown): TakenRequest<D> | undefined
  /** The requests waiting now, oldest first (e.g. to send them again to a new peer). */
  pending(): { rid: Rid; data: D }[]
  /** Rejects every waiting request with `error`: the connection dropped or the transport closed. */
  rejectAll(error: Error): void
  /** How many requests wait for their answer. */
  readonly size: number
}

interface Entry<D> {
  data: D
  resolve(answer: unknown): void
  reject(error: Error): void
  timer: ReturnType<typeof setTimeout>
}

/**
 * Makes the request table of one transport.
 * @example const table = createRequestTable({ timeoutMs: 30_000, timeoutError: () => new TransportError('no answer within 30000 ms') })
 */
export function createRequestTable<D = undefined>(options: RequestTableOptions<D>): RequestTable<D> {
  const entries = new Map<Rid, Entry<D>>()
  let n = 0

  return {
    open<T>(data: D) {
      const rid = options.rid ? options.rid(++n) : ++n
      const answer = new Promise<T>((resolve, reject) => {
        const timer = setTimeout(() => {
          if (!entries.delete(rid)) return
          const error = options.timeoutError(data, rid)
          reject(error)
          options.onTimeout?.(error, data, rid)
        }, options.timeoutMs)
        entries.set(rid, { data, resolve: resolve as (answer: unknown) => void, reject, timer })
      })
      return { rid, answer }
    },
    take(rid) {
      if (typeof rid !== 'string' && typeof rid !== 'number') return undefined
      const entry = entries.get(rid)
      if (!entry) return undefined
      entries.delete(rid)
      clearTimeout(entry.timer)
      return { rid, data: entry.data, resolve: entry.resolve, reject: entry.reject }
    },
    pending: () => [...entries].map(([rid, entry]) => ({ rid, data: entry.data })),
    rejectAll(error) {
      const all = [...entries.values()]
      entries.clear()
      for (const entry of all) {
        clearTimeout(entry.timer)
        entry.reject(error)
      }
    },
    get size() {
      return entries.size
    },
  }
}
