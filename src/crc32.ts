/**
 * CRC-32 (IEEE 802.3, the one zlib and gzip use), slicing-by-8, on any platform.
 * The checksum of every tidelog file, and of IndexedDB snapshots stored by
 * older versions (newer ones carry src/checksum64.ts's, which JavaScript computes faster).
 */

let table: Uint32Array | undefined

function tables(): Uint32Array {
  if (table) return table
  table = new Uint32Array(256 * 8)
  for (let n = 0; n < 256; n++) {
    let c = n
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1
    table[n] = c >>> 0
  }
  // table t maps a byte to its CRC contribution t bytes further on, so eight bytes take one step
  for (let n = 0; n < 256; n++) for (let t = 1; t < 8; t++) table[t * 256 + n] = (table[(t - 1) * 256 + n]! >>> 8) ^ table[table[(t - 1) * 256 + n]! & 0xff]!
  return table
}

/**
 * The CRC-32 of `bytes`; pass the previous result as `value` to continue over
 * a further part, as with zlib's `crc32(data, value)`.
 * @example crc32(payload, crc32(header)) === crc32(Buffer.concat([header, payload]))
 */
export function crc32(bytes: Uint8Array, value = 0): number {
  const t = tables()
  let c = ~value >>> 0
  let i = 0
  const n = bytes.length
  for (const end = n - (n % 8); i < end; i += 8) {
    const a = (bytes[i]! | (bytes[i + 1]! << 8) | (bytes[i + 2]! << 16) | (bytes[i + 3]! << 24)) ^ c
    c =
      t[1792 + (a & 255)]! ^
      t[1536 + ((a >>> 8) & 255)]! ^
      t[1280 + ((a >>> 16) & 255)]! ^
      t[1024 + (a >>> 24)]! ^
      t[768 + bytes[i + 4]!]! ^
      t[512 + bytes[i + 5]!]! ^
      t[256 + bytes[i + 6]!]! ^
      t[bytes[i + 7]!]!
  }
  for (; i < n; i++) c = t[(c ^ bytes[i]!) & 255]! ^ (c >>> 8)
  return ~c >>> 0
}
