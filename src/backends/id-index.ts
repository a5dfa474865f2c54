/**
 * An event id → seq index in 8 bytes a slot: open addressing over a seeded
 * 32-bit hash of the id, holding seqs only, not the ids. A lookup answers the
 * seqs whose id hashes alike (almost always none or one); the caller reads
 * those records to compare the ids themselves, so answers are exact while the
 * ids stay on disk. The seed is random per index, so that a client cannot
 * choose ids that all collide.
 */
export interface IdIndex {
  add(id: string, seq: number): void
  /** Seqs of the ids that hash like `id`, oldest first; the one holding `id` is among them if any. */
  candidates(id: string): number[]
  readonly bytes: number
  /** What it holds, to save it in a checkpoint and restore it with `createIdIndex(state)`. */
  state(): IdIndexState
}

/** An id index as saved: its seed, its slots, and how many are used. */
export interface IdIndexState {
  seed: number
  hashes: Uint32Array
  seqs: Uint32Array
  count: number
}

/** A new, empty id index, or one restored from a saved state. */
export function createIdIndex(from?: IdIndexState): IdIndex {
  const seed = from?.seed ?? (Math.random() * 0x100000000) >>> 0
  let hashes = from?.hashes ?? new Uint32Array(16)
  let seqs = from?.seqs ?? new Uint32Array(16) // 0: empty slot (seqs start at 1)
  let count = from?.count ?? 0

  const hashOf = (id: string): number => {
    // murmur3's 32-bit mix over UTF-16 code units
    let h = seed ^ id.length
    for (let i = 0; i < id.length; i++) {
      let k = Math.imul(id.charCodeAt(i), 0xcc9e2d51)
      k = Math.imul((k << 15) | (k >>> 17), 0x1b873593)
      h ^= k
      h = Math.imul((h << 13) | (h >>> 19), 5) + 0xe6546b64
    }
    h ^= h >>> 16
    h = Math.imul(h, 0x85ebca6b)
    h ^= h >>> 13
    h = Math.imul(h, 0xc2b2ae35)
    return (h ^ (h >>> 16)) >>> 0
  }

  const insert = (hash: number, seq: number) => {
    const mask = seqs.length - 1
    let slot = hash & mask
    while (seqs[slot] !== 0) slot = (slot + 1) & mask
    hashes[slot] = hash
    seqs[slot] = seq
  }

  return {
    add(id, seq) {
      if ((count + 1) * 4 > seqs.length * 3) {
        const [oldHashes, oldSeqs] = [hashes, seqs]
        hashes = new Uint32Array(oldSeqs.length * 2)
        seqs = new Uint32Array(oldSeqs.length * 2)
        for (let i = 0; i < oldSeqs.length; i++) if (oldSeqs[i] !== 0) insert(oldHashes[i]!, oldSeqs[i]!)
      }
      insert(hashOf(id), seq)
      count++
    },
    candidates(id) {
      const hash = hashOf(id)
      const mask = seqs.length - 1
      const found: number[] = []
      for (let slot = hash & mask; seqs[slot] !== 0; slot = (slot + 1) & mask) if (hashes[slot] === hash) found.push(seqs[slot]!)
      return found.sort((a, b) => a - b)
    },
    get bytes() {
      return hashes.byteLength + seqs.byteLength
    },
    state: () => ({ seed, hashes, seqs, count }),
  }
}
