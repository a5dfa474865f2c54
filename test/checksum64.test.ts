/**
 * src/checksum64.ts, the checksum of indexedDbStorage's snapshots: its values
 * are stored, so they may never change; it notices every single-bit change,
 * every truncation and every change of length; unaligned views give the sums
 * of their bytes.
 */
import { describe, expect, it } from 'vitest'
import { checksum64 } from '../src/checksum64.js'

const pattern = (length: number, offset = 0) => Uint8Array.from({ length }, (_, i) => ((i + offset) * 2654435761) >>> 24)

describe('checksum64', () => {
  it('gives the values snapshots were stored with (changing them makes every stored snapshot unreadable)', () => {
    expect(checksum64(new Uint8Array(0))).toBe('b76646eb96bfb9df')
    expect(checksum64(new Uint8Array(1))).toBe('3cd66d75f1f4050a')
    expect(checksum64(new TextEncoder().encode('tidelog snapshot'))).toBe('6052093fae815955')
    expect(checksum64(pattern(1027))).toBe('74e65de1bec83dbd')
  })

  it('changes with every single bit flipped, at every position of arrays of 1 to 40 bytes', () => {
    let checked = 0
    for (let length = 1; length <= 40; length++) {
      const bytes = pattern(length)
      const sum = checksum64(bytes)
      for (let at = 0; at < length; at++) {
        for (let bit = 0; bit < 8; bit++) {
          bytes[at] = bytes[at]! ^ (1 << bit)
          if (checksum64(bytes) === sum) throw new Error(`flipping bit ${bit} of byte ${at} of ${length} kept the sum`)
          bytes[at] = bytes[at]! ^ (1 << bit)
          checked++
        }
      }
    }
    expect(checked).toBe(8 * ((40 * 41) / 2))
  })

  it('tells apart every prefix of an array, zeros included (a torn or truncated Blob)', () => {
    for (const fill of [0, 0xff]) {
      const sums = new Set<string>()
      for (let length = 0; length <= 300; length++) sums.add(checksum64(new Uint8Array(length).fill(fill)))
      expect(sums.size).toBe(301)
    }
    const whole = pattern(4099)
    const sums = new Set(Array.from({ length: 4100 }, (_, n) => checksum64(whole.subarray(0, n))))
    expect(sums.size).toBe(4100)
  })

  it('changes when two words swap places or a word moves between the lanes', () => {
    const bytes = pattern(64)
    const sum = checksum64(bytes)
    const swapped = bytes.slice()
    swapped.set(bytes.subarray(0, 4), 4)
    swapped.set(bytes.subarray(4, 8), 0)
    expect(checksum64(swapped)).not.toBe(sum)
    const shifted = new Uint8Array(68)
    shifted.set(bytes, 4)
    expect(checksum64(shifted.subarray(4))).toBe(sum)
    expect(checksum64(shifted.subarray(0, 64))).not.toBe(sum)
  })

  it('sums the bytes of a view at any offset as those of a copy', () => {
    const buffer = pattern(5000)
    for (const offset of [1, 2, 3, 5]) {
      for (const length of [0, 3, 4, 9, 4096]) {
        const view = buffer.subarray(offset, offset + length)
        expect(checksum64(view)).toBe(checksum64(view.slice()))
      }
    }
  })
})
