/** Random id for a backend incarnation or a client. */
export function randomId(length = 12): string {
  const alphabet = '0123456789abcdefghijklmnopqrstuvwxyz'
  const bytes = new Uint8Array(length)
  globalThis.crypto.getRandomValues(bytes)
  let out = ''
  for (const b of bytes) out += alphabet[b % 36]
  return out
}

/** The counter part of an event id `${clientId}:${n}`. */
export const counterOf = (id: string): number => Number(id.slice(id.lastIndexOf(':') + 1))
