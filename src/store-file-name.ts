/**
 * The one encoding of a storeId as a file or folder name, shared by the file
 * backend and fileStorage. A prefix keeps '.', '..' and device names (CON, NUL)
 * out; '^' before each uppercase letter, lowercased, keeps case-insensitive
 * filesystems (macOS, Windows) from merging "Todos" and "todos".
 */

/** The file or folder name for a valid storeId, e.g. 'Todos' → 'store-^todos'. */
export function storeFileName(storeId: string): string {
  return 'store-' + storeId.replace(/[A-Z]/g, (c) => '^' + c.toLowerCase())
}

/** The storeId a name made by `storeFileName` stands for, or undefined for any other name. */
export function storeIdOfFileName(name: string): string | undefined {
  if (!/^store-(\^[a-z]|[a-z0-9._~-])+$/.test(name)) return undefined
  return name.slice('store-'.length).replace(/\^([a-z])/g, (_, c: string) => c.toUpperCase())
}
