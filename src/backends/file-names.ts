import { isValidStoreId } from '../protocol.js'
import { storeFileName, storeIdOfFileName } from '../store-file-name.js'

const EXTENSION = '.events'
// before tidelog 0.1.1: '<storeId lowercased>[+<hex mask of the uppercase positions>].log'
const LEGACY = /^([a-z0-9._~-]+?)(?:\+([0-9a-f]+))?\.log$/

/** The file name of a storeId's log in a data directory. */
export function logFileName(storeId: string): string {
  return storeFileName(storeId) + EXTENSION
}

/** The storeId of a log file name, or undefined when the name is not a log's. */
export function storeIdOfLogFile(name: string): string | undefined {
  return name.endsWith(EXTENSION) ? storeIdOfFileName(name.slice(0, -EXTENSION.length)) : undefined
}

/** The log files among `names` that still carry the name of an older release, with their storeIds. */
export function legacyLogNames(names: readonly string[]): { name: string; storeId: string }[] {
  return names.flatMap((name) => {
    const match = LEGACY.exec(name)
    if (!match) return []
    const mask = BigInt('0x' + (match[2] ?? '0'))
    const storeId = [...match[1]!].map((c, i) => ((mask >> BigInt(i)) & 1n ? c.toUpperCase() : c)).join('')
    return isValidStoreId(storeId) ? [{ name, storeId }] : []
  })
}
